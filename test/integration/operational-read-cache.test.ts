import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReadCache } from '../../src/operational/read-cache.js';
import { createSessions } from '../../src/operational/sessions.js';
import { openTempStore, type TempStore } from '../helpers/temp-store.js';

describe('cached sessions and users (real SQLite)', () => {
  let t: TempStore;
  let userId: string;
  beforeEach(() => {
    t = openTempStore({ sessionTtlS: 3600 });
    userId = t.store.users.create({ username: 'alice', email: 'alice@example.com' }).id;
  });
  afterEach(() => t.cleanup());

  it('answers a repeated verification and user lookup without reading SQLite again', () => {
    const s = t.store.sessions.create(userId, 'alice');
    expect(t.store.sessions.verify(s.token)).not.toBeNull();
    expect(t.store.users.get(userId)).toMatchObject({ username: 'alice' });
    // Change the rows behind the store's back: a cached answer does not see it (within the max age).
    t.store.db.prepare("UPDATE users SET email = 'sneaky@example.com' WHERE id = ?").run(userId);
    expect(t.store.users.get(userId)!.email).toBe('alice@example.com');
  });

  it('refuses a revoked session at once, by id and by token', () => {
    const a = t.store.sessions.create(userId, 'alice');
    const b = t.store.sessions.create(userId, 'alice');
    expect(t.store.sessions.verify(a.token)).not.toBeNull();
    expect(t.store.sessions.verify(b.token)).not.toBeNull();
    expect(t.store.sessions.revoke({ sessionId: a.session_id })).toBe(true);
    expect(t.store.sessions.verify(a.token)).toBeNull();
    expect(t.store.sessions.revoke({ token: b.token })).toBe(true);
    expect(t.store.sessions.verify(b.token)).toBeNull();
  });

  it('refuses a cached session the second it expires', () => {
    let clock = 1_800_000_000;
    const sessions = createSessions(t.store.db, { ttlS: 60, now: () => clock });
    const s = sessions.create(userId, 'alice');
    expect(sessions.verify(s.token)).not.toBeNull(); // now cached
    clock += 59;
    expect(sessions.verify(s.token)).not.toBeNull();
    clock += 1;
    expect(sessions.verify(s.token)).toBeNull();
  });

  it("drops a deleted user and its sessions at once", () => {
    const s = t.store.sessions.create(userId, 'alice');
    expect(t.store.sessions.verify(s.token)).not.toBeNull();
    expect(t.store.users.get(userId)).toBeDefined();
    expect(t.store.users.remove(userId)).toBe(true);
    expect(t.store.users.get(userId)).toBeUndefined();
    expect(t.store.sessions.verify(s.token)).toBeNull();
    expect(t.store.users.remove(userId)).toBe(false);
  });

  it("shows a user's update at once, in the user and in its sessions", () => {
    const s = t.store.sessions.create(userId, 'alice');
    expect(t.store.sessions.verify(s.token)!.username).toBe('alice');
    expect(t.store.users.get(userId)!.username).toBe('alice');
    expect(t.store.users.update(userId, { username: 'alicia' })).toMatchObject({ username: 'alicia', email: 'alice@example.com' });
    expect(t.store.users.get(userId)!.username).toBe('alicia');
    expect(t.store.sessions.verify(s.token)!.username).toBe('alicia');
    expect(t.store.users.update('no-such-user', { email: 'x@example.com' })).toBeUndefined();
  });

  it('answers 409 for an update to a taken name, leaving the cache right', () => {
    const bob = t.store.users.create({ username: 'bob', email: 'bob@example.com' });
    expect(t.store.users.get(bob.id)!.username).toBe('bob');
    expect(() => t.store.users.update(bob.id, { username: 'alice' })).toThrow(expect.objectContaining({ statusCode: 409 }));
    expect(t.store.users.get(bob.id)!.username).toBe('bob');
  });

  it('moves last_activity forward on a cached session, writing at most once a minute', () => {
    let clock = Math.floor(Date.now() / 1000);
    const sessions = createSessions(t.store.db, { ttlS: 3600, now: () => clock });
    const s = sessions.create(userId, 'alice');
    const stored = () => t.store.db.prepare('SELECT last_activity FROM sessions WHERE id = ?').pluck().get(s.session_id);
    sessions.verify(s.token);
    clock += 61;
    expect(sessions.verify(s.token)!.last_activity).toBe(clock);
    expect(stored()).toBe(clock);
  });

  it('purging drops expired cached sessions and keeps live ones', () => {
    let clock = Math.floor(Date.now() / 1000);
    const sessions = createSessions(t.store.db, { ttlS: 60, now: () => clock });
    const s = sessions.create(userId, 'alice');
    sessions.verify(s.token);
    clock += 120;
    expect(sessions.purgeExpired()).toBe(1);
    clock -= 120; // even with the clock turned back, the purged row is gone
    expect(sessions.verify(s.token)).toBeNull();
  });
});

describe('ReadCache', () => {
  it('keeps at most max entries, dropping the least recently used', () => {
    const c = new ReadCache<string, number>(2, 60_000);
    c.set('a', 1);
    c.set('b', 2);
    expect(c.get('a')).toBe(1); // a is now the most recent
    c.set('c', 3);
    expect(c.size).toBe(2);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    expect(c.get('c')).toBe(3);
  });

  it('forgets an entry older than its max age', () => {
    let ms = 0;
    const c = new ReadCache<string, number>(10, 5000, () => ms);
    c.set('a', 1);
    ms = 4999;
    expect(c.get('a')).toBe(1);
    ms = 5000;
    expect(c.get('a')).toBeUndefined();
  });
});
