import { afterEach, describe, expect, it } from 'vitest';
import { openPostgres, type Pg } from '../../src/postgres/connect.js';
import { migratePostgres, PG_SCHEMA_VERSION } from '../../src/postgres/migrations.js';
import { MAINTENANCE_LOCK, runMaintenance } from '../../src/postgres/maintenance.js';
import { openPgStore } from '../../src/postgres/store.js';
import { openOperationalStore } from '../../src/operational/store.js';
import { makeTempDirSync } from '../helpers/temp-dir.js';
import { join } from 'node:path';
import { skipWithoutPostgres, usePostgres } from '../helpers/postgres-server.js';
import type { StoreOperations } from '../../src/operational/store.js';
import { openTempStore } from '../helpers/temp-store.js';

/** What an instance of the shared mode holds of the operational store: its own pool to the one database. */
const instance = (pool: Pg) => openPgStore(pool, { sessionTtlS: 3600, maxSensorsPerUser: 3 });
type Store = ReturnType<typeof instance>;

/** The answer of a call, or the error's status, code and message, so that two stores' answers compare. */
async function answer<T>(call: () => T | Promise<T>): Promise<T | { status: number; code: string; message: string }> {
  try {
    return await call();
  } catch (err) {
    const e = err as { statusCode?: number; code?: string; message: string };
    if (e.statusCode === undefined) throw err;
    return { status: e.statusCode, code: e.code ?? '', message: e.message };
  }
}

/**
 * UUIDs and tokens replaced by placeholders numbered by first appearance, and times the stores took
 * from the clock (within a day of now) by one placeholder, so that two stores' answers compare
 * whatever second each call fell in. Times the script set (years ago) stay as they are.
 */
function normalised(value: unknown): unknown {
  const seen = new Map<string, string>();
  const now = Date.now();
  const identity = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[A-Za-z0-9_-]{43})$/;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      if (/^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(v)) return Math.abs(Date.parse(v) - now) < 86_400_000 ? '<now>' : v;
      if (!identity.test(v)) return v.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, (id) => walk(id) as string);
      if (!seen.has(v)) seen.set(v, `<${seen.size}>`);
      return seen.get(v);
    }
    if (typeof v === 'number' && Math.abs(v * 1000 - now) < 86_400_000) return '<now>';
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value);
}

