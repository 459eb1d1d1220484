import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/nanogridata/simulated-sensors.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { skipWithoutPostgres, usePostgres } from '../helpers/postgres-server.js';
import { encodeFrame, pressurePayload } from '../../src/nanogridata/encoder.js';
import { PRESSURE_MODEL, pressureFrames, pressureSecret, waitFor } from '../helpers/frames.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { createUserWithSession } from '../helpers/sessions.js';

/**
 * Two instances of the service (DATABASE_URL) on one PostgreSQL, each its own app: what a user of
 * one sees through the other. The store-level cases are in postgres-operational.test.ts; these go
 * through HTTP, as clients do.
 */
describe.skipIf(skipWithoutPostgres())('the shared mode: two instances, one database', () => {
  const pg = usePostgres();
  const open: TestApp[] = [];
  // One redis-server for the file; each test's stream starts empty.
  let redisServer: RedisServer;
  let redis: Redis;
  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((t) => t.close()));
    await redis.flushall();
  });
  afterAll(async () => {
    redis?.disconnect();
    await redisServer?.stop();
  });
  /** Instances named `names` on a new database, each consuming the stream with `env` (the frame secrets). */
  const streamInstances = async (names: string[], env: Record<string, string>) => {
    const url = await pg.server().createDatabase();
    const apps = await Promise.all(names.map((name) => createTestApp({ env: { ...env, DATABASE_URL: url, REDIS_URL: redisServer.url, INGEST_CONSUMER: name, INGEST_BLOCK_MS: '100' } })));
    open.push(...apps);
    return apps;
  };
  /** Two instances on a new database, started together (the schema is migrated once: advisory lock). */
  const twoInstances = async (): Promise<[TestApp, TestApp]> => {
    const url = await pg.server().createDatabase();
    const apps = await Promise.all(['a', 'b'].map((name) => createTestApp({ env: { DATABASE_URL: url, INGEST_CONSUMER: name } })));
    open.push(...apps);
    return apps as [TestApp, TestApp];
  };
  const inject = (t: TestApp, method: 'GET' | 'POST', url: string, headers: Record<string, string>, payload?: object) =>
    t.app.inject({ method, url: `/api/ocean${url}`, headers, ...(payload ? { payload } : {}) });

  it('starts both on an empty database, migrating once; a session made through A validates through B, and B revoking it is refused by A at once', async () => {
    const [a, b] = await twoInstances();
    const { rows } = await a.shared!.pool.query('SELECT version FROM ocean_schema ORDER BY version');
    expect(rows.map((r) => r.version)).toEqual([1, 2, 3, 4, 5, 6]);
    const alice = await createUserWithSession(a, 'alice');
    expect((await inject(b, 'POST', '/sessions/validate', alice.auth)).statusCode).toBe(200);
    expect((await inject(b, 'GET', `/users/${alice.id}`, alice.auth)).json().username).toBe('alice');
    expect((await inject(b, 'POST', '/sessions/revoke', alice.auth)).statusCode).toBe(200);
    expect((await inject(a, 'POST', '/sessions/validate', alice.auth)).statusCode).toBe(401);
    expect((await inject(a, 'GET', `/users/${alice.id}`, alice.auth)).statusCode).toBe(401);
  });

  it('answers each of many concurrent validations on its own (they share round trips): valid, revoked and unknown tokens mixed', async () => {
    const [a, b] = await twoInstances();
    const alice = await createUserWithSession(a, 'alice');
    const bob = await createUserWithSession(b, 'bob');
    const revoked = await createUserWithSession(a, 'carol');
    expect((await inject(b, 'POST', '/sessions/revoke', revoked.auth)).statusCode).toBe(200);
    const unknown = { authorization: `Bearer ${'x'.repeat(alice.token.length)}` };
    const cases = Array.from({ length: 60 }, (_, i) => [alice, bob, revoked, { auth: unknown, username: undefined }][i % 4]!);
    const answers = await Promise.all(cases.map((c) => inject(a, 'POST', '/sessions/validate', c.auth)));
    answers.forEach((res, i) => {
      const c = cases[i]!;
      if (c === alice || c === bob) {
        expect(res.statusCode).toBe(200);
        expect(res.json().session.username).toBe(c.username);
      } else expect(res.statusCode).toBe(401);
    });
  });

  it('never takes credits below zero through both, the ledger summing to the balance; one username taken at once through both answers one 200 and one 409', async () => {
    const [a, b] = await twoInstances();
    const alice = await createUserWithSession(a, 'alice');
    expect((await inject(a, 'POST', `/billing/${alice.id}/add-credits?amount=50`, a.admin)).statusCode).toBe(200);
    const debits = await Promise.all(Array.from({ length: 80 }, (_, i) => inject(i % 2 ? a : b, 'POST', `/billing/${alice.id}/add-credits?amount=-1`, a.admin)));
    expect(debits.filter((r) => r.statusCode === 200)).toHaveLength(50);
    expect(debits.filter((r) => r.statusCode !== 200).map((r) => r.json().error)).toEqual(Array(30).fill('insufficient_credits'));
    const billing = (await inject(b, 'GET', `/billing/${alice.id}`, alice.auth)).json();
    expect(billing.credits).toBe(0);
    const { rows } = await a.shared!.pool.query('SELECT coalesce(sum(delta), 0) AS total FROM billing_ledger WHERE user_id = $1', [alice.id]);
    expect(Number(rows[0].total)).toBe(0);

    const [one, two] = await Promise.all([a, b].map((t) => inject(t, 'POST', '/users', t.admin, { username: 'carol', email: `carol-${t === a ? 'a' : 'b'}@example.com` })));
    expect([one!.statusCode, two!.statusCode].sort()).toEqual([200, 409]);
  });

  it('answers /health degraded (database_unreachable) and refuses ingest with 5xx while PostgreSQL is down, then recovers with nothing half-stored', async () => {
    const [a] = await twoInstances();
    const alice = await createUserWithSession(a, 'alice');
    expect((await inject(a, 'POST', '/telemetry/ingest', alice.auth, { sensor_id: 's1', data: { v: 1 } })).statusCode).toBe(200);
    await a.shared!.health.evaluate();
    expect((await a.app.inject({ method: 'GET', url: '/health' })).json()).toMatchObject({ status: 'healthy', checks: { postgresql: 'ok' } });

    const server = pg.server();
    await server.down();
    try {
      await a.shared!.health.evaluate();
      const health = await a.app.inject({ method: 'GET', url: '/health' });
      expect(health.statusCode).toBe(200);
      expect(health.json()).toMatchObject({ status: 'degraded', reasons: ['database_unreachable'], checks: { postgresql: 'unavailable' } });
      const metrics = (await a.app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(metrics).toContain('ocean_health_degraded{reason="database_unreachable"} 1');
      const refused = await inject(a, 'POST', '/telemetry/ingest', alice.auth, { sensor_id: 's1', data: { v: 2 } });
      expect(refused.statusCode).toBeGreaterThanOrEqual(500);
      expect(refused.body).not.toContain('accepted');
    } finally {
      await server.up();
    }
    await a.shared!.health.evaluate();
    expect((await a.app.inject({ method: 'GET', url: '/health' })).json()).toMatchObject({ status: 'healthy', reasons: [] });
    expect((await inject(a, 'POST', '/telemetry/ingest', alice.auth, { sensor_id: 's1', data: { v: 3 } })).statusCode).toBe(200);
    expect(await a.count('s1')).toBe(2);
    const metrics = (await a.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/ocean_database_pool_connections\{state="total"\} [1-9]/);
    expect(metrics).toMatch(/ocean_database_query_duration_seconds_count\{engine="postgresql",op="health_ping"\} [1-9]/);
  });

  it('stores 100,000 stream entries read by both instances once each: duplicates refused as replays, records equal the unique frames', { timeout: 120_000 }, async () => {
    const { secret, env } = pressureSecret();
    const apps = await streamInstances(['a', 'b'], env);
    const { frames, records } = pressureFrames({ count: 90_000, devices: 500, secret });
    // 10,000 copies spread through the stream: of each pair, whichever is stored first stands, the other is a replay, whichever instance reads it.
    const random = mulberry32(21);
    const entries = [...frames];
    for (let i = 0; i < 10_000; i++) entries.splice(Math.floor(random() * entries.length), 0, frames[Math.floor(random() * frames.length)]!);
    for (let i = 0; i < entries.length; i += 5000) {
      const batch = redis.pipeline();
      for (const f of entries.slice(i, i + 5000)) batch.xadd('ocean:frames', '*', 'frame', f);
      await batch.exec();
    }
    const [a] = apps as [TestApp, TestApp];
    const pool = a.shared!.pool;
    const count = async (sql: string) => (await pool.query<{ n: number }>(sql)).rows[0]!.n;
    await waitFor(async () => (await redis.xlen('ocean:frames:dead')) === 10_000 && (await count('SELECT count(*) AS n FROM replay_fingerprints')) === 90_000, {
      what: 'every entry stored or refused',
      timeoutMs: 90_000,
      intervalMs: 100,
    });
    await waitFor(async () => ((await redis.xpending('ocean:frames', 'ocean-core')) as [number])[0] === 0, { what: 'nothing pending' });
    expect(await count('SELECT count(*) AS n FROM readings')).toBe(records);
    const reasons = (await redis.xrange('ocean:frames:dead', '-', '+')).map(([, fields]) => fields[fields.indexOf('reason') + 1]);
    expect(new Set(reasons)).toEqual(new Set(['replay']));
    // Both instances took part.
    const consumers = (await redis.call('XINFO', 'CONSUMERS', 'ocean:frames', 'ocean-core')) as unknown[][];
    expect(consumers.map((c) => c[1]).sort()).toEqual(['a', 'b']);
  });

  it('loses and doubles nothing when PostgreSQL restarts while both instances ingest a stream', { timeout: 120_000 }, async () => {
    const { secret, env } = pressureSecret();
    const apps = await streamInstances(['a', 'b'], { ...env, INGEST_BATCH_SIZE: '200' });
    const { frames, records } = pressureFrames({ count: 30_000, devices: 100, secret });
    for (let i = 0; i < frames.length; i += 5000) {
      const batch = redis.pipeline();
      for (const f of frames.slice(i, i + 5000)) batch.xadd('ocean:frames', '*', 'frame', f);
      await batch.exec();
    }
    const pool = apps[0]!.shared!.pool;
    const stored = async () => (await pool.query<{ n: number }>('SELECT count(*) AS n FROM replay_fingerprints')).rows[0]!.n;
    await waitFor(async () => (await stored()) >= 3000, { what: 'ingest under way', timeoutMs: 30_000, intervalMs: 5 });
    const server = pg.server();
    await server.down();
    // Down long enough for both instances' batches to fail and be read again.
    await new Promise((r) => setTimeout(r, 2000));
    await server.up();
    await waitFor(
      async () => {
        try {
          return (await stored()) === 30_000 && ((await redis.xpending('ocean:frames', 'ocean-core')) as [number])[0] === 0;
        } catch {
          return false; // the pool's connections are re-made after the restart
        }
      },
      { what: 'every frame stored once, nothing pending', timeoutMs: 90_000, intervalMs: 100 },
    );
    expect((await pool.query('SELECT count(*) AS n FROM readings')).rows[0].n).toBe(records);
    expect(await redis.xlen('ocean:frames:dead')).toBe(0);
  });

  it('dead-letters stream entries PostgreSQL text could not hold (U+0000) and goes on storing the rest', async () => {
    const { secret, env } = pressureSecret();
    const [a] = (await streamInstances(['a'], env)) as [TestApp];
    const now = Math.floor(Date.now() / 1000);
    const bad = encodeFrame({ modelId: PRESSURE_MODEL, level: 1, timestamp: now, secret, payload: pressurePayload({ deviceId: 'P-1', labId: 'L\u0000', entries: [{ ts: now, value: 1 }] }) });
    const ids = [
      await redis.xadd('ocean:frames', '*', 'sensor_id', 'J-1', 'data', 'a\u0000b'),
      await redis.xadd('ocean:frames', '*', 'frame', bad),
      ...(await Promise.all(pressureFrames({ count: 10, devices: 2, secret }).frames.map((f) => redis.xadd('ocean:frames', '*', 'frame', f)))),
    ];
    await waitFor(async () => (await a.count()) > 0 && ((await redis.xpending('ocean:frames', 'ocean-core')) as [number])[0] === 0, { what: 'the good frames stored, nothing pending' });
    const dead = await redis.xrange('ocean:frames:dead', '-', '+');
    expect(dead.map(([, fields]) => [fields[fields.indexOf('source_id') + 1], fields[fields.indexOf('reason') + 1]])).toEqual([
      [ids[0], 'bad_reading'],
      [ids[1], 'bad_payload'],
    ]);
    expect(await a.count('P-0')).toBeGreaterThan(0);
  });

  it('rejects alone, as unstorable, a frame whose data the database refuses, and stores the rest of its batch', async () => {
    const { secret, env } = pressureSecret();
    const [a] = (await streamInstances(['a'], env)) as [TestApp];
    // A value the checks at the edge let through and the database refuses (as it refused U+0000 before those checks).
    await a.shared!.pool.query(`CREATE FUNCTION refuse_value() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.value = 100111 THEN RAISE EXCEPTION 'value % refused', NEW.value USING ERRCODE = '22023'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse_value BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION refuse_value()`);
    const { frames } = pressureFrames({ count: 100, devices: 5, secret });
    const ids: string[] = [];
    const batch = redis.pipeline();
    for (const f of frames) batch.xadd('ocean:frames', '*', 'frame', f);
    for (const [, id] of (await batch.exec())!) ids.push(String(id));
    await waitFor(async () => (await redis.xlen('ocean:frames:dead')) === 1 && ((await redis.xpending('ocean:frames', 'ocean-core')) as [number])[0] === 0, {
      what: 'the refused frame dead-lettered, nothing pending',
    });
    const [[, fields]] = (await redis.xrange('ocean:frames:dead', '-', '+')) as Array<[string, string[]]>;
    // Frame 37 carries the value 100,000 + 37 × 3.
    expect(fields[fields.indexOf('source_id') + 1]).toBe(ids[37]);
    expect(fields[fields.indexOf('reason') + 1]).toBe('unstorable');
    expect(fields[fields.indexOf('detail') + 1]).toContain('value 100111 refused');
    // Every other frame's readings are stored: all but frame 37's 1 + 37 % 3 = 2.
    expect(await a.count()).toBe(pressureFrames({ count: 100, devices: 5, secret }).records - 2);
  });

  it('refuses the online backup with the way to back up PostgreSQL instead, and describes itself as the shared mode', async () => {
    const [a] = await twoInstances();
    const docs = (await a.app.inject({ method: 'GET', url: '/api/ocean/docs' })).json();
    expect(docs.architecture).toContain('PostgreSQL');
    expect(docs.layers.operational).toMatch(/^PostgreSQL/);
    const res = await inject(a, 'POST', '/admin/backup', a.admin, { dir: '/tmp/never-written' });
    expect(res.statusCode).toBe(409);
    expect(res.json().detail).toContain('pg_dump');
  });
});
