import Database from 'better-sqlite3';
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

  const envFor = (port: number, stream: string, secretEnv: Record<string, string>, dataDir: string) => ({
    ...secretEnv,
    PORT: String(port),
    DATA_DIR: dataDir,
    REDIS_URL: redisServer.url,
    INGEST_STREAM: stream,
    INGEST_CONSUMER: 'crashy',
    ADMIN_TOKEN: ADMIN,
    LOG_LEVEL: 'info',
  });
  type Status = { ingest: { committer: { batch: number; position: string | null }; consumer: { last_error: string | null } } };
  const statusOf = (port: number) => async () => {
    const res = await fetch(`http://127.0.0.1:${port}/api/ocean/status`, { headers: { authorization: `Bearer ${ADMIN}` } }).catch(() => undefined);
    return res?.ok ? ((await res.json()) as Status) : undefined;
  };
  const xadd = async (stream: string, frames: Buffer[]) => {
    let last = '';
    for (let i = 0; i < frames.length; i += 1000) {
      const pipeline = redis.pipeline();
      for (const frame of frames.slice(i, i + 1000)) pipeline.xadd(stream, '*', 'frame', frame);
      const results = (await pipeline.exec()) ?? [];
      last = String(results[results.length - 1]![1]);
    }
    return last;
  };
  /** Waits until nothing is pending or undelivered in the group, then stops the service cleanly. */
  const drainAndStop = async (stream: string) => {
    let last = {};
    await waitFor(async () => {
      const pending = ((await redis.xpending(stream, 'ocean-core')) as [number])[0];
      const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
      const lag = Number(groups[0]![groups[0]!.indexOf('lag') + 1]);
      last = { pending, lag };
      return pending === 0 && lag === 0;
    }, { what: 'stream drained', timeoutMs: 120_000, intervalMs: 200 }).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(last)}\n${service?.output() ?? ''}`);
    });
    child!.kill('SIGTERM');
    await exited(child!);
    expect(child!.exitCode).toBe(0);
    child = undefined;
  };
  /** Per sensor totals in DuckDB, and whether any record is there twice. */
  const analyticsTotals = async (dataDir: string) => {
    const analytics = await AnalyticsEngine.open({ path: join(dataDir, 'analytics.duckdb'), memoryLimit: '256MB', threads: 1 });
    try {
      const [all] = await analytics.all('test', 'SELECT count(*)::INTEGER AS n, count(DISTINCT (sensor_id, metric, ts, value))::INTEGER AS distinct_n FROM measurements');
      const rows = await analytics.all(
        'test',
        'SELECT sensor_id, count(*)::INTEGER AS count, sum(value) AS sum, min(value) AS min, max(value) AS max FROM measurements GROUP BY 1',
      );
      return {
        n: Number(all!.n),
        distinct: Number(all!.distinct_n),
        totals: new Map(rows.map((r) => [String(r.sensor_id), { count: Number(r.count), sum: Number(r.sum), min: Number(r.min), max: Number(r.max) }])),
      };
    } finally {
      await analytics.close();
    }
  };

  it('holds every record of 50,000 frames exactly once after the service is killed mid-ingest', { timeout: 180_000 }, async () => {
    const { secret, env: secretEnv } = pressureSecret();
    const port = await freePort();
    const env = envFor(port, 'crash:frames', secretEnv, join(dir.path, 'mid-ingest'));
    const status = statusOf(port);
    const { frames, totals, records } = pressureFrames({ count: 50_000, devices: 20, secret });
    child = startService(env);
    await waitFor(status, { what: 'service up', timeoutMs: 30_000 });
    const lastId = await xadd('crash:frames', frames);
    // Kill it while it is ingesting: some batches committed, not all.
    await waitFor(async () => ((await status())?.ingest.committer.batch ?? 0) >= 5, { what: 'ingest under way', intervalMs: 10, timeoutMs: 60_000 });
    const position = (await status())?.ingest.committer.position;
    child.kill('SIGKILL');
    await exited(child);
    expect(position).not.toBe(lastId);

    child = startService(env);
    await drainAndStop('crash:frames');
    const got = await analyticsTotals(env.DATA_DIR);
    expect({ n: got.n, distinct: got.distinct }).toEqual({ n: records, distinct: records });
    expect(got.totals).toEqual(totals);
  });

  it('counts every frame once when killed between the analytics commit and XACK: records, device activity and usage', { timeout: 180_000 }, async () => {
    const { secret, env: secretEnv } = pressureSecret();
    const port = await freePort();
    const stream = 'crash:unacked';
    const env = envFor(port, stream, secretEnv, join(dir.path, 'unacked'));
    const status = statusOf(port);
    const { frames, totals, records } = pressureFrames({ count: 5000, devices: 10, secret, prefix: 'U' });
    child = startService(env);
    await waitFor(status, { what: 'service up', timeoutMs: 30_000 });
    // A user owns the devices, so their records are billed as usage.
    const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    const user = (await (await fetch(`http://127.0.0.1:${port}/api/ocean/users`, { method: 'POST', headers: admin, body: JSON.stringify({ username: 'owner', email: 'owner@example.com' }) })).json()) as { id: string };
    for (let d = 0; d < 10; d++) {
      const res = await fetch(`http://127.0.0.1:${port}/api/ocean/devices`, { method: 'POST', headers: admin, body: JSON.stringify({ device_id: `U-${d}`, owner_id: user.id }) });
      expect(res.status).toBe(200);
    }
    // Redis refuses XACK: batches are committed to DuckDB and none is acknowledged. Unable to
    // acknowledge, the consumer reads no further: it retries its pending entries (redeliveries,
    // committed already) until XACK works again.
    await redis.call('ACL', 'SETUSER', 'default', '-xack');
    const lastId = await xadd(stream, frames);
    const refused = await waitFor(async () => {
      const s = await status();
      return s?.ingest.committer.position && /NOPERM/.test(s.ingest.consumer.last_error ?? '') ? s : undefined;
    }, { what: 'batches committed and XACK refused', timeoutMs: 60_000 });
    const position = refused.ingest.committer.position!;
    expect(position).not.toBe(lastId);
    // Every entry up to the committed position is still pending: committed, never acknowledged.
    const committed = (await redis.xrange(stream, '-', position)).length;
    expect(committed).toBeGreaterThan(0);
    expect(((await redis.xpending(stream, 'ocean-core', '-', position, frames.length)) as unknown[]).length).toBe(committed);
    child.kill('SIGKILL');
    await exited(child);
    await redis.call('ACL', 'SETUSER', 'default', '+xack');

    child = startService(env);
    await drainAndStop(stream);
    const got = await analyticsTotals(env.DATA_DIR);
    expect({ n: got.n, distinct: got.distinct }).toEqual({ n: records, distinct: records });
    expect(got.totals).toEqual(totals);
    const db = new Database(join(env.DATA_DIR, 'ocean.db'), { readonly: true });
    try {
      const devices = db.prepare("SELECT device_id, frames, records FROM devices WHERE device_id LIKE 'U-%'").all() as Array<{ device_id: string; frames: number; records: number }>;
      expect(new Map(devices.map((d) => [d.device_id, d.records]))).toEqual(new Map([...totals].map(([id, t]) => [id, t.count])));
      expect(devices.reduce((n, d) => n + d.frames, 0)).toBe(frames.length);
      expect((db.prepare('SELECT usage FROM billing WHERE user_id = ?').get(user.id) as { usage: number }).usage).toBe(records);
    } finally {
      db.close();
    }
  });
});
