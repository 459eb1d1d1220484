import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openOperationalStore } from '../../src/operational/store.js';
import { openTempStore, type TempStore } from '../helpers/temp-store.js';

describe('operational store', () => {
  let t: TempStore;
  beforeEach(() => {
    t = openTempStore();
  });
  afterEach(() => t.cleanup());

  it('runs on its one connection with WAL, synchronous=NORMAL and foreign keys', () => {
    expect(t.store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(t.store.db.pragma('synchronous', { simple: true })).toBe(1);
    expect(t.store.db.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  it('keeps users, sessions, credits, metadata and profiles across a close and reopen', () => {
    const user = t.store.users.create({ username: 'alice', email: 'alice@example.com' });
    const session = t.store.sessions.create(user.id, 'alice');
    t.store.billing.addCredits(user.id, 42);
    t.store.metadata.set('k', { v: 1 });
    t.store.metadata.storeProfile({ profile_id: 'p', sensor_id: 's', metadata: { a: 1 } });
    t.store.close();

    const reopened = openOperationalStore(t.path, { sessionTtlS: 60 });
    try {
      expect(reopened.users.get(user.id)).toEqual(user);
      expect(reopened.sessions.verify(session.token)).toMatchObject({ user_id: user.id });
      expect(reopened.billing.get(user.id)!.credits).toBe(42);
      expect(reopened.billing.ledger(user.id, { limit: 5 })).toHaveLength(1);
      expect(reopened.metadata.get('k')!.value).toEqual({ v: 1 });
      expect(reopened.metadata.getProfile('p')!.metadata).toEqual({ a: 1 });
    } finally {
      reopened.close();
    }
  });
});
