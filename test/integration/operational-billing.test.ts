import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runTsx } from '../helpers/run-cli.js';
import { openTempStore, type TempStore } from '../helpers/temp-store.js';

describe('operational billing', () => {
  let t: TempStore;
  let userId: string;
  beforeEach(() => {
    t = openTempStore();
    userId = t.store.users.create({ username: 'alice', email: 'alice@example.com' }).id;
  });
  afterEach(() => t.cleanup());

  it('adds and debits credits, appending one ledger row with the balance after each change', () => {
    expect(t.store.billing.addCredits(userId, 100, 'top-up')).toMatchObject({ user_id: userId, delta: 100, credits: 100 });
    expect(t.store.billing.addCredits(userId, -30).credits).toBe(70);
    expect(t.store.billing.get(userId)!.credits).toBe(70);
    const ledger = t.store.billing.ledger(userId, { limit: 10 });
    expect(ledger.map((e) => [e.delta, e.balance_after, e.reason])).toEqual([
      [-30, 70, null],
      [100, 100, 'top-up'],
    ]);
  });

  it('scopes an Idempotency-Key to its caller and route: the same key elsewhere is another key', () => {
    const admin = { scope: 'admin:add-credits', key: 'k1' };
    expect(t.store.billing.addCreditsOnce(admin, userId, 5)).toMatchObject({ replayed: false, change: { credits: 5 } });
    expect(t.store.billing.addCreditsOnce(admin, userId, 5)).toMatchObject({ replayed: true, change: { credits: 5 } });
    expect(t.store.billing.addCreditsOnce({ scope: `user:${userId}:add-credits`, key: 'k1' }, userId, 5)).toMatchObject({
      replayed: false,
      change: { credits: 10 },
    });
    expect(t.store.billing.ledger(userId, { limit: 10 })).toHaveLength(2);
  });

  it('keeps credits exact when several processes change them at once (IMMEDIATE transactions, busy timeout)', async () => {
    const runs = await Promise.all(
      [0, 1, 2].map(() => runTsx('test/helpers/credit-worker.ts', [t.path, String(userId), '200'], { timeoutMs: 60_000 })),
    );
    for (const run of runs) expect(run, run.stderr).toMatchObject({ code: 0 });
    expect(t.store.billing.get(userId)!.credits).toBe(600);
    const ledger = t.store.billing.ledger(userId, { limit: 1000 });
    expect(ledger).toHaveLength(600);
    expect(ledger.map((e) => e.balance_after).sort((a, b) => a - b)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
  });

  it('refuses a debit that would make the balance negative and changes nothing', () => {
    t.store.billing.addCredits(userId, 10);
    const before = { account: t.store.billing.get(userId), ledger: t.store.billing.ledger(userId, { limit: 100 }) };
    expect(() => t.store.billing.addCredits(userId, -11)).toThrow(
      expect.objectContaining({ statusCode: 409, code: 'insufficient_credits' }),
    );
    expect(t.store.billing.get(userId)).toEqual(before.account);
    expect(t.store.billing.ledger(userId, { limit: 100 })).toEqual(before.ledger);
    expect(t.store.db.inTransaction).toBe(false);
    // Exactly down to zero is allowed.
    expect(t.store.billing.addCredits(userId, -10).credits).toBe(0);
  });

  it('refuses an amount of 0 or a non-integer with 400', () => {
    expect(() => t.store.billing.addCredits(userId, 0)).toThrow(expect.objectContaining({ statusCode: 400 }));
    expect(() => t.store.billing.addCredits(userId, 1.5)).toThrow(expect.objectContaining({ statusCode: 400 }));
    expect(t.store.billing.ledger(userId, { limit: 10 })).toEqual([]);
  });

  it('answers 404 for a user without an account', () => {
    expect(() => t.store.billing.addCredits(userId + 1, 5)).toThrow(expect.objectContaining({ statusCode: 404 }));
    expect(t.store.billing.get(userId + 1)).toBeUndefined();
  });

  it('refuses a balance past 2^53 instead of losing precision', () => {
    t.store.billing.addCredits(userId, Number.MAX_SAFE_INTEGER);
    expect(() => t.store.billing.addCredits(userId, 1)).toThrow(expect.objectContaining({ statusCode: 409, code: 'credits_overflow' }));
    expect(t.store.billing.get(userId)!.credits).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('keeps the ledger append-only', () => {
    t.store.billing.addCredits(userId, 1);
    expect(() => t.store.db.prepare('UPDATE billing_ledger SET delta = 99').run()).toThrow(/append-only/);
    expect(() => t.store.db.prepare('DELETE FROM billing_ledger').run()).toThrow(/append-only/);
  });

  it('pages the ledger newest first with `before`', () => {
    for (let i = 1; i <= 5; i++) t.store.billing.addCredits(userId, i);
    const first = t.store.billing.ledger(userId, { limit: 2 });
    expect(first.map((e) => e.delta)).toEqual([5, 4]);
    const next = t.store.billing.ledger(userId, { limit: 10, before: first[1]!.id });
    expect(next.map((e) => e.delta)).toEqual([3, 2, 1]);
  });

  it('counts usage inside the caller transaction and rolls back with it', () => {
    t.store.billing.addUsage(userId, 7);
    expect(t.store.billing.get(userId)!.usage).toBe(7);
    expect(() =>
      t.store.transaction(() => {
        t.store.billing.addUsage(userId, 3);
        throw new Error('batch failed');
      }),
    ).toThrow('batch failed');
    expect(t.store.billing.get(userId)!.usage).toBe(7);
  });

  it('keeps a credit change atomic inside an outer transaction that fails', () => {
    expect(() =>
      t.store.transaction(() => {
        t.store.billing.addCredits(userId, 50);
        throw new Error('outer failed');
      }),
    ).toThrow('outer failed');
    expect(t.store.billing.get(userId)!.credits).toBe(0);
    expect(t.store.billing.ledger(userId, { limit: 10 })).toEqual([]);
  });
});
