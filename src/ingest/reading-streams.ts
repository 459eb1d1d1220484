import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { Reading } from './reading.js';

/** Readings are sent to Redis at most this often: one pipeline for all of them, not one per request. */
const SEND_EVERY_MS = 50;
/** Readings held for the next send at most; past this they are sent at once. */
const MAX_HELD = 10_000;

export interface ReadingStreamPublisher {
  /** Called after readings from HTTP are stored. */
  publish(readings: readonly Reading[]): void;
  /** Sends what is held (at shutdown, before Redis disconnects). */
  close(): Promise<void>;
}

/**
 * The original's real-time side channel: every HTTP-ingested reading is also appended to the
 * stream `telemetry:stream:<sensor_id>` (field `data`, the text the client sent), each stream
 * bounded to about `maxLen` entries. Best effort, after the reading is stored: a failure here
 * loses nothing (the reading is in the work queue) and is counted and logged. Readings are held
 * up to SEND_EVERY_MS and sent together: a pipeline per request cost more than the rest of a
 * steady trickle of single readings.
 */
export function readingStreamPublisher(redis: Redis, maxLen: number, logger: Logger, metrics: Metrics): ReadingStreamPublisher {
  const log = logger.child({ component: 'reading-streams' });
  let held: Reading[] = [];
  let timer: NodeJS.Timeout | undefined;
  const failed = (n: number, err?: unknown) => {
    metrics.errorsTotal.inc({ component: 'reading_streams' }, n);
    log.debug({ err, failed: n }, 'could not append readings to their per-sensor streams');
  };
  const send = (): Promise<void> => {
    clearTimeout(timer);
    timer = undefined;
    const readings = held;
    held = [];
    if (readings.length === 0) return Promise.resolve();
    const pipeline = redis.pipeline();
    for (const r of readings) pipeline.xadd(`telemetry:stream:${r.sensor_id}`, 'MAXLEN', '~', maxLen, '*', 'data', r.data);
    return pipeline.exec().then(
      (results) => {
        const n = results?.filter(([err]) => err).length ?? 0;
        if (n > 0) failed(n);
      },
      (err: unknown) => failed(readings.length, err),
    );
  };
  return {
    publish(readings) {
      for (const r of readings) held.push(r);
      if (held.length >= MAX_HELD) void send();
      else timer ??= setTimeout(() => void send(), SEND_EVERY_MS);
    },
    close: send,
  };
}
