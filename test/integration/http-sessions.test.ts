import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSessions } from '../../src/operational/sessions.js';
import { createPgSessions } from '../../src/postgres/sessions.js';
import { createTestApp, SHARED, type TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

describe('HTTP sessions', () => {
  let t: TestApp;
  let alice: TestUser;
  beforeEach(async () => {
    t = await createTestApp();
    alice = await createUserWithSession(t, 'alice');
  });
  afterEach(async () => {
    await t.close();
  });

  const create = (payload: object, headers: Record<string, string> = t.admin) =>
    t.app.inject({ method: 'POST', url: '/api/ocean/sessions/create', headers, payload });
  /** Sessions of the test's store on a clock of the test's own (the service's sessions run on the wall clock). */
  const sessionsAt = (ttlS: number, now: () => number) =>
    SHARED ? createPgSessions(t.shared!.pool, { ttlS, now }) : createSessions(t.service.store.db, { ttlS, now });
  const validate = (opts: { url?: string; headers?: Record<string, string>; payload?: object }) =>
    t.app.inject({ method: 'POST', url: opts.url ?? '/api/ocean/sessions/validate', headers: opts.headers ?? {}, ...(opts.payload ? { payload: opts.payload } : {}) });

  it('creates a session (200, as the original) whose token validates', async () => {
    const res = await create({ user_id: alice.id, username: 'alice' });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toEqual({ session_id: expect.any(String), token: expect.stringMatching(/^[\w-]{43}$/), expires_at: expect.any(String) });
    const expiresIn = Date.parse(body.expires_at) - Date.now();
    expect(expiresIn).toBeGreaterThan(86_300_000);
    expect(expiresIn).toBeLessThanOrEqual(86_400_000);
  });

  it('refuses an unknown user_id (404) and a username that does not match (400) — no ghost sessions', async () => {
    const unknown = await create({ user_id: '999', username: 'ghost' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ error: 'not_found', statusCode: 404 });
    const mismatch = await create({ user_id: alice.id, username: 'ghost' });
    expect(mismatch.statusCode).toBe(400);
    expect(mismatch.json()).toMatchObject({ error: 'username_mismatch', statusCode: 400 });
  });

  it('lets only the admin create sessions', async () => {
    expect((await create({ user_id: alice.id, username: 'alice' }, {})).statusCode).toBe(401);
    expect((await create({ user_id: alice.id, username: 'alice' }, alice.auth)).statusCode).toBe(403);
  });

  it('validates a token sent as Bearer header, JSON {token} or ?token=', async () => {
    const expected = {
      valid: true,
      session: {
        id: expect.any(String),
        user_id: alice.id,
        created_at: expect.any(String),
        expires_at: expect.any(String),
        last_activity: expect.any(String),
        session_id: expect.any(String),
        username: 'alice',
      },
    };
    const viaHeader = await validate({ headers: alice.auth });
    expect(viaHeader.statusCode).toBe(200);
    expect(viaHeader.json()).toEqual(expected);
    const viaBody = await validate({ payload: { token: alice.token } });
    expect(viaBody.json()).toEqual(expected);
    const viaQuery = await validate({ url: `/api/ocean/sessions/validate?token=${alice.token}` });
    expect(viaQuery.json()).toEqual(expected);
    // An explicit token wins over the caller's own header (the admin checking a user's token).
    const adminChecks = await validate({ headers: t.admin, payload: { token: alice.token } });
    expect(adminChecks.json()).toEqual(expected);
  });

  it('answers 401 in the JSON error shape for a missing, unknown or malformed token', async () => {
    for (const opts of [{}, { payload: { token: 'x'.repeat(43) } }, { headers: { authorization: 'Bearer nope' } }, { url: '/api/ocean/sessions/validate?token=' }]) {
      const res = await validate(opts);
      expectErrorShape(res, 401, 'unauthorized');
    }
  });

  it('does not validate an expired session, nor use it for anything', async () => {
    // A session that expired an hour ago, written through the same store with a clock in the past.
    const past = sessionsAt(60, () => Math.floor(Date.now() / 1000) - 3600);
    const expired = await past.create(alice.id, 'alice');
    const res = await validate({ payload: { token: expired.token } });
    expect(res.statusCode).toBe(401);
    const use = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${alice.id}`, headers: { authorization: `Bearer ${expired.token}` } });
    expect(use.statusCode).toBe(401);
  });

  it('stops validating a session at its expiry second (short TTL)', async () => {
    let clock = Math.floor(Date.now() / 1000);
    const sessions = sessionsAt(60, () => clock);
    const s = await sessions.create(alice.id, 'alice');
    expect((await validate({ payload: { token: s.token } })).statusCode).toBe(200);
    clock += 60;
    expect(await sessions.verify(s.token)).toBeNull();
  });

  it('moves last_activity forward on validation, writing at most once a minute, and never echoes the token', async () => {
    let clock = Math.floor(Date.now() / 1000) - 600;
    const sessions = sessionsAt(3600, () => clock);
    const s = await sessions.create(alice.id, 'alice');
    const stored = async () =>
      SHARED
        ? (await t.shared!.pool.query('SELECT last_activity FROM sessions WHERE id = $1', [s.session_id])).rows[0].last_activity
        : t.service.store.db.prepare('SELECT last_activity FROM sessions WHERE id = ?').pluck().get(s.session_id);
    expect(await stored()).toBe(clock);
    clock += 59;
    expect((await sessions.verify(s.token))!.last_activity).toBe(clock - 59); // within the minute: no write
    expect(await stored()).toBe(clock - 59);
    clock += 1;
    expect((await sessions.verify(s.token))!.last_activity).toBe(clock);
    expect(await stored()).toBe(clock);
    // Through the API, with the real clock (ten minutes on): the answer shows the new time.
    const res = await validate({ payload: { token: s.token } });
    expect(res.statusCode).toBe(200);
    expect(Date.parse(res.json().session.last_activity) / 1000).toBeGreaterThanOrEqual(clock + 500);
    expect(res.body).not.toContain(s.token);
  });

  it('revokes the calling session, after which its token is refused everywhere', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/ocean/sessions/revoke', headers: alice.auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ revoked: true });
    expect((await validate({ headers: alice.auth })).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'GET', url: `/api/ocean/users/${alice.id}`, headers: alice.auth })).statusCode).toBe(401);
  });

  it("lets a user revoke its own other sessions but not another user's (403); the admin revokes any", async () => {
    const second = (await create({ user_id: alice.id, username: 'alice' })).json();
    const bob = await createUserWithSession(t, 'bob');
    const bobSession = (await validate({ headers: bob.auth })).json().session.id;
    const revoke = (payload: object, headers: Record<string, string>) =>
      t.app.inject({ method: 'POST', url: '/api/ocean/sessions/revoke', headers, payload });

    expect((await revoke({ session_id: bobSession }, alice.auth)).statusCode).toBe(403);
    expect((await validate({ headers: bob.auth })).statusCode).toBe(200);
    expect((await revoke({ session_id: second.session_id }, alice.auth)).statusCode).toBe(200);
    expect((await validate({ payload: { token: second.token } })).statusCode).toBe(401);
    expect((await validate({ headers: alice.auth })).statusCode).toBe(200);
    expect((await revoke({ token: bob.token }, t.admin)).statusCode).toBe(200);
    expect((await validate({ headers: bob.auth })).statusCode).toBe(401);
    expect((await revoke({ session_id: 'nope' }, t.admin)).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'POST', url: '/api/ocean/sessions/revoke', headers: t.admin })).statusCode).toBe(400);
    expect((await t.app.inject({ method: 'POST', url: '/api/ocean/sessions/revoke' })).statusCode).toBe(401);
  });

  it('never writes a session token to the database files', async () => {
    // Shared mode: PostgreSQL's WAL is the server's, shared by the run's databases; only what this test wrote is read.
    const walStart = SHARED ? (await t.shared!.pool.query('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')).rows[0].f : '';
    const tokens = [alice.token];
    for (let i = 0; i < 10; i++) tokens.push((await create({ user_id: alice.id, username: 'alice' })).json().token);
    for (const token of tokens) expect((await validate({ payload: { token } })).statusCode).toBe(200);
    const expectNoToken = (paths: string[]) => {
      for (const path of paths) {
        let bytes: Buffer;
        try {
          bytes = readFileSync(path);
        } catch (err) {
          // Removed meanwhile (a SQLite WAL after its checkpoint, a recycled WAL segment): it holds nothing any more.
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        for (const token of tokens) {
          expect(bytes.includes(Buffer.from(token))).toBe(false);
          expect(bytes.includes(Buffer.from(token, 'base64url'))).toBe(false);
        }
      }
    };
    const scan = async () => {
      if (!SHARED) {
        const files = readdirSync(t.dataDir).filter((f) => f.startsWith('ocean.db'));
        expect(files).toContain('ocean.db');
        return expectNoToken(files.map((f) => join(t.dataDir, f)));
      }
      // This database's directory (its tables and indexes) and the WAL segments written since the test began.
      const { dir, db, sessions } = (
        await t.shared!.pool.query(
          "SELECT current_setting('data_directory') AS dir, (SELECT oid FROM pg_database WHERE datname = current_database()) AS db, pg_relation_filepath('sessions') AS sessions",
        )
      ).rows[0];
      const base = readdirSync(join(dir, 'base', String(db))).map((f) => join(dir, 'base', String(db), f));
      expect(base).toContain(join(dir, sessions));
      const wal = readdirSync(join(dir, 'pg_wal')).filter((f) => /^[0-9A-F]{24}$/.test(f) && f >= walStart);
      expect(wal.length).toBeGreaterThan(0);
      expectNoToken([...base, ...wal.map((f) => join(dir, 'pg_wal', f))]);
    };
    await scan();
    if (SHARED) await t.shared!.pool.query('CHECKPOINT');
    else t.service.store.db.pragma('wal_checkpoint(TRUNCATE)');
    await scan();
  });
});
