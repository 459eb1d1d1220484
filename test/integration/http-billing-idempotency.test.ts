import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

/** Idempotency-Key on POST /billing/{id}/add-credits, against real SQLite files (or PostgreSQL) and an injected clock. */
describe('HTTP billing: Idempotency-Key', () => {
  const T0 = 1_767_225_600; // 2026-01-01T00:00:00Z: the service's clock, moved by the tests
  let clock = T0;
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  const open = async (options: { dataDir?: string; database?: string | undefined } = {}) => {
    t = await createTestApp({ now: () => clock, env: { IDEMPOTENCY_KEY_TTL_S: '3600' }, ...options });
  };
  const start = async () => {
    clock = T0;
    await open();
    alice = await createUserWithSession(t, 'alice');
    bob = await createUserWithSession(t, 'bob');
  };
  afterEach(() => t.close());

  const addCredits = (userId: string, query: string, key?: string, payload?: object) =>
    t.app.inject({
      method: 'POST',
      url: `/api/ocean/billing/${userId}/add-credits${query}`,
      headers: { ...t.admin, ...(key !== undefined ? { 'idempotency-key': key } : {}) },
      ...(payload ? { payload } : {}),
    });
  const credits = async (userId: string) =>
    (await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${userId}`, headers: t.admin })).json().credits as number;
  const ledgerRows = async (userId: string) =>
    (await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${userId}/ledger`, headers: t.admin })).json().entries.length as number;

  it('applies a change once: a retry with the same key gets the first answer (status and body) and changes nothing', async () => {
    await start();
    const first = await addCredits(alice.id, '?amount=10', 'retry-1');
    expect(first.statusCode).toBe(200);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    for (const retry of [await addCredits(alice.id, '?amount=10', 'retry-1'), await addCredits(alice.id, '', 'retry-1', { amount: 10 })]) {
      expect(retry.statusCode).toBe(first.statusCode);
      expect(retry.body).toBe(first.body);
      expect(retry.headers['idempotent-replayed']).toBe('true');
    }
    expect(await credits(alice.id)).toBe(10);
    expect(await ledgerRows(alice.id)).toBe(1);
    // Debits too; and without a key every request is a change of its own, as before.
    const debit = await addCredits(alice.id, '?amount=-3', 'debit-1');
    expect((await addCredits(alice.id, '?amount=-3', 'debit-1')).body).toBe(debit.body);
    await addCredits(alice.id, '?amount=1');
    await addCredits(alice.id, '?amount=1');
    expect(await credits(alice.id)).toBe(9);
    expect(await ledgerRows(alice.id)).toBe(4);
  });

  it('applies concurrent requests with one key once', async () => {
    await start();
    const answers = await Promise.all(Array.from({ length: 50 }, () => addCredits(alice.id, '?amount=5', 'burst')));
    expect(new Set(answers.map((a) => `${a.statusCode} ${a.body}`)).size).toBe(1);
    expect(await credits(alice.id)).toBe(5);
    expect(await ledgerRows(alice.id)).toBe(1);
  });

  it('keeps the key durably with the change: a retry after a restart gets the first answer', async () => {
    await start();
    const first = await addCredits(alice.id, '?amount=10&reason=top-up', 'across-restart');
    await t.close({ keepDir: true });
    await open({ dataDir: t.dataDir, database: t.database });
    const retry = await addCredits(alice.id, '?amount=10&reason=top-up', 'across-restart');
    expect(retry.statusCode).toBe(200);
    expect(retry.body).toBe(first.body);
    expect(await credits(alice.id)).toBe(10);
  });

  it('refuses a key reused for a different request (amount, user or reason) with 422, changing nothing', async () => {
    await start();
    await addCredits(alice.id, '?amount=10', 'k');
    for (const res of [
      await addCredits(alice.id, '?amount=11', 'k'),
      await addCredits(bob.id, '?amount=10', 'k'),
      await addCredits(alice.id, '?amount=10&reason=other', 'k'),
    ]) {
      expectErrorShape(res, 422, 'validation_error');
      expect(res.json().detail).toEqual([
        { loc: ['header', 'idempotency-key'], msg: expect.stringContaining('already used for a different request'), type: 'value_error' },
      ]);
    }
    expect(await credits(alice.id)).toBe(10);
    expect(await credits(bob.id)).toBe(0);
  });

  it('stores nothing for a refused change, so its retry is decided afresh', async () => {
    await start();
    expectErrorShape(await addCredits(alice.id, '?amount=-5', 'early-debit'), 409, 'insufficient_credits');
    await addCredits(alice.id, '?amount=10');
    const retry = await addCredits(alice.id, '?amount=-5', 'early-debit');
    expect(retry.statusCode).toBe(200);
    expect(retry.json()).toMatchObject({ delta: -5, credits: 5 });
    // One key is stored, the retry's: once the TTL has passed since now (T0), purging them all finds one.
    clock = T0 + 3600;
    expect(await t.store.billing.purgeIdempotencyKeys()).toBe(1);
  });

  it('bounds the key: 1 to 255 characters, no control characters (422 otherwise)', async () => {
    await start();
    for (const key of ['', 'x'.repeat(256), 'a\tb']) {
      const res = await addCredits(alice.id, '?amount=1', key);
      expectErrorShape(res, 422, 'validation_error');
      expect(res.json().detail[0].loc).toEqual(['header', 'idempotency-key']);
    }
    expect((await addCredits(alice.id, '?amount=1', 'k'.repeat(255))).statusCode).toBe(200);
    expect(await credits(alice.id)).toBe(1);
  });

  it('forgets a key after IDEMPOTENCY_KEY_TTL_S of the service clock, and purges it', async () => {
    await start();
    const first = await addCredits(alice.id, '?amount=10', 'daily');
    clock = T0 + 3599;
    expect((await addCredits(alice.id, '?amount=10', 'daily')).body).toBe(first.body);
    expect(await t.store.billing.purgeIdempotencyKeys()).toBe(0);
    clock = T0 + 3600;
    const later = await addCredits(alice.id, '?amount=10', 'daily');
    expect(later.headers['idempotent-replayed']).toBeUndefined();
    expect(later.json()).toMatchObject({ credits: 20 });
    clock = T0 + 2 * 3600;
    expect(await t.store.billing.purgeIdempotencyKeys()).toBe(1);
  });
});
