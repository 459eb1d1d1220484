import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, loadNanogridataConfig } from '../../src/config.js';
import { DecodePool } from '../../src/ingest/decode-pool.js';
import { StreamConsumer } from '../../src/ingest/consumer.js';
import { createMetrics } from '../../src/metrics.js';
import type { Pg } from '../../src/postgres/connect.js';
import { createPgDevices } from '../../src/postgres/devices.js';
import { foldActivity } from '../../src/postgres/activity.js';
import { PgIngest } from '../../src/postgres/ingest.js';
import { watchDeviceSecrets } from '../../src/postgres/secrets.js';
import { exited, launchTsx, stop as stopChild } from '../helpers/child-process.js';
import { pressureFrames, pressureSecret, waitFor } from '../helpers/frames.js';
import { mulberry32 } from '../../src/nanogridata/simulated-sensors.js';
import { skipWithoutPostgres, usePostgres } from '../helpers/postgres-server.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const STREAM = 'ocean:frames';
const GROUP = 'ocean-core';
const { secret, env } = pressureSecret();

describe.skipIf(skipWithoutPostgres())('several consumers in one group on one PostgreSQL (the shared mode)', () => {
  const pg = usePostgres();
  let redisServer: RedisServer;
  let redis: Redis;
  const open: Array<{ stop?(): Promise<void>; close?(): Promise<void> }> = [];
  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await (o.stop ?? o.close)!.call(o);
    await redis.flushall();
  });
  afterAll(async () => {
    redis?.disconnect();
    await redisServer?.stop();
  });

  function consumer(pool: Pg, name: string, claimIdleMs: number): StreamConsumer {
    const decoder = new DecodePool(loadNanogridataConfig(env), pino({ level: 'silent' }), 1);
    open.push(decoder);
    const config = loadConfig({ ...env, INGEST_STREAM: STREAM, INGEST_GROUP: GROUP, INGEST_BATCH_SIZE: '100', INGEST_BLOCK_MS: '100' }).ingest;
    const c = new StreamConsumer({
      redis,
      config,
      consumerName: name,
      pipeline: new PgIngest({ pool, decoder }),
      metrics: createMetrics(),
      logger: pino({ level: 'silent' }),
      claimIdleMs,
    });
    open.push(c);
    return c;
  }
  const pendingCount = async () => ((await redis.xpending(STREAM, GROUP)) as [number])[0];

  it('stores every frame once with two consumers and one dead one, whose pending entries they claim', async () => {
    const [a, b] = await pg.database(2);
    const { frames, records } = pressureFrames({ count: 1500, devices: 30, secret });
    await redis.xgroup('CREATE', STREAM, GROUP, '0', 'MKSTREAM');
    const pipeline = redis.pipeline();
    for (const f of frames) pipeline.xadd(STREAM, '*', 'frame', f);
    // 100 frames sent again in later entries: replays, whichever consumer sees them.
    for (const f of frames.slice(0, 100)) pipeline.xadd(STREAM, '*', 'frame', f);
    await pipeline.exec();
    // An instance that read 300 entries and died before acknowledging them.
    await redis.xreadgroup('GROUP', GROUP, 'dead', 'COUNT', 300, 'STREAMS', STREAM, '>');
    expect(await pendingCount()).toBe(300);

    await Promise.all([consumer(a!, 'a', 300).start(), consumer(b!, 'b', 300).start()]);
    const stored = async () => (await a!.query<{ n: number }>('SELECT count(*) AS n FROM replay_fingerprints')).rows[0]!.n;
    await waitFor(async () => (await stored()) === 1500 && (await redis.xlen(`${STREAM}:dead`)) === 100 && (await pendingCount()) === 0, {
      what: 'every entry stored or dead-lettered, and acknowledged',
      timeoutMs: 20_000,
    });
    expect((await a!.query('SELECT count(*) AS n FROM readings')).rows[0].n).toBe(records);
    const letters = (await redis.xrange(`${STREAM}:dead`, '-', '+')) as Array<[string, string[]]>;
    expect(letters.map(([, fields]) => fields[fields.indexOf('reason') + 1])).toEqual(Array(100).fill('replay'));
    // The dead instance's entries were taken over: nothing is left pending on it.
    const consumers = (await redis.xinfo('CONSUMERS', STREAM, GROUP)) as unknown[][];
    const dead = consumers.find((c) => c[c.indexOf('name') + 1] === 'dead')!;
    expect(dead[dead.indexOf('pending') + 1]).toBe(0);
  });

  it("gives every instance a device's own secret set through another, also after PostgreSQL restarted", async () => {
    const [a, b] = await pg.database(2);
    const url = (await a!.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db;
    const seen: Array<ReadonlyMap<string, Buffer>> = [];
    const watcher = await watchDeviceSecrets(a!, `postgres://postgres@127.0.0.1:${pg.server().port}/${url}`, (s) => seen.push(s), pino({ level: 'silent' }));
    open.push(watcher);
    expect(seen.at(-1)!.size).toBe(0);
    const devices = createPgDevices(b!);
    await devices.register({ deviceId: 'OWN-1', ownerId: null, secret: Buffer.alloc(32, 9) });
    await waitFor(() => seen.at(-1)!.get('OWN-1')?.equals(Buffer.alloc(32, 9)), { what: 'the secret set through B, seen by A' });
    await pg.server().restart();
    // While the listener reconnects, B sets another; A reads the whole set again once back.
    await waitFor(async () => {
      try {
        await devices.register({ deviceId: 'OWN-2', ownerId: null, secret: Buffer.alloc(32, 8) });
        return true;
      } catch {
        return false;
      }
    }, { what: 'PostgreSQL back' });
    await waitFor(() => seen.at(-1)!.has('OWN-2') && seen.at(-1)!.has('OWN-1'), { what: 'both secrets after the restart', timeoutMs: 15_000 });
  });

  it('stores every frame exactly once while service instances are killed (kill -9) at random moments and restarted', { timeout: 120_000 }, async () => {
    const [pool] = await pg.database();
    const db = (await pool!.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db;
    const pgUrl = `postgres://postgres@127.0.0.1:${pg.server().port}/${db}`;
    const dataDir = await makeTempDir('ocean-kill-');
    open.push({ stop: () => dataDir.cleanup() });
    const { frames, records } = pressureFrames({ count: 20_000, devices: 40, secret });
    await redis.xgroup('CREATE', STREAM, GROUP, '0', 'MKSTREAM');
    // Each instance is the service as `npm start` runs it (src/main.ts), with DATABASE_URL; a restarted one reads its own pending entries first.
    const start = (name: string) => {
      const child = launchTsx('src/main.ts', [], {
        inherit: false,
        env: {
          PATH: process.env.PATH,
          ...env,
          DATABASE_URL: pgUrl,
          REDIS_URL: redisServer.url,
          ADMIN_TOKEN: 'test-admin-token-0123456789abcdef',
          INGEST_STREAM: STREAM,
          INGEST_GROUP: GROUP,
          INGEST_CONSUMER: name,
          INGEST_BATCH_SIZE: '50',
          INGEST_BLOCK_MS: '100',
          PORT: '0',
          DATA_DIR: join(dataDir.path, name),
        },
      });
      const started = waitFor(() => child.stdout().includes('Server listening'), { what: `instance ${name} started`, timeoutMs: 30_000 });
      return { child, started };
    };
    let a = start('a');
    const b = start('b');
    open.push({ stop: async () => void (await Promise.all([stopChild(a.child.proc, { signal: 'SIGKILL' }), stopChild(b.child.proc, { signal: 'SIGKILL' })])) });
    await Promise.all([a.started, b.started]);
    // Frames arrive over about 15 s (400 every 300 ms), so that the kills fall while they still arrive,
    // however fast the instances store them and however slowly a killed one starts again.
    const produced = (async () => {
      for (let i = 0; i < frames.length; i += 400) {
        const pipeline = redis.pipeline();
        for (const f of frames.slice(i, i + 400)) pipeline.xadd(STREAM, '*', 'frame', f);
        await pipeline.exec();
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    const stored = async () => (await pool!.query<{ n: number }>('SELECT count(*) AS n FROM replay_fingerprints')).rows[0]!.n;
    // Kill A mid-ingest three times, each once the store has passed a point (with a seeded jitter), restarting it each time.
    const random = mulberry32(7);
    const atKill: number[] = [];
    for (const point of [1000, 7000, 13000]) {
      const target = point + Math.floor(random() * 2000);
      await waitFor(async () => (await stored()) >= target, { what: `${target} frames stored`, timeoutMs: 30_000, intervalMs: 5 });
      a.child.proc.kill('SIGKILL');
      await exited(a.child.proc);
      atKill.push(await stored());
      a = start('a');
      await a.started;
    }
    // The kills fell while frames were still arriving.
    expect(atKill.filter((n) => n < 20_000).length).toBeGreaterThanOrEqual(2);
    await produced;
    await waitFor(async () => (await stored()) === 20_000 && (await pendingCount()) === 0, { what: 'every frame stored and acknowledged', timeoutMs: 60_000 });
    expect((await pool!.query('SELECT count(*) AS n FROM readings')).rows[0].n).toBe(records);
    await foldActivity(pool!, Date.now() / 1000);
    expect((await pool!.query('SELECT sum(frames)::bigint AS f, sum(records)::bigint AS r FROM devices')).rows[0]).toEqual({ f: 20_000, r: records });
    expect(await redis.xlen(`${STREAM}:dead`)).toBe(0);
  });
});
