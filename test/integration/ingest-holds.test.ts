/**
 * The pipeline holds against what a gateway meets in its first week: a full Redis, poison entries,
 * failed writes and retries, a lost ocean.db, records DuckDB refuses, Redis going away. Real
 * redis-server (spawned per test), real store files.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PARTITION_TABLES, partitionOf } from '../../src/analytics/partitions.js';
import { encodeFrame, pressurePayload } from '../../src/nanogridata/encoder.js';
import { RecordBatchBuilder } from '../../src/operational/record-batch.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { pressureFrames, pressureSecret, waitFor } from '../helpers/frames.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { makeTempDir } from '../helpers/temp-dir.js';

async function duckCount(t: TestApp): Promise<number> {
  return Number((await t.service.analytics.all('test', 'SELECT count(*)::INTEGER AS n FROM measurements'))[0]!.n);
}

const health = async (t: TestApp) => (await t.app.inject({ method: 'GET', url: '/health' })).json() as { status: string; reasons: string[]; ingest: { consumer_connected: boolean } };

/** Waits for /health, evaluated in the background every 2 s, to say what `check` wants. */
async function healthSays(t: TestApp, check: (h: Awaited<ReturnType<typeof health>>) => boolean, what: string) {
  return waitFor(async () => {
    await t.service.health.evaluate();
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
    FLUSH_INTERVAL_MS: '50',
  });
  const start = async (options: { env?: Record<string, string>; dataDir?: string; start?: boolean } = {}) => {
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
    await waitFor(async () => (await duckCount(t)) === expectedRecords, { what: 'every stored frame in DuckDB', timeoutMs: 60_000, intervalMs: 200 });
    await waitFor(async () => ((await r.xpending(stream, 'ocean')) as [number])[0] === 0, { what: 'everything acknowledged' });
    // The dead letter Redis refused while full is written once it has room.
    await waitFor(async () => (await r.xlen(dead)) === 1, { what: 'the dead letter', timeoutMs: 20_000 });
    await waitFor(async () => (await r.xlen(stream)) < 1000, { what: 'the stream trimmed' });
    expect(await r.xadd(stream, '*', 'frame', frame('AFTER-1', 7))).toBeTruthy();
    await waitFor(async () => (await duckCount(t)) === expectedRecords + 1, { what: 'a new frame after the drain' });
    // Replay memory caught up: every accepted frame is remembered in Redis.
    await waitFor(() => t.service.replay.status().backlog === 0, { what: 'replay memory written' });
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
    expect(t.service.metrics.registry.getSingleMetric('ocean_health_degraded')).toBeDefined();
    const metrics = await t.service.metrics.registry.getSingleMetricAsString('ocean_health_degraded');
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
    await waitFor(async () => (await duckCount(t)) === good.records + 1, { what: 'the rest stored' });
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
    t.service.store.db.pragma('query_only = ON'); // as a read-only or full data dir would
    try {
      expect((await post()).statusCode).toBe(500);
    } finally {
      t.service.store.db.pragma('query_only = OFF');
    }
    expect(t.service.store.buffer.counts().rows).toBe(0);
    expect((await post()).json()).toMatchObject({ accepted: 2, rejected: [] });
    expect((await post()).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'replay' }, { index: 1, reason: 'replay' }] });
  });

  it('remembers accepted frames across a restart without Redis', async () => {
    const t = await start({ env: secretEnv });
    const body = frame('RESTART-1', 1);
    const post = (app: TestApp) => app.app.inject({ method: 'POST', url: '/api/ocean/telemetry/frames', headers: { 'content-type': 'application/octet-stream' }, payload: body });
    expect((await post(t)).json()).toMatchObject({ accepted: 1, rejected: [] });
    const dataDir = t.dataDir;
    await t.close({ keepDir: true });
    apps.splice(apps.indexOf(t), 1);
    const again = await start({ env: secretEnv, dataDir });
    expect((await post(again)).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'replay' }] });
  });

  it('continues above DuckDB when ocean.db is lost beside a kept analytics.duckdb, and loses no new reading', async () => {
    const first = await start();
    const ingest = (t: TestApp, v: number) =>
      t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: t.admin, payload: { sensor_id: 'S-1', data: { v } } });
    for (let v = 0; v < 5; v++) expect((await ingest(first, v)).statusCode).toBe(200);
    await first.service.flusher.flush();
    expect((await first.service.analytics.ingestState()).queueThrough).toBe(5);
    const dataDir = first.dataDir;
    await first.close({ keepDir: true });
    apps.splice(apps.indexOf(first), 1);
    for (const f of ['ocean.db', 'ocean.db-wal', 'ocean.db-shm']) await rm(join(dataDir, f), { force: true });

    const t = await start({ dataDir });
    for (let v = 5; v < 8; v++) expect((await ingest(t, v)).json().id).toBeGreaterThan(5);
    await t.service.flusher.flush();
    expect(await duckCount(t)).toBe(8);
  });

  it('counts the rows DuckDB took as flushed after a stop between the DuckDB append and the buffer mark', async () => {
    const first = await start();
    for (let v = 0; v < 4; v++) {
      const res = await first.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: first.admin, payload: { sensor_id: 'C-1', data: { v } } });
      expect(res.statusCode).toBe(200);
    }
    await first.service.flusher.flush();
    expect((await first.service.analytics.ingestState()).queueThrough).toBe(4);
    const dataDir = first.dataDir;
    await first.close({ keepDir: true });
    apps.splice(apps.indexOf(first), 1);
    // What a kill -9 right after DuckDB's commit leaves: DuckDB holds rows 1-4, the buffer has not marked them.
    const db = new Database(join(dataDir, 'ocean.db'));
    db.prepare("UPDATE counters SET value = 0 WHERE name = 'flushed_through'").run();
    db.prepare("UPDATE counters SET value = 4 WHERE name = 'buffer_unprocessed'").run();
    db.close();

    const t = await start({ dataDir });
    expect(t.service.store.buffer.counts()).toMatchObject({ rows: 4, unprocessed: 0 });
    expect(t.service.store.buffer.flushedThrough()).toBe(4);
    await t.service.flusher.flush();
    expect(await duckCount(t)).toBe(4);
  });

  it('quarantines the records DuckDB refuses, after retries, and flushes the rest', async () => {
    // A DuckDB file whose partition for sensor Q-1 refuses the value 666 (as a bug or a corrupt row would make it refuse something).
    const dataDir = (await makeTempDir('ocean-quarantine-')).path;
    const duck = await DuckDBInstance.create(join(dataDir, 'analytics.duckdb'));
    const c = await duck.connect();
    await c.run(`CREATE TABLE ${PARTITION_TABLES[partitionOf('Q-1')]} (buffer_id BIGINT NOT NULL, ts TIMESTAMP NOT NULL, sensor_id VARCHAR NOT NULL,
      metric VARCHAR NOT NULL, value DOUBLE NOT NULL CHECK (value <> 666), unit VARCHAR NOT NULL, lab_id VARCHAR, model_id SMALLINT, source VARCHAR NOT NULL)`);
    c.closeSync();
    duck.closeSync();
    const t = await start({ dataDir, env: { FLUSH_INTERVAL_MS: '20' } });
    const ingest = (data: object) => t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: t.admin, payload: { sensor_id: 'Q-1', data } });
    await ingest({ a: 1, b: 2 });
    await ingest({ a: 666, b: 3 });
    await ingest({ a: 4 });
    // A record no store can hold (a time beyond year 9999) in a row written by an older build.
    const odd = new RecordBatchBuilder();
    odd.add({ sensor_id: 'Q-2', metric: 'm', unit: '', ts: 1e300, value: 1 }, null, null);
    odd.add({ sensor_id: 'Q-2', metric: 'm', unit: '', ts: 1_767_225_600, value: 2 }, null, null);
    t.service.store.transaction(() => t.service.store.buffer.insert({ source: 'http', messages: 1, records: odd.toBuffer(), recordCount: 2 }));
    await waitFor(() => t.service.store.quarantine.count() === 2, { what: 'two quarantined records', timeoutMs: 20_000 });
    await waitFor(() => t.service.store.buffer.counts().unprocessed === 0, { what: 'the rest flushed' });
    expect(await duckCount(t)).toBe(5);
    const quarantined = t.service.store.quarantine.list(10);
    expect(quarantined.map((q) => q.content.value).sort()).toEqual([1, 666]);
    expect(quarantined.find((q) => q.content.value === 666)!.error).toMatch(/CHECK constraint/i);
    expect((await healthSays(t, (h) => h.reasons.includes('quarantined_records'), 'quarantine in /health')).status).toBe('degraded');
    // The admin sees them, with the error.
    const res = await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/quarantine', headers: t.admin });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ count: 2, records: expect.arrayContaining([expect.objectContaining({ error: expect.any(String) })]) });
  }, 60_000);

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
    expect(t.service.metrics.registry.getSingleMetric('ocean_ingest_connected')).toBeDefined();
    await redisServer!.resume();
    await healthSays(t, (h) => h.status === 'healthy' && h.ingest.consumer_connected, 'connected again');
  });
});
