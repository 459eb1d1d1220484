import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError } from '../../src/errors.js';
import { openTempStore, type TempStore } from '../helpers/temp-store.js';

describe('operational users', () => {
  let t: TempStore;
  beforeEach(() => {
    t = openTempStore();
  });
  afterEach(() => t.cleanup());

  it('creates a user with an ISO creation time and reads it back', () => {
    const user = t.store.users.create({ username: 'alice', email: 'alice@example.com' });
    expect(user).toMatchObject({ username: 'alice', email: 'alice@example.com' });
    expect(user.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(user).toMatchObject({ status: 'active', updated_at: user.created_at });
    expect(new Date(user.created_at).toISOString()).toBe(user.created_at);
    expect(t.store.users.get(user.id)).toEqual(user);
    expect(t.store.users.get(`${user.id}x`)).toBeUndefined();
  });

  it('creates the billing row together with the user', () => {
    const user = t.store.users.create({ username: 'alice', email: 'alice@example.com' });
    expect(t.store.billing.get(user.id)).toMatchObject({ user_id: user.id, plan: 'free', credits: 0, usage: 0 });
  });

  it('refuses a taken username with a 409 that names the username', () => {
    t.store.users.create({ username: 'alice', email: 'alice@example.com' });
    let err: unknown;
    try {
      t.store.users.create({ username: 'alice', email: 'other@example.com' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConflictError);
    expect(err).toMatchObject({ statusCode: 409, code: 'conflict' });
    expect((err as Error).message).toMatch(/username/);
  });

  it('refuses a taken email, whatever its case, with a 409 that names the email', () => {
    t.store.users.create({ username: 'alice', email: 'alice@example.com' });
    expect(() => t.store.users.create({ username: 'bob', email: 'ALICE@example.com' })).toThrow(/email/);
  });

  it('leaves the database fully writable after a duplicate, with no half-created user', () => {
    const alice = t.store.users.create({ username: 'alice', email: 'alice@example.com' });
    for (let i = 0; i < 5; i++) {
      expect(() => t.store.users.create({ username: 'alice', email: `a${i}@example.com` })).toThrow(ConflictError);
      expect(() => t.store.users.create({ username: `x${i}`, email: 'alice@example.com' })).toThrow(ConflictError);
    }
    expect(t.store.db.inTransaction).toBe(false);
    const bob = t.store.users.create({ username: 'bob', email: 'bob@example.com' });
    expect(bob.id).not.toBe(alice.id);
    expect(t.store.billing.addCredits(bob.id, 5).credits).toBe(5);
    expect(t.store.users.list({ limit: 10 }).map((u) => u.username)).toEqual(['alice', 'bob']);
    // Another connection to the same file can take the write lock: nothing holds it.
    const other = new Database(t.path, { timeout: 100 });
    try {
      expect(() => other.exec('BEGIN IMMEDIATE; ROLLBACK')).not.toThrow();
    } finally {
      other.close();
    }
  });

  it('lists users in creation order with keyset pagination', () => {
    const ids = ['a1', 'b2', 'c3'].map((u) => t.store.users.create({ username: u, email: `${u}@x.io` }).id);
    expect(t.store.users.list({ limit: 2 }).map((u) => u.id)).toEqual(ids.slice(0, 2));
    expect(t.store.users.list({ limit: 2, after: ids[1] }).map((u) => u.id)).toEqual([ids[2]]);
  });
});