describe.skipIf(skipWithoutPostgres())('the shared store on PostgreSQL', () => {
  const pg = usePostgres();
  /** Two instances (two pools) on a new, migrated database. */
  async function twoInstances(): Promise<[Store, Store]> {
    const [a, b] = await pg.database(2);
    sql = a!;
    return [instance(a!), instance(b!)];
  }
  /** The first instance's pool, for checks in SQL. */
  let sql: Pg;
  const pools: Pg[] = [];
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.end()));
  });

  it('migrates once when several instances start together on an empty database, and refuses a newer schema', async () => {
    const url = await pg.server().createDatabase();
    pools.push(...[0, 1, 2, 3].map(() => openPostgres(url, { max: 2 })));
    const applied = await Promise.all(pools.map((p) => migratePostgres(p)));
    expect(applied.filter((a) => a.length > 0)).toEqual([Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1)]);
    const p = pools[0]!;
    expect((await p.query('SELECT version FROM ocean_schema ORDER BY version')).rows.map((r) => r.version)).toEqual(
      Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1),
    );
    await p.query('INSERT INTO ocean_schema(version) VALUES ($1)', [PG_SCHEMA_VERSION + 1]);
    await expect(migratePostgres(p)).rejects.toThrow(/newer than this build/);
  });

  it('answers as the embedded store does, call for call', async () => {
    const [pgStore] = await twoInstances();
    const embedded = openTempStore({ sessionTtlS: 3600 });
    const script = async (s: StoreOperations) => {
      const out: unknown[] = [];
      const alice = (await s.users.create({ username: 'alice', email: 'alice@example.com' })) as { id: string };
      out.push(alice);
      out.push(await answer(() => s.users.create({ username: 'alice', email: 'other@example.com' })));
      out.push(await answer(() => s.users.create({ username: 'other', email: 'ALICE@example.com' })));
      const bob = (await s.users.create({ username: 'bob', email: 'bob@example.com' })) as { id: string };
      out.push(await answer(() => s.users.update(bob.id, { username: 'alice' })));
      out.push(await answer(() => s.users.update(bob.id, { email: 'robert@example.com' })));
      out.push(await answer(() => s.users.update('00000000-0000-4000-8000-000000000000', { email: 'x@example.com' })));
      out.push(await answer(() => s.users.list({ limit: 10 })));
      out.push(await answer(() => s.users.list({ limit: 10, after: alice.id })));
      out.push(await answer(() => s.sessions.create(alice.id, 'bob')));
      out.push(await answer(() => s.sessions.create('00000000-0000-4000-8000-000000000000', 'alice')));
      const session = (await s.sessions.create(alice.id, 'alice')) as { token: string; session_id: string };
      out.push(await answer(() => s.sessions.verify(session.token)));
      out.push(await answer(() => s.sessions.verify('x'.repeat(43))));
      out.push(await answer(() => s.sessions.find({ token: session.token })));
      out.push(await answer(() => s.sessions.revoke({ sessionId: session.session_id })));
      out.push(await answer(() => s.sessions.revoke({ sessionId: session.session_id })));
      out.push(await answer(() => s.sessions.verify(session.token)));
      out.push(await answer(() => s.billing.addCredits(alice.id, 100, 'top-up')));
      out.push(await answer(() => s.billing.addCredits(alice.id, -101)));
      out.push(await answer(() => s.billing.addCredits(alice.id, 0)));
      out.push(await answer(() => s.billing.addCredits(alice.id, 1.5)));
      out.push(await answer(() => s.billing.addCredits('00000000-0000-4000-8000-000000000000', 5)));
      out.push(await answer(() => s.billing.addCredits(alice.id, 9007199254740991)));
      out.push(await answer(() => s.billing.addCredits(alice.id, -40)));
      const key = { scope: 'admin:add-credits', key: 'k1' };
      out.push(await answer(() => s.billing.addCreditsOnce(key, alice.id, 7, 'once')));
      out.push(await answer(() => s.billing.addCreditsOnce(key, alice.id, 7, 'once')));
      out.push(await answer(() => s.billing.addCreditsOnce(key, alice.id, 8, 'once')));
      out.push(await answer(() => s.billing.get(alice.id)));
      out.push(await answer(() => s.billing.ledger(alice.id, { limit: 10 })));
      out.push(await answer(() => s.billing.ledger(alice.id, { limit: 1, before: 2 })));
      out.push(await answer(() => s.users.remove(bob.id)));
      out.push(await answer(() => s.users.remove(bob.id)));
      out.push(await answer(() => s.billing.get(bob.id)));
      await s.metadata.set('site', { name: 'north', floors: [1, 2] });
      await s.metadata.set('site', 'replaced');
      await s.metadata.set('empty', undefined);
      out.push(await answer(() => s.metadata.get('site')));
      out.push(await answer(() => s.metadata.get('empty')));
      out.push(await answer(() => s.metadata.get('nothing')));
      await s.metadata.storeProfile({ profile_id: 'p1', sensor_id: 'P-1', timestamp: 1_700_000_000.5, metadata: { a: 1 } });
      out.push(await answer(() => s.metadata.getProfile('p1')));
      out.push(await answer(() => s.metadata.getProfile('site')));
      return normalised(out);
    };
    try {
      const expected = await script(embedded.store);
      expect(await script(pgStore)).toEqual(expected);
    } finally {
      embedded.cleanup();
    }
  });

  it('deletes a user with its ledger (the ledger refuses every other change)', async () => {
    const [a] = await twoInstances();
    const { id } = await a.users.create({ username: 'alice', email: 'alice@example.com' });
    await a.billing.addCredits(id, 10);
    const p = sql;
    await expect(p.query('UPDATE billing_ledger SET delta = 20')).rejects.toThrow(/append-only/);
    await expect(p.query('DELETE FROM billing_ledger')).rejects.toThrow(/append-only/);
    expect(await a.users.remove(id)).toBe(true);
    expect((await p.query('SELECT count(*) AS n FROM billing_ledger')).rows[0].n).toBe(0);
  });

  it('validates through B a session made through A, and A refuses at once a session B revoked', async () => {
    const [a, b] = await twoInstances();
    const user = await a.users.create({ username: 'alice', email: 'alice@example.com' });
    const session = await a.sessions.create(user.id, 'alice');
    expect(await b.sessions.verify(session.token)).toMatchObject({ session_id: session.session_id, user_id: user.id, username: 'alice' });
    expect(await a.sessions.verify(session.token)).toMatchObject({ session_id: session.session_id });
    expect(await b.sessions.revoke({ token: session.token })).toBe(true);
    expect(await a.sessions.verify(session.token)).toBeNull();
    // A user renamed or deleted through one is seen so by the other at once.
    const other = await b.sessions.create(user.id, 'alice');
    await b.users.update(user.id, { username: 'alicia' });
    expect(await a.sessions.verify(other.token)).toMatchObject({ username: 'alicia' });
    await b.users.remove(user.id);
    expect(await a.sessions.verify(other.token)).toBeNull();
    expect(await a.users.get(user.id)).toBeUndefined();
  });

  it('answers one 200 and one 409 to a username taken through both instances at the same moment', async () => {
    const [a, b] = await twoInstances();
    for (let round = 0; round < 20; round++) {
      const results = await Promise.allSettled([
        a.users.create({ username: `user${round}`, email: `a${round}@example.com` }),
        b.users.create({ username: `user${round}`, email: `b${round}@example.com` }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(refused.reason).toMatchObject({ statusCode: 409, message: `username 'user${round}' already exists` });
    }
    const listed = await b.users.list({ limit: 100 });
    expect(listed).toHaveLength(20);
    // Every user has its billing row: no half-created user was left by the refused one.
    expect((await sql.query('SELECT count(*) AS n FROM billing')).rows[0].n).toBe(20);
  });

  it('never takes credits below zero under debits through both instances, and the ledger sums to the balance', async () => {
    const [a, b] = await twoInstances();
    const { id } = await a.users.create({ username: 'alice', email: 'alice@example.com' });
    await a.billing.addCredits(id, 100);
    const debits = Array.from({ length: 40 }, (_, i) => answer(() => (i % 2 ? a : b).billing.addCredits(id, -7, `debit ${i}`)));
    const results = await Promise.all(debits);
    const made = results.filter((r) => !('status' in (r as object)));
    expect(made).toHaveLength(14);
    expect(results.filter((r) => (r as { code?: string }).code === 'insufficient_credits')).toHaveLength(26);
    expect((await b.billing.get(id))!.credits).toBe(2);
    const ledger = await a.billing.ledger(id, { limit: 100 });
    expect(ledger.reduce((sum, e) => sum + e.delta, 0)).toBe(2);
    expect(ledger.every((e) => e.balance_after >= 0)).toBe(true);
    expect(ledger.map((e) => e.balance_after).sort((x, y) => x - y)).toEqual([2, 9, 16, 23, 30, 37, 44, 51, 58, 65, 72, 79, 86, 93, 100]);
  });

  it('applies once an Idempotency-Key sent to both instances at the same moment', async () => {
    const [a, b] = await twoInstances();
    const { id } = await a.users.create({ username: 'alice', email: 'alice@example.com' });
    for (let round = 0; round < 10; round++) {
      const key = { scope: 'admin:add-credits', key: `k${round}` };
      const [x, y] = await Promise.all([a.billing.addCreditsOnce(key, id, 5), b.billing.addCreditsOnce(key, id, 5)]);
      expect(x.change).toEqual(y.change);
      expect([x.replayed, y.replayed].sort()).toEqual([false, true]);
    }
    expect((await a.billing.get(id))!.credits).toBe(50);
    expect(await b.billing.ledger(id, { limit: 100 })).toHaveLength(10);
  });

  it('keeps devices as the embedded store does, call for call: registration, claims, the sensor cap, conflicts, activity, pages', async () => {
    const [pgStore] = await twoInstances();
    const temp = makeTempDirSync('ocean-op-');
    const embedded = openOperationalStore(join(temp.path, 'ocean.db'), { sessionTtlS: 3600, maxSensorsPerUser: 3 });
    const script = async (s: Pick<StoreOperations, 'users' | 'devices' | 'deviceEvents' | 'metadata' | 'storeProfileAs'>) => {
      const out: unknown[] = [];
      const alice = (await s.users.create({ username: 'alice', email: 'alice@example.com' })).id;
      const bob = (await s.users.create({ username: 'bob', email: 'bob@example.com' })).id;
      out.push(await answer(() => s.devices.claimForUser('S-1', alice)));
      out.push(await answer(() => s.devices.claimForUser('S-1', bob)));
      out.push(await answer(() => s.devices.claimAllForUser(['S-2', 'S-3'], alice)));
      // A fourth sensor passes the cap of 3: refused, and nothing of the call is kept.
      out.push(await answer(() => s.devices.claimAllForUser(['S-4', 'S-5'], alice)));
      out.push(await answer(() => s.devices.ownedCount(alice)));
      out.push(await answer(() => s.devices.ownerOf('S-4')));
      await s.devices.noteFrameDevices(['F-1', 'F-2', 'F-1']);
      out.push(await answer(() => s.devices.claimForUser('F-1', bob)));
      out.push(await answer(() => s.devices.ownerOf('F-1')));
      out.push(await answer(() => s.devices.isHeld('F-1')));
      out.push(await answer(() => s.devices.isHeld('S-1')));
      out.push(await answer(() => s.devices.claimantOf('S-1')));
      out.push(await answer(() => s.devices.claimantOf('F-1')));
      await s.devices.noteConflict('S-1', alice);
      await s.devices.noteConflict('S-1', alice);
      out.push((await s.devices.conflicts()).map((c) => ({ ...c, first_at: typeof c.first_at, last_at: typeof c.last_at })));
      await s.metadata.storeProfile({ profile_id: 'p-s1', sensor_id: 'S-1', metadata: { by: 'alice' } });
      // The admin gives alice's claimed S-1 to bob: the conflict is settled, alice's profile goes.
      out.push(await answer(() => s.devices.register({ deviceId: 'S-1', ownerId: bob, modelId: 16, secret: Buffer.from('k'.repeat(32)), labId: 'LAB' })));
      out.push(await answer(() => s.devices.conflicts()));
      out.push(await answer(() => s.metadata.getProfile('p-s1')));
      out.push(await answer(() => s.devices.claimantOf('S-1')));
      out.push(await answer(() => s.devices.secretOf('S-1')));
      out.push(await answer(() => s.devices.secretOf('S-2')));
      out.push([...(await s.devices.ownSecrets()).keys()]);
      await s.devices.recordActivity({ deviceId: 'F-1', lastSeen: 1_700_000_000.5, frames: 3, records: 9, labId: 'L', modelId: 16 });
      await s.devices.recordActivity({ deviceId: 'F-1', lastSeen: 1_600_000_000, frames: 1, records: 2, labId: null, modelId: 17 });
      await s.devices.recordActivity({ deviceId: 'NEW', lastSeen: 5, frames: 1, records: 1, labId: null, modelId: null });
      const device = (d: { created_at: number } | undefined) => d && { ...d, created_at: typeof d.created_at };
      out.push(device(await s.devices.get('F-1')));
      out.push(device(await s.devices.get('NEW')));
      out.push(device(await s.devices.get('nothing')));
      out.push((await s.devices.page(undefined, '', 3)).map(device));
      out.push((await s.devices.page(undefined, 'NEW', 10)).map((d) => d.device_id));
      out.push((await s.devices.page(alice, '', 10)).map((d) => d.device_id));
      out.push(await answer(() => s.devices.ownedIds(alice)));
      out.push(await answer(() => s.devices.ownedIdsPage(alice, 'S-2', 10)));
      out.push(await answer(() => s.deviceEvents.add({ sourceId: '1-0:0', deviceId: 'F-1', payloadType: 3, ts: 1_700_000_000.9, body: { alarm: true } })));
      out.push(await answer(() => s.deviceEvents.add({ sourceId: '1-0:0', deviceId: 'F-1', payloadType: 3, ts: 1, body: {} })));
      out.push(await answer(() => s.deviceEvents.add({ sourceId: '1-0:1', deviceId: 'F-1', payloadType: 9, ts: 2, body: { x: [1] } })));
      out.push((await s.deviceEvents.list('F-1', { limit: 10 })).map((e) => ({ ...e, id: typeof e.id })));
      out.push((await s.deviceEvents.list('F-1', { limit: 1 })).length);
      // Profiles: claimed with the sensor, refused on another's sensor or profile, the admin's anywhere.
      out.push(await answer(() => s.storeProfileAs(bob, { profile_id: 'pb', sensor_id: 'B-NEW', metadata: { a: 1 } })));
      out.push(await answer(() => s.devices.ownerOf('B-NEW')));
      out.push(await answer(() => s.storeProfileAs(alice, { profile_id: 'pb', sensor_id: 'S-2', metadata: {} })));
      out.push(await answer(() => s.storeProfileAs(alice, { profile_id: 'pa', sensor_id: 'B-NEW', metadata: {} })));
      out.push(await answer(() => s.storeProfileAs(alice, { profile_id: 'pa', sensor_id: 'A-4', metadata: {} })));
      out.push(await answer(() => s.devices.ownerOf('A-4')));
      out.push(await answer(() => s.storeProfileAs(null, { profile_id: 'pb', sensor_id: 'ADMIN', metadata: { by: 'admin' }, timestamp: 1_700_000_000 })));
      out.push(await answer(() => s.metadata.getProfile('pb')));
      out.push(await answer(() => s.devices.ownerOf('ADMIN')));
      return normalised(out);
    };
    // The service claims inside a transaction, which a refused claim rolls back: so here too.
    const devices = Object.assign(Object.create(null) as typeof embedded.devices, embedded.devices, {
      claimAllForUser: (ids: Iterable<string>, user: string) => embedded.transaction(() => embedded.devices.claimAllForUser(ids, user)),
    });
    try {
      const expected = await script({ ...embedded, devices });
      expect(await script(pgStore)).toEqual(expected);
    } finally {
      embedded.close();
      temp.cleanup();
    }
  });

  it('gives a sensor claimed through both instances at once to one user, and holds the cap across instances', async () => {
    const [a, b] = await twoInstances();
    const alice = (await a.users.create({ username: 'alice', email: 'alice@example.com' })).id;
    const bob = (await a.users.create({ username: 'bob', email: 'bob@example.com' })).id;
    for (let i = 0; i < 3; i++) {
      const [x, y] = await Promise.all([a.devices.claimForUser(`X-${i}`, alice), b.devices.claimForUser(`X-${i}`, bob)]);
      expect([x, y].filter(Boolean)).toHaveLength(1);
    }
    const carol = (await a.users.create({ username: 'carol', email: 'carol@example.com' })).id;
    const claims = await Promise.all(Array.from({ length: 8 }, (_, i) => answer(() => (i % 2 ? a : b).devices.claimForUser(`C-${i}`, carol))));
    expect(claims.filter((c) => c === true)).toHaveLength(3);
    expect(claims.filter((c) => (c as { code?: string }).code === 'sensor_limit')).toHaveLength(5);
    expect(await b.devices.ownedCount(carol)).toBe(3);
  });

  it("purges a claimant's readings when the admin gives the sensor to another party", async () => {
    const [a] = await twoInstances();
    const alice = (await a.users.create({ username: 'alice', email: 'alice@example.com' })).id;
    expect(await a.devices.claimForUser('S-1', alice)).toBe(true);
    await sql.query("INSERT INTO series(series, sensor_id, metric, unit, source) VALUES (1, 'S-1', 'm', 'u', 'http'), (2, 'S-2', 'm', 'u', 'http')");
    await sql.query('INSERT INTO readings(series, ts, value) VALUES (1, now(), 1), (1, now(), 2), (2, now(), 3)');
    await a.devices.register({ deviceId: 'S-1', ownerId: alice });
    expect((await sql.query('SELECT count(*) AS n FROM readings')).rows[0].n).toBe(3);
    await a.devices.register({ deviceId: 'S-1', ownerId: null });
    // Registered by the admin first, so no longer a claim: nothing more goes.
    expect((await sql.query('SELECT count(*) AS n FROM readings')).rows[0].n).toBe(3);
    expect(await a.devices.claimForUser('S-3', alice)).toBe(true);
    await sql.query("INSERT INTO series(series, sensor_id, metric, unit, source) VALUES (3, 'S-3', 'm', 'u', 'http')");
    await sql.query('INSERT INTO readings(series, ts, value) VALUES (3, now(), 1), (3, now(), 2)');
    await a.devices.register({ deviceId: 'S-3', ownerId: null });
    expect((await sql.query('SELECT series, count(*) AS n FROM readings GROUP BY series ORDER BY series')).rows).toEqual([
      { series: 1, n: 2 },
      { series: 2, n: 1 },
    ]);
  });

  it('runs the periodic job on one instance at a time: expired sessions, old keys and fingerprints, processed queue rows', async () => {
    const [a] = await twoInstances();
    const now = 1_800_000_000;
    const user = (await a.users.create({ username: 'alice', email: 'alice@example.com' })).id;
    await sql.query(
      `INSERT INTO sessions(id, user_id, token_hash, created_at, expires_at, last_activity) VALUES
         ('old', $1, '\\x01', 0, $2, 0), ('live', $1, '\\x02', 0, $3, 0)`,
      [user, now - 1, now + 100],
    );
    await sql.query(`INSERT INTO idempotency_keys(scope, key, fingerprint, status, body, created_at) VALUES ('s', 'old', 'f', 200, '{}', $1), ('s', 'new', 'f', 200, '{}', $2)`, [now - 90_000, now - 10]);
    await sql.query('INSERT INTO replay_fingerprints(fp, ts, tag) VALUES (1, $1, 0), (2, $2, 0)', [now - 400, now - 100]);
    await sql.query(
      `INSERT INTO telemetry_buffer(source, sensor_id, ts, data, record_count, queued, created_at) VALUES
         ('http', 's', 0, '{}', 1, false, $1), ('http', 's', 0, '{}', 1, true, $1), ('http', 's', 0, '{}', 1, false, $2)`,
      [now - 90_000, now - 10],
    );
    const options = { now, replayWindowS: 310, idempotencyKeyTtlS: 86_400, bufferRetentionS: 86_400 };
    // Another instance holds the job: this one skips the round and deletes nothing.
    const other = await sql.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT pg_advisory_xact_lock($1)', [MAINTENANCE_LOCK]);
      expect(await runMaintenance(sql, options)).toBeUndefined();
      await other.query('COMMIT');
    } finally {
      other.release();
    }
    expect(await runMaintenance(sql, options)).toEqual({ sessions: 1, idempotencyKeys: 1, fingerprints: 1, queueRows: 1 });
    expect((await sql.query('SELECT id FROM sessions')).rows).toEqual([{ id: 'live' }]);
    expect((await sql.query('SELECT count(*) AS n FROM telemetry_buffer')).rows[0].n).toBe(2);
  });
});
