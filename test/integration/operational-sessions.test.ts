import { readFileSync, existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSessions } from '../../src/operational/sessions.js';
import { openTempStore, type TempStore } from '../helpers/temp-store.js';

describe('operational sessions', () => {
  let t: TempStore;
  let userId: string;
  beforeEach(() => {
    t = openTempStore({ sessionTtlS: 3600 });
    userId = t.store.users.create({ username: 'alice', email: 'alice@example.com' }).id;
  });
  afterEach(() => t.cleanup());

  it('creates a session whose 32-byte base64url token verifies to the user', () => {
    const s = t.store.sessions.create(userId, 'alice');
    expect(s.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(s.token, 'base64url')).toHaveLength(32);
    expect(new Date(s.expires_at).toISOString()).toBe(s.expires_at);
    const info = t.store.sessions.verify(s.token);
    expect(info).toMatchObject({ session_id: s.session_id, user_id: userId, username: 'alice' });
    expect(info!.expires_at - info!.created_at).toBe(3600);
    expect(Date.parse(s.expires_at) / 1000).toBe(info!.expires_at);
  });

  it('refuses an unknown user id with 404', () => {
    expect(() => t.store.sessions.create(userId + 99, 'ghost')).toThrow(expect.objectContaining({ statusCode: 404 }));
  });

  it('refuses a username that does not match the user with 400 username_mismatch', () => {
    expect(() => t.store.sessions.create(userId, 'ghost')).toThrow(
      expect.objectContaining({ statusCode: 400, code: 'username_mismatch' }),
    );
  });

  it('does not verify unknown or malformed tokens', () => {
    t.store.sessions.create(userId, 'alice');
    expect(t.store.sessions.verify('')).toBeNull();
    expect(t.store.sessions.verify('x'.repeat(43))).toBeNull();
    expect(t.store.sessions.verify('not-a-token')).toBeNull();
  });

  it('stops verifying a session the second it expires (integer epoch comparison)', () => {
    let clock = 1_800_000_000;
    const sessions = createSessions(t.store.db, { ttlS: 60, now: () => clock });
    const s = sessions.create(userId, 'alice');
    clock += 59;
    expect(sessions.verify(s.token)).not.toBeNull();
    clock += 1;
    expect(sessions.verify(s.token)).toBeNull();
    clock += 86400;
    expect(sessions.verify(s.token)).toBeNull();
  });

  it('does not verify a session that expired earlier the same day (the original kept it valid)', () => {
    // Created 2 hours ago with a 1-hour lifetime, checked with the real clock.
    const past = createSessions(t.store.db, { ttlS: 3600, now: () => Math.floor(Date.now() / 1000) - 7200 });
    const s = past.create(userId, 'alice');
    expect(t.store.sessions.verify(s.token)).toBeNull();
  });

  it('revokes by session id and by token, after which the token no longer verifies', () => {
    const a = t.store.sessions.create(userId, 'alice');
    const b = t.store.sessions.create(userId, 'alice');
    expect(t.store.sessions.revoke({ sessionId: a.session_id })).toBe(true);
    expect(t.store.sessions.revoke({ sessionId: a.session_id })).toBe(false);
    expect(t.store.sessions.verify(a.token)).toBeNull();
    expect(t.store.sessions.verify(b.token)).not.toBeNull();
    expect(t.store.sessions.revoke({ token: b.token })).toBe(true);
    expect(t.store.sessions.verify(b.token)).toBeNull();
    expect(t.store.sessions.find({ sessionId: b.session_id })).toMatchObject({ user_id: userId, revoked: true });
    expect(t.store.sessions.revoke({ token: 'unknown' })).toBe(false);
  });

  it('purges expired sessions only', () => {
    const past = createSessions(t.store.db, { ttlS: 60, now: () => Math.floor(Date.now() / 1000) - 7200 });
    past.create(userId, 'alice');
    const live = t.store.sessions.create(userId, 'alice');
    expect(t.store.sessions.purgeExpired()).toBe(1);
    expect(t.store.sessions.verify(live.token)).not.toBeNull();
  });

  it('never writes the token to the database files, only its hash', () => {
    const tokens = Array.from({ length: 20 }, () => t.store.sessions.create(userId, 'alice').token);
    const scan = () => {
      const files = [t.path, `${t.path}-wal`].filter((f) => existsSync(f)).map((f) => readFileSync(f));
      for (const token of tokens) {
        for (const bytes of files) {
          expect(bytes.includes(Buffer.from(token))).toBe(false);
          expect(bytes.includes(Buffer.from(token, 'base64url'))).toBe(false);
        }
      }
      return files.length;
    };
    expect(scan()).toBeGreaterThan(0); // while the rows are still in the WAL
    t.store.db.pragma('wal_checkpoint(TRUNCATE)');
    scan(); // and after they moved to the main file
  });
});
