import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnalyticsEngine } from '../../src/analytics/engine.js';
import { exited, launchTsx, stop, type Child } from '../helpers/child-process.js';
import { pressureFrames, pressureSecret, waitFor } from '../helpers/frames.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

const ADMIN = 'crash-test-admin-token-0123456789';

/** Ocean Core as a real child process (tsx runs the TypeScript sources). */
let service: Child | undefined;
const startService = (env: Record<string, string>): ChildProcess => {
  service = launchTsx('src/main.ts', [], { env });
  return service.proc;
};

describe('exactly once through a kill -9', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let dir: TempDir;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    dir = await makeTempDir('ocean-crash-');
  });

  afterAll(async () => {
    await stop(child, { signal: 'SIGKILL' });
    redis.disconnect();
    await redisServer.stop();
    await dir.cleanup();
  });

  it('holds every record of 50,000 frames exactly once after the service is killed mid-ingest', { timeout: 180_000 }, async () => {
    const { secret, env: secretEnv } = pressureSecret();
    const port = await freePort();
    const env = {
      ...secretEnv,
      PORT: String(port),
      DATA_DIR: dir.path,
      REDIS_URL: redisServer.url,
      INGEST_STREAM: 'crash:frames',
      INGEST_CONSUMER: 'crashy',
      ADMIN_TOKEN: ADMIN,
      LOG_LEVEL: 'info',
    };
    const status = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/api/ocean/status`, { headers: { authorization: `Bearer ${ADMIN}` } }).catch(() => undefined);
      return res?.ok ? ((await res.json()) as { telemetry_buffer: { rows: number; unprocessed: number } }) : undefined;
    };

    const { frames, totals, records } = pressureFrames({ count: 50_000, devices: 20, secret });
    child = startService(env);
    await waitFor(status, { what: 'service up', timeoutMs: 30_000 });
    for (let i = 0; i < frames.length; i += 1000) {
      const pipeline = redis.pipeline();
      for (const frame of frames.slice(i, i + 1000)) pipeline.xadd('crash:frames', '*', 'frame', frame);
      await pipeline.exec();
    }
    // Kill it while it is ingesting: some frames buffered, not all.
    const seen = await waitFor(async () => {
      const s = await status();
      return s && s.telemetry_buffer.rows >= 5000 ? s.telemetry_buffer.rows : 0;
    }, { what: 'ingest under way', intervalMs: 10, timeoutMs: 60_000 });
    child.kill('SIGKILL');
    await exited(child);
    expect(seen).toBeLessThan(frames.length);

    child = startService(env);
    let last = {};
    await waitFor(async () => {
      const pending = ((await redis.xpending('crash:frames', 'ocean-core')) as [number])[0];
      const groups = (await redis.xinfo('GROUPS', 'crash:frames')) as unknown[][];
      const lag = Number(groups[0]![groups[0]!.indexOf('lag') + 1]);
      const s = await status();
      last = { pending, lag, buffer: s?.telemetry_buffer };
      return pending === 0 && lag === 0 && s?.telemetry_buffer.unprocessed === 0;
    }, { what: 'stream drained and buffer flushed', timeoutMs: 120_000, intervalMs: 200 }).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(last)}\n${service?.output() ?? ''}`);
    });
    child.kill('SIGTERM');
    await exited(child);
    expect(child.exitCode).toBe(0);
    child = undefined;

    const analytics = await AnalyticsEngine.open({ path: join(dir.path, 'analytics.duckdb'), memoryLimit: '256MB', threads: 1 });
    try {
      const [all] = await analytics.all(
        'test',
        'SELECT count(*)::INTEGER AS n, count(DISTINCT (sensor_id, metric, ts, value))::INTEGER AS distinct_n FROM measurements',
      );
      expect({ n: Number(all!.n), distinct: Number(all!.distinct_n) }).toEqual({ n: records, distinct: records });
      const rows = await analytics.all(
        'test',
        'SELECT sensor_id, count(*)::INTEGER AS count, sum(value) AS sum, min(value) AS min, max(value) AS max FROM measurements GROUP BY 1',
      );
      const got = new Map(rows.map((r) => [String(r.sensor_id), { count: Number(r.count), sum: Number(r.sum), min: Number(r.min), max: Number(r.max) }]));
      expect(got).toEqual(totals);
    } finally {
      await analytics.close();
    }
  });
});
