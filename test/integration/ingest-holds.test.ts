/**
 * The pipeline holds against what a gateway meets in its first week: a full Redis, poison entries,
 * failed writes and retries, a lost ocean.db, records DuckDB refuses, Redis going away. Real
 * redis-server (spawned per test), real store files (or, in the shared project, a real PostgreSQL).
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeFrame, pressurePayload } from '../../src/nanogridata/encoder.js';
import type { Service } from '../../src/service.js';
import { createTestApp, SHARED, type TestApp } from '../helpers/app.js';
import { pressureFrames, pressureSecret, waitFor } from '../helpers/frames.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

/** Health and metrics of either mode's service. */
const running = (t: TestApp): Pick<Service, 'health' | 'metrics'> => (SHARED ? t.shared! : t.service);

/**
 * Makes the store fail every write of frames until the returned undo runs, as a read-only or full
 * data dir would (embedded), or a PostgreSQL refusing the readings' insert (shared: a trigger,
 * so the fingerprints inserted before it in the same transaction must roll back with it).
 */
async function failWrites(t: TestApp): Promise<() => Promise<void>> {
  if (!SHARED) {
    t.service.store.db.pragma('query_only = ON');
    return async () => void t.service.store.db.pragma('query_only = OFF');
  }
  const { pool } = t.shared!;
  await pool.query("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'test: writes refused'; END$$");
  await pool.query('CREATE TRIGGER test_refuse BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION test_refuse()');
  return async () => {
    await pool.query('DROP TRIGGER test_refuse ON readings');
    await pool.query('DROP FUNCTION test_refuse()');
  };
}

const health = async (t: TestApp) => (await t.app.inject({ method: 'GET', url: '/health' })).json() as { status: string; reasons: string[]; ingest: { consumer_connected: boolean } };

/** Waits for /health, evaluated in the background every 2 s, to say what `check` wants. */
async function healthSays(t: TestApp, check: (h: Awaited<ReturnType<typeof health>>) => boolean, what: string) {
  return waitFor(async () => {
    await running(t).health.evaluate();
    const h = await health(t);
    return check(h) ? h : undefined;
  }, { what, timeoutMs: 20_000, intervalMs: 100 });
}

