import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { runMoveIn } from '../../src/cli/move-in.js';
import { runMoveOut } from '../../src/cli/move-out.js';
import { loadNanogridataConfig } from '../../src/config.js';
import { DecodePool } from '../../src/ingest/decode-pool.js';
import { createPgAnalytics } from '../../src/postgres/analytics.js';
import { PgIngest } from '../../src/postgres/ingest.js';
import { openPgStore } from '../../src/postgres/store.js';
import { createTestApp } from '../helpers/app.js';
import { pressureFrames, pressureSecret, waitFor } from '../helpers/frames.js';
import { rounded } from '../helpers/measurements.js';
import { runTsx } from '../helpers/run-cli.js';
import { skipWithoutPostgres, usePostgres } from '../helpers/postgres-server.js';

const { secret, env } = pressureSecret();
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const io = () => {
  const text = { out: '', err: '' };
  return { text, io: { out: (s: string) => (text.out += s), err: (s: string) => (text.err += s) } };
};

describe.skipIf(skipWithoutPostgres())('moving an embedded data dir into PostgreSQL', () => {
  const pg = usePostgres();
  const open: Array<{ close(): Promise<unknown> }> = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((o) => o.close()));
  });

  it('copies everything a user relies on, answers the same afterwards, and leaves the data dir as it was', async () => {
    // An embedded service with a bit of everything.
    const t = await createTestApp({ env });
    const s = t.service.store;
    const alice = s.users.create({ username: 'alice', email: 'alice@example.com' });
    const bob = s.users.create({ username: 'bob', email: 'Bob@Example.com' });
    const token = s.sessions.create(alice.id, 'alice').token;
    const revoked = s.sessions.create(bob.id, 'bob');
    s.sessions.revoke({ sessionId: revoked.session_id });
    s.billing.addCredits(alice.id, 100, 'top-up');
    s.billing.addCreditsOnce({ scope: 'admin:add-credits', key: 'k1' }, alice.id, -30, 'use');
    s.metadata.set('site', { name: 'north' });
    s.storeProfileAs(alice.id, { profile_id: 'p1', sensor_id: 'A-1', metadata: { floor: 2 } });
    s.devices.register({ deviceId: 'OWN-1', ownerId: bob.id, secret: Buffer.alloc(32, 5), modelId: 16 });
    const stored = t.service.pipeline.ingestReadings(
      [1, 2, 3].map((v) => ({ sensor_id: 'A-1', timestamp: 1_767_225_600 + v, data: `{"t":${v}}`, values: [['t', v]] as Array<[string, number]> })),
      { source: 'http', owner: alice.id },
    );
    s.buffer.markProcessed([(stored[0] as { bufferId: number }).bufferId]);
    const { frames } = pressureFrames({ count: 300, devices: 6, secret });
    await t.service.pipeline.ingest(frames.map((bytes) => ({ kind: 'frame', bytes })), { source: 'http_frames' });
    await t.service.committer.whenIdle();
    // Device activity is counted a moment after the commit (side effects): wait for it.
    await waitFor(() => [0, 1, 2, 3, 4, 5].every((d) => (s.devices.get(`P-${d}`)?.frames ?? 0) > 0), { what: 'device activity' });
    const embedded = {
      users: s.users.list({ limit: 10 }),
      ledger: s.billing.ledger(alice.id, { limit: 10 }),
      billing: [s.billing.get(alice.id), s.billing.get(bob.id)],
      session: s.sessions.verify(token),
      revoked: s.sessions.verify(revoked.token),
      site: s.metadata.get('site'),
      profile: s.metadata.getProfile('p1'),
      devices: s.devices.page(undefined, '', 100),
      secrets: [...s.devices.ownSecrets()],
      queue: s.buffer.queued(10),
      sensors: await t.service.analytics.sensors(),
      stats: await t.service.analytics.sensorStats('P-3'),
      series: await t.service.analytics.timeseries('A-1', { interval: '1h' }),
    };
    await t.close({ keepDir: true });
    open.push({ close: () => import('node:fs/promises').then((fs) => fs.rm(t.dataDir, { recursive: true, force: true })) });
    const files = ['ocean.db', 'analytics.duckdb'].map((f) => join(t.dataDir, f));
    const before = files.map(sha);

    const [pool] = await pg.database();
    const url = `postgres://postgres@127.0.0.1:${pg.server().port}/${(await pool!.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db}`;
    const run = io();
    expect(await runMoveIn([t.dataDir], { DATABASE_URL: url }, run.io), run.text.err).toBe(0);
    expect(JSON.parse(run.text.out)).toMatchObject({ counts: { users: 2, sessions: 2, billing_ledger: 2, readings: embedded.sensors.sensors.reduce((n, x) => n + x.count, 0) } });
    expect(files.map(sha)).toEqual(before);

    const p = openPgStore(pool!, { sessionTtlS: 86400 });
    const analytics = createPgAnalytics(pool!, { maxExports: 1, timeoutMs: 10_000 });
    const shared = {
      users: await p.users.list({ limit: 10 }),
      ledger: await p.billing.ledger(alice.id, { limit: 10 }),
      billing: [await p.billing.get(alice.id), await p.billing.get(bob.id)],
      session: await p.sessions.verify(token),
      revoked: await p.sessions.verify(revoked.token),
      site: await p.metadata.get('site'),
      profile: await p.metadata.getProfile('p1'),
      devices: await p.devices.page(undefined, '', 100),
      secrets: [...(await p.devices.ownSecrets())],
      queue: await p.buffer.queued(10),
      sensors: await analytics.sensors(),
      stats: await analytics.sensorStats('P-3'),
      series: await analytics.timeseries('A-1', { interval: '1h' }),
    };
    expect(rounded(shared)).toEqual(rounded(embedded));
    // The same Idempotency-Key answers as before the move; new ledger rows continue above the old ids.
    expect(await p.billing.addCreditsOnce({ scope: 'admin:add-credits', key: 'k1' }, alice.id, -30, 'use')).toMatchObject({ replayed: true });
    expect((await p.billing.addCredits(alice.id, 1)).ledger_id).toBe(3);
    // The replay window moved too: a frame accepted before the move is a replay after it.
    const decoder = new DecodePool(loadNanogridataConfig(env), pino({ level: 'silent' }), 1);
    open.push(decoder);
    const ingest = new PgIngest({ pool: pool!, decoder });
    expect(await ingest.commit(await ingest.prepare([{ kind: 'frame', bytes: frames[7]! }]), { source: 'http_frames' })).toEqual([{ ok: false, reason: 'replay' }]);

    // And back out into a new data dir: the embedded service answers as it did before the move.
    const back = join(t.dataDir, '..', `${t.dataDir.split('/').pop()}-back`);
    open.push({ close: () => import('node:fs/promises').then((fs) => fs.rm(back, { recursive: true, force: true })) });
    const out = io();
    expect(await runMoveOut([back], { DATABASE_URL: url }, out.io), out.text.err).toBe(0);
    const u = await createTestApp({ env, dataDir: back });
    open.push({ close: () => u.close({ keepDir: true }) });
    const r = u.service.store;
    const returned = {
      users: r.users.list({ limit: 10 }),
      ledger: r.billing.ledger(alice.id, { limit: 10 }).slice(1),
      billing: [r.billing.get(alice.id), r.billing.get(bob.id)],
      session: r.sessions.verify(token),
      revoked: r.sessions.verify(revoked.token),
      site: r.metadata.get('site'),
      profile: r.metadata.getProfile('p1'),
      devices: r.devices.page(undefined, '', 100),
      secrets: [...r.devices.ownSecrets()],
      queue: r.buffer.queued(10),
      sensors: await u.service.analytics.sensors(),
      stats: await u.service.analytics.sensorStats('P-3'),
      series: await u.service.analytics.timeseries('A-1', { interval: '1h' }),
    };
    // The one credit added in PostgreSQL came back with the rest.
    expect(rounded({ ...returned, billing: returned.billing.map((b) => b && { ...b, credits: b.credits - (b.user_id === alice.id ? 1 : 0), updated_at: 0 }) })).toEqual(
      rounded({ ...embedded, billing: embedded.billing.map((b) => b && { ...b, updated_at: 0 }) }),
    );
    // New readings take new queue ids and reach analytics; the moved ones are not carried again.
    const next = u.service.pipeline.ingestReadings([{ sensor_id: 'A-1', timestamp: 1_767_225_700, data: '{"t":9}', values: [['t', 9]] }], { source: 'http', owner: alice.id });
    expect((next[0] as { bufferId: number }).bufferId).toBeGreaterThan(Math.max(...embedded.queue.map((q) => q.id)));
    await u.service.committer.whenIdle();
    expect((await u.service.analytics.sensorStats('A-1')).count).toBe(embedded.series.data.reduce((n, b) => n + b.count, 0) + 1);
    const outAgain = io();
    expect(await runMoveOut([back], { DATABASE_URL: url }, outAgain.io)).toBe(1);
    expect(outAgain.text.err).toMatch(/not empty/);

    // Into a database that holds data: refused, nothing changed.
    const again = io();
    expect(await runMoveIn([t.dataDir], { DATABASE_URL: url }, again.io)).toBe(1);
    expect(again.text.err).toMatch(/already holds/);
    expect((await pool!.query('SELECT count(*) AS n FROM users')).rows[0].n).toBe(2);
  });

  it('refuses a data dir the service still holds, and a missing DATABASE_URL', async () => {
    const t = await createTestApp({ env });
    open.push({ close: () => t.close() });
    await t.service.analytics.sensors();
    const [pool] = await pg.database();
    const url = `postgres://postgres@127.0.0.1:${pg.server().port}/${(await pool!.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db}`;
    // Another process holds the files (DuckDB's lock is per process): the command, run as one, refuses.
    const run = await runTsx('src/cli/move-in.ts', [t.dataDir], { env: { DATABASE_URL: url }, timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/stop the service first/);
    expect(run.stderr).not.toContain(url);
    expect((await pool!.query('SELECT count(*) AS n FROM users')).rows[0].n).toBe(0);
    const noUrl = io();
    expect(await runMoveIn([t.dataDir], {}, noUrl.io)).toBe(2);
    expect(noUrl.text.err).toMatch(/DATABASE_URL is not set/);
  });
});
