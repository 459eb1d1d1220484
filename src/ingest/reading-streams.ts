import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { Reading } from './reading.js';

/**
 * The original's real-time side channel: every HTTP-ingested reading is also appended to the
 * stream `telemetry:stream:<sensor_id>` (field `data`, the text the client sent), each stream
 * bounded to about `maxLen` entries. Best effort, after the reading is stored: a failure here
 * loses nothing (the reading is in the buffer) and is counted and logged.
 */
export function readingStreamPublisher(redis: Redis, maxLen: number, logger: Logger, metrics: Metrics): (readings: readonly Reading[]) => void {
  const log = logger.child({ component: 'reading-streams' });
  return (readings) => {
    const pipeline = redis.pipeline();
    for (const r of readings) pipeline.xadd(`telemetry:stream:${r.sensor_id}`, 'MAXLEN', '~', maxLen, '*', 'data', r.data);
    pipeline.exec().then(
      (results) => {
        const failed = results?.filter(([err]) => err).length ?? 0;
        if (failed > 0) {
          metrics.errorsTotal.inc({ component: 'reading_streams' }, failed);
          log.debug({ failed }, 'could not append readings to their per-sensor streams');
        }
      },
      (err: unknown) => {
        metrics.errorsTotal.inc({ component: 'reading_streams' }, readings.length);
        log.debug({ err }, 'could not append readings to their per-sensor streams');
      },
    );
  };
}
