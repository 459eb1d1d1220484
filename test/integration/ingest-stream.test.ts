import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsumerRefusedError } from '../../src/ingest/consumer.js';
import { encodeFrame, gasPayload, pressurePayload } from '../../src/nanogridata/encoder.js';
import type { Service } from '../../src/service.js';
import { createTestApp, SHARED, type TestApp } from '../helpers/app.js';
import { pressureFrames, waitFor } from '../helpers/frames.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { streamTestEnv, xaddFrames } from '../helpers/stream-env.js';

/**
 * Per-sensor totals as analytics holds them (either mode). `duplicates` counts rows repeating a
 * (metric, value): the frames here never repeat a value, so any such row is a record stored twice.
 */
async function totalsOf(t: TestApp, sensors: Iterable<string>) {
  const totals = new Map<string, { count: number; sum: number; min: number; max: number; duplicates: number }>();
  for (const sensor of sensors) {
    const rows = await t.measurements(sensor);
    if (rows.length === 0) continue;
    const values = rows.map(([, v]) => v);
    const distinct = new Set(rows.map(([metric, v]) => `${metric}|${v}`)).size;
    totals.set(sensor, { count: rows.length, sum: values.reduce((a, b) => a + b, 0), min: Math.min(...values), max: Math.max(...values), duplicates: rows.length - distinct });
  }
  return totals;
}

/** The stream consumer of either mode. */
const consumerOf = (t: TestApp): Service['consumer'] => (SHARED ? t.shared!.consumer : t.service.consumer);