describe('ingest that holds', () => {
  let redisServer: RedisServer | undefined;
  let redis: Redis | undefined;
  const apps: TestApp[] = [];
  const { secret, env: secretEnv } = pressureSecret();
  let stream: string;
  let dead: string;

  beforeEach(() => {
    const prefix = `h${randomUUID().slice(0, 8)}`;
    stream = `${prefix}:frames`;
    dead = `${prefix}:dead`;
  });
  afterEach(async () => {
    for (const t of apps.splice(0)) await t.close();
    redis?.disconnect();
    redis = undefined;
    await redisServer?.stop();
    redisServer = undefined;
  });

  const withRedis = async (options: { maxmemory?: string } = {}) => {
    redisServer = await startRedis(options);
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    return redis;
  };
  const streamEnv = () => ({
    ...secretEnv,
    REDIS_URL: redisServer!.url,
    INGEST_STREAM: stream,
    INGEST_GROUP: 'ocean',
    INGEST_CONSUMER: 'c1',
    DEAD_LETTER_STREAM: dead,
    INGEST_BLOCK_MS: '100',
  });
  const start = async (options: { env?: Record<string, string>; dataDir?: string; database?: string; start?: boolean } = {}) => {
    const t = await createTestApp({ start: true, ...options });
    apps.push(t);
    return t;
  };
  const frame = (deviceId: string, value: number, extra: Partial<Parameters<typeof encodeFrame>[0]> = {}) =>
    encodeFrame({ modelId: 0x10, level: 1, timestamp: Math.floor(Date.now() / 1000), payload: pressurePayload({ deviceId, entries: [{ value }] }), secret, ...extra });

  it('drains a full Redis (maxmemory, noeviction): everything is stored or dead-lettered, trimmed, and producers write again', async () => {
    const r = await withRedis({ maxmemory: '6mb' });
    await r.xgroup('CREATE', stream, 'ocean', '0', 'MKSTREAM'); // a previous life of the consumer made the group
    const badMac = frame('BAD-1', 1);
    badMac[badMac.length - 1]! ^= 0xff;
    await r.xadd(stream, '*', 'frame', badMac);
    // Fill Redis until it refuses the producer.
    const { frames, records } = pressureFrames({ count: 200_000, devices: 50, secret });
    let written = 0;
    let refused: Error | undefined;
    for (let i = 0; i < frames.length && !refused; i += 500) {
      const p = r.pipeline();
      for (const f of frames.slice(i, i + 500)) p.xadd(stream, '*', 'frame', f);
      for (const [err] of (await p.exec()) ?? []) {
        if (err) refused ??= err;
        else written++;
      }
    }
    expect(refused?.message).toMatch(/^OOM/);
    const expectedRecords = pressureFrames({ count: written, devices: 50, secret }).records;
    expect(written).toBeLessThan(frames.length);
    expect(records).toBeGreaterThan(expectedRecords);

    // A consumer starting now starts (its XGROUP CREATE is refused: the group is looked up instead).
    const t = await start({ env: streamEnv() });
    await waitFor(async () => (await t.count()) === expectedRecords, { what: 'every stored frame in analytics', timeoutMs: 60_000, intervalMs: 200 });
    await waitFor(async () => ((await r.xpending(stream, 'ocean')) as [number])[0] === 0, { what: 'everything acknowledged' });
    // The dead letter Redis refused while full is written once it has room.
    await waitFor(async () => (await r.xlen(dead)) === 1, { what: 'the dead letter', timeoutMs: 20_000 });
    await waitFor(async () => (await r.xlen(stream)) < 1000, { what: 'the stream trimmed' });
    expect(await r.xadd(stream, '*', 'frame', frame('AFTER-1', 7))).toBeTruthy();
    await waitFor(async () => (await t.count()) === expectedRecords + 1, { what: 'a new frame after the drain' });
    expect(await healthSays(t, (h) => h.status === 'healthy', 'healthy again')).toMatchObject({ status: 'healthy', reasons: [] });
  }, 120_000);

  it('says degraded while Redis is near maxmemory, and healthy once it is not', async () => {
    const r = await withRedis({ maxmemory: '4mb' });
    const t = await start({ env: streamEnv() });
    await healthSays(t, (h) => h.status === 'healthy' && h.ingest.consumer_connected, 'connected and healthy');
    const filler = 'x'.repeat(10_000);
    for (let i = 0; ; i++) {
      const info = await r.info('memory');
      if (Number(/used_memory:(\d+)/.exec(info)![1]) > 0.93 * 4 * 1024 * 1024) break;
      await r.set(`filler:${i}`, filler);
    }
    expect((await healthSays(t, (h) => h.reasons.includes('redis_near_maxmemory'), 'near maxmemory')).status).toBe('degraded');
    const { registry } = running(t).metrics;
    expect(registry.getSingleMetric('ocean_health_degraded')).toBeDefined();
    const metrics = await registry.getSingleMetricAsString('ocean_health_degraded');
    expect(metrics).toMatch(/ocean_health_degraded\{reason="redis_near_maxmemory"\} 1/);
    await r.flushdb();
    await healthSays(t, (h) => h.status === 'healthy', 'healthy again');
  });

  it('dead-letters a poison entry with its reason while the rest of its batch is stored', async () => {
    const r = await withRedis();
    const t = await start({ env: streamEnv() });
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    const good = pressureFrames({ count: 20, devices: 2, secret });
    const p = r.pipeline();
    for (const f of good.frames.slice(0, 10)) p.xadd(stream, '*', 'frame', f);
    p.xadd(stream, '*', 'sensor_id', 'J-deep', 'data', deep);
    p.xadd(stream, '*', 'sensor_id', 'J-huge', 'data', JSON.stringify(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`m${i}`, i]))));
    p.xadd(stream, '*', 'frame', Buffer.alloc(1024 * 1024 + 10, 0xc1));
    p.xadd(stream, '*', 'sensor_id', 'J-ok', 'data', '{"t": 1}');
    for (const f of good.frames.slice(10)) p.xadd(stream, '*', 'frame', f);
    await p.exec();
    await waitFor(async () => (await r.xlen(dead)) === 3, { what: 'three dead letters' });
    await waitFor(async () => (await t.count()) === good.records + 1, { what: 'the rest stored' });
    const reasons = (await r.xrange(dead, '-', '+')).map(([, fields]) => fields[fields.indexOf('reason') + 1]).sort();
    expect(reasons).toEqual(['bad_reading', 'bad_reading', 'entry_too_large']);
    const huge = (await r.xrange(dead, '-', '+')).find(([, f]) => f.includes('entry_too_large'))![1];
    // The dead letter keeps a bounded copy of the entry, and says it was cut.
    expect(huge[huge.indexOf('frame') + 1]!.length).toBeLessThanOrEqual(64 * 1024);
    expect(huge[huge.indexOf('truncated') + 1]).toBe('frame');
  });

  it('accepts a frames POST again after it failed to be stored (no "replay" for a retry)', async () => {
    const t = await start({ env: secretEnv });
    const body = Buffer.concat([frame('RETRY-1', 1), frame('RETRY-2', 2)]);
    const post = () => t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/frames', headers: { 'content-type': 'application/octet-stream' }, payload: body });
    const undo = await failWrites(t);
    try {
      expect((await post()).statusCode).toBe(500);
    } finally {
      await undo();
    }
    expect(await t.count()).toBe(0);
    expect((await post()).json()).toMatchObject({ accepted: 2, rejected: [] });
    expect((await post()).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'replay' }, { index: 1, reason: 'replay' }] });
  });

  it('remembers accepted frames across a restart without Redis', async () => {
    const t = await start({ env: secretEnv });
    const body = frame('RESTART-1', 1);
    const post = (app: TestApp) => app.app.inject({ method: 'POST', url: '/api/ocean/telemetry/frames', headers: { 'content-type': 'application/octet-stream' }, payload: body });
    expect((await post(t)).json()).toMatchObject({ accepted: 1, rejected: [] });
    // Embedded: the replay index is rebuilt from DuckDB; shared: the fingerprints are in PostgreSQL.
    const { dataDir, database } = t;
    await t.close({ keepDir: true });
    apps.splice(apps.indexOf(t), 1);
    const again = await start({ env: secretEnv, dataDir, database });
    expect((await post(again)).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'replay' }] });
  });

  // SQLite's ocean.db lost beside DuckDB's file: the shared mode keeps both in one PostgreSQL.
  it.skipIf(SHARED)('continues above DuckDB when ocean.db is lost beside a kept analytics.duckdb, and loses no new reading', async () => {
    const first = await start();
    const ingest = (t: TestApp, v: number) =>
      t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: t.admin, payload: { sensor_id: 'S-1', data: { v } } });
    for (let v = 0; v < 5; v++) expect((await ingest(first, v)).statusCode).toBe(200);
    await first.service.committer.whenIdle();
    expect(first.service.committer.status().queue_through).toBe(5);
    const dataDir = first.dataDir;
    await first.close({ keepDir: true });
    apps.splice(apps.indexOf(first), 1);
    for (const f of ['ocean.db', 'ocean.db-wal', 'ocean.db-shm']) await rm(join(dataDir, f), { force: true });

    const t = await start({ dataDir });
    for (let v = 5; v < 8; v++) expect((await ingest(t, v)).json().id).toBeGreaterThan(5);
    await t.service.committer.whenIdle();
    expect(await t.count()).toBe(8);
  });

  // The embedded gap between the SQLite and the DuckDB commits; the shared mode commits a batch in one transaction.
  it.skipIf(SHARED)('commits on start the readings ocean.db holds and analytics.duckdb does not (a stop between the two)', async () => {
    // Not started: readings reach the work queue and nothing carries them into DuckDB, as after a
    // kill -9 between the SQLite commit and the DuckDB one.
    const first = await start({ start: false });
    for (let v = 0; v < 4; v++) {
      const res = await first.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: first.admin, payload: { sensor_id: 'C-1', data: { v } } });
      expect(res.statusCode).toBe(200);
    }
    const dataDir = first.dataDir;
    await first.close({ keepDir: true });
    apps.splice(apps.indexOf(first), 1);

    const t = await start({ dataDir });
    await t.service.committer.whenIdle();
    expect(await t.count()).toBe(4);
    expect(t.service.committer.status().queue_through).toBe(4);
    expect(t.service.store.buffer.counts()).toMatchObject({ rows: 4, queued: 4 });
  });

  it('keeps the dead-letter stream bounded by DEAD_LETTER_MAXLEN', async () => {
    const r = await withRedis();
    await start({ env: { ...streamEnv(), DEAD_LETTER_MAXLEN: '100' } });
    const p = r.pipeline();
    for (let i = 0; i < 600; i++) p.xadd(stream, '*', 'something', 'else');
    await p.exec();
    await waitFor(async () => ((await r.xpending(stream, 'ocean')) as [number])[0] === 0 && (await r.xlen(stream)) < 600, { what: 'all handled' });
    await waitFor(async () => {
      const groups = (await r.xinfo('GROUPS', stream)) as unknown[][];
      return Number(groups[0]![groups[0]!.indexOf('lag') + 1]) === 0;
    }, { what: 'all read' });
    const length = await r.xlen(dead);
    expect(length).toBeGreaterThanOrEqual(100);
    expect(length).toBeLessThanOrEqual(200); // MAXLEN ~ trims whole nodes of 100
  });

  it('says the consumer is disconnected while Redis is down, and healthy once it is back', async () => {
    await withRedis();
    const t = await start({ env: streamEnv() });
    await healthSays(t, (h) => h.status === 'healthy' && h.ingest.consumer_connected, 'connected');
    await redisServer!.pause();
    const down = await healthSays(t, (h) => !h.ingest.consumer_connected, 'disconnected');
    expect(down).toMatchObject({ status: 'degraded', reasons: expect.arrayContaining(['consumer_disconnected']) });
    expect(running(t).metrics.registry.getSingleMetric('ocean_ingest_connected')).toBeDefined();
    await redisServer!.resume();
    await healthSays(t, (h) => h.status === 'healthy' && h.ingest.consumer_connected, 'connected again');
  });
});