describe('Redis stream ingest', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let apps: TestApp[];
  let env: Record<string, string>;
  let secret: Buffer;
  let stream: string;
  let dead: string;

  beforeEach(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    redis.on('error', () => undefined); // the restart test takes the server away on purpose
    apps = [];
    ({ secret, stream, dead, env } = streamTestEnv(redisServer.url));
  });

  afterEach(async () => {
    for (const t of apps) await t.close();
    redis.disconnect();
    await redisServer.stop();
  });

  const start = async (extra: Record<string, string> = {}) => {
    const t = await createTestApp({ env: { ...env, ...extra }, start: true });
    apps.push(t);
    return t;
  };

  it('stores every good entry once and dead-letters each bad one with its reason', async () => {
    const t = await start();
    const now = Math.floor(Date.now() / 1000);
    const good = pressureFrames({ count: 30, devices: 3, secret, now });
    const frame = (deviceId: string, extra: Partial<Parameters<typeof encodeFrame>[0]> = {}) =>
      encodeFrame({ modelId: 0x10, level: 1, timestamp: now, payload: pressurePayload({ deviceId, entries: [{ value: 1 }] }), secret, ...extra });
    const badMac = frame('X-1');
    badMac[badMac.length - 1]! ^= 0xff;
    const bad: Array<{ reason: string; fields: Array<string | Buffer> }> = [
      { reason: 'bad_mac', fields: ['frame', badMac] },
      { reason: 'bad_magic', fields: ['frame', Buffer.from('not a frame at all, just text')] },
      { reason: 'truncated', fields: ['frame', frame('X-2').subarray(0, 20)] },
      { reason: 'timestamp_drift', fields: ['frame', frame('X-3', { timestamp: now - 7200 })] },
      { reason: 'unsigned', fields: ['frame', frame('X-4', { level: 0 })] },
      { reason: 'no_secret', fields: ['frame', encodeFrame({ modelId: 0x20, level: 1, timestamp: now, payload: gasPayload({ deviceId: 'G-1', gasType: 'CO2', entries: [{ value: 400 }] }), secret })] },
      { reason: 'unknown_model', fields: ['frame', frame('X-5', { modelId: 0x55 })] },
      { reason: 'bad_payload', fields: ['frame', frame('X-6', { payload: Buffer.from([0x01, 0x02, 0x03]) })] },
      { reason: 'device_mismatch', fields: ['frame', frame('X-7'), 'device_id', 'someone-else'] },
      { reason: 'replay', fields: ['frame', good.frames[0]!] },
      { reason: 'bad_hex', fields: ['frame_hex', 'zz-not-hex'] },
      { reason: 'bad_reading', fields: ['sensor_id', 'J-1', 'data', '{"temperature": 1e200}'] },
      { reason: 'bad_entry', fields: ['something', 'else'] },
    ];
    await xaddFrames(redis, stream, good.frames);
    await redis.xadd(stream, '*', 'sensor_id', 'J-1', 'data', JSON.stringify({ temperature: 21.5, note: 'text is kept, not a record' }));
    await redis.xadd(stream, '*', 'frame_hex', frame('H-1').toString('hex'));
    const badIds = new Map<string, string>();
    for (const b of bad) badIds.set(String(await redis.xadd(stream, '*', ...b.fields)), b.reason);

    await waitFor(async () => (await redis.xlen(dead)) === bad.length, { what: 'dead letters' });
    await waitFor(async () => (await t.count()) === good.records + 2, { what: 'records in analytics' });

    const deadEntries = await redis.xrange(dead, '-', '+');
    const byReason = new Map<string, string>();
    for (const [, fields] of deadEntries) {
      const f = new Map<string, string>();
      for (let i = 0; i < fields.length; i += 2) if (!f.has(fields[i]!)) f.set(fields[i]!, fields[i + 1]!);
      byReason.set(f.get('reason')!, f.get('source_id')!);
    }
    for (const [id, reason] of badIds) expect(byReason.get(reason), reason).toBe(id);

    const totals = await totalsOf(t, [...good.totals.keys(), 'J-1', 'H-1']);
    for (const [sensor, expected] of good.totals) {
      expect(totals.get(sensor)).toEqual({ ...expected, duplicates: 0 });
    }
    expect(totals.get('J-1')?.count).toBe(1);
    expect(totals.get('H-1')?.count).toBe(1);
    // Everything was acknowledged.
    await waitFor(async () => {
      const summary = (await redis.xpending(stream, 'ocean')) as [number, ...unknown[]];
      return summary[0] === 0;
    }, { what: 'no pending entries' });
  });

  it('stores an entry committed but never acknowledged once, and does not call it a replay', async () => {
    // Redis refuses XACK (an ACL): the first life commits the entry to analytics, cannot acknowledge it, stops.
    await redis.call('ACL', 'SETUSER', 'default', '-xack');
    const first = await start();
    const { frames } = pressureFrames({ count: 3, devices: 1, secret });
    await xaddFrames(redis, stream, frames);
    await waitFor(async () => (await first.count()) === 6, { what: 'records committed' });
    expect(((await redis.xpending(stream, 'ocean')) as [number])[0]).toBe(3);
    const { dataDir, database } = first;
    apps.splice(apps.indexOf(first), 1);
    await first.close({ keepDir: true });
    await redis.call('ACL', 'SETUSER', 'default', '+xack');

    // The restarted consumer (the same name: kept in the data dir, or INGEST_CONSUMER in the shared
    // mode) reads its pending entries again: they are recognised and acknowledged.
    const t = await createTestApp({ env, dataDir, database, start: true });
    apps.push(t);
    await waitFor(async () => ((await redis.xpending(stream, 'ocean')) as [number])[0] === 0, { what: 'entries acked' });
    expect(await t.count()).toBe(6);
    expect(await redis.xlen(dead)).toBe(0);
    // Device activity counted once (side effects are applied by close at the latest).
    apps.splice(apps.indexOf(t), 1);
    await t.close({ keepDir: true });
    const after = await createTestApp({ env: { LOG_LEVEL: 'silent' }, dataDir, database, start: false });
    apps.push(after);
    expect(await after.store.devices.get('P-0')).toMatchObject({ frames: 3, records: 6 });
  });

  // The embedded mode's one consumer per group; the shared mode accepts several by design (next test).
  it.skipIf(SHARED)('refuses to join a group another data dir serves, and says what to do', async () => {
    await start();
    const other = await createTestApp({ env: { ...env, INGEST_CONSUMER: 'c2' }, start: false });
    apps.push(other);
    const refused = await other.service.start().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(ConsumerRefusedError);
    expect(String((refused as Error).message)).toMatch(/consumer c1.*DATABASE_URL.*XGROUP DELCONSUMER/s);
    // It consumed nothing: the group still has one consumer.
    const consumers = (await redis.xinfo('CONSUMERS', stream, 'ocean')) as unknown[][];
    expect(consumers.map((c) => String(c[1]))).toEqual(['c1']);
  });

  it.runIf(SHARED)('accepts a second instance as another consumer of the group, and stores each entry once', async () => {
    const first = await start();
    const second = await createTestApp({ env: { ...env, INGEST_CONSUMER: 'c2' }, database: first.database, start: true });
    apps.push(second);
    expect(consumerOf(second)?.status()).toMatchObject({ consumer: 'c2', refused: false });
    const { frames, totals, records } = pressureFrames({ count: 300, devices: 3, secret });
    await xaddFrames(redis, stream, frames);
    await waitFor(async () => (await first.count()) === records, { what: 'every record' });
    await waitFor(async () => ((await redis.xpending(stream, 'ocean')) as [number])[0] === 0, { what: 'entries acked' });
    const got = await totalsOf(second, totals.keys());
    for (const [sensor, expected] of totals) expect(got.get(sensor)).toEqual({ ...expected, duplicates: 0 });
    // Both read from the group (a consumer appears there with its first XREADGROUP).
    await waitFor(async () => {
      const consumers = (await redis.xinfo('CONSUMERS', stream, 'ocean')) as unknown[][];
      return consumers.map((c) => String(c[1])).sort().join() === 'c1,c2';
    }, { what: 'two consumers in the group' });
    expect(await redis.xlen(dead)).toBe(0);
  });

  // The name is kept in DATA_DIR by the embedded mode only; the shared mode takes INGEST_CONSUMER on each start (next test).
  it.skipIf(SHARED)('keeps its consumer name in the data dir across restarts', async () => {
    const first = await start();
    const dataDir = first.dataDir;
    apps.splice(apps.indexOf(first), 1);
    await first.close({ keepDir: true });
    const t = await createTestApp({ env: { ...env, INGEST_CONSUMER: 'renamed-host' }, dataDir, start: true });
    apps.push(t);
    expect(t.service.consumer?.status().consumer).toBe('c1');
  });

  it.runIf(SHARED)('names its consumer by INGEST_CONSUMER on each start (nothing kept in the data dir)', async () => {
    const first = await start();
    const { dataDir, database } = first;
    apps.splice(apps.indexOf(first), 1);
    await first.close({ keepDir: true });
    const t = await createTestApp({ env: { ...env, INGEST_CONSUMER: 'renamed-host' }, dataDir, database, start: true });
    apps.push(t);
    expect(consumerOf(t)?.status().consumer).toBe('renamed-host');
  });

  // Its own budget: a restart and the consumer's reconnection backoff (up to 5 s) on a loaded machine.
  it('reconnects after a Redis restart and loses nothing', { timeout: 60_000 }, async () => {
    await redisServer.stop();
    redisServer = await startRedis({ appendonly: true });
    redis.disconnect();
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    env.REDIS_URL = redisServer.url;
    const t = await start();
    const { frames, totals, records } = pressureFrames({ count: 4000, devices: 5, secret });
    await xaddFrames(redis, stream, frames.slice(0, 2000));
    await waitFor(async () => (await t.count()) > 0, { what: 'first records' });
    await redisServer.restart();
    await xaddFrames(redis, stream, frames.slice(2000));
    await waitFor(async () => (await t.count()) === records, { what: 'every record after the restart', timeoutMs: 30_000 });
    const got = await totalsOf(t, totals.keys());
    for (const [sensor, expected] of totals) expect(got.get(sensor)).toEqual({ ...expected, duplicates: 0 });
    expect(consumerOf(t)?.status().connected).toBe(true);
  });

  it('rejects an HTTP-posted frame that the stream already delivered as a replay, and keeps no replay state in Redis', async () => {
    const t = await start();
    const [frame] = pressureFrames({ count: 1, devices: 1, secret }).frames;
    await redis.xadd(stream, '*', 'frame', frame!);
    await waitFor(async () => (await t.count()) > 0, { what: 'frame stored' });
    const res = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/frames', headers: { 'content-type': 'application/octet-stream' }, payload: frame });
    expect(res.json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'replay' }] });
    expect((await redis.keys('*')).sort()).toEqual([stream]);
  });
});
