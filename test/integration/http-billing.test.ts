import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { appWithAliceAndBob, type TestUser } from '../helpers/sessions.js';

describe('HTTP billing', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  beforeEach(async () => ({ t, alice, bob } = await appWithAliceAndBob()));
  afterEach(() => t.close());

  const addCredits = (userId: string, query: string, payload?: object, headers: Record<string, string> = t.admin) =>
    t.app.inject({
      method: 'POST',
      url: `/api/ocean/billing/${userId}/add-credits${query}`,
      headers,
      ...(payload ? { payload } : {}),
    });
  const account = async (userId: string) =>
    (await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${userId}`, headers: t.admin })).json();
  const ledger = async (userId: string, query = '') =>
    (await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${userId}/ledger${query}`, headers: t.admin })).json();

  it('adds credits with ?amount= (as the original) and with a JSON body', async () => {
    const q = await addCredits(alice.id, '?amount=10');
    expect(q.statusCode).toBe(200);
    expect(q.json()).toEqual({ user_id: alice.id, delta: 10, credits: 10, ledger_id: expect.any(Number) });
    const b = await addCredits(alice.id, '', { amount: 5, reason: 'bonus' });
    expect(b.json()).toMatchObject({ delta: 5, credits: 15 });
    expect(await account(alice.id)).toMatchObject({ user_id: alice.id, credits: 15, plan: 'free', usage: 0 });
    expect((await ledger(alice.id)).entries.map((e: { delta: number; reason: string | null }) => [e.delta, e.reason])).toEqual([
      [5, 'bonus'],
      [10, null],
    ]);
  });

  it('debits with a negative amount', async () => {
    await addCredits(alice.id, '?amount=10');
    const res = await addCredits(alice.id, '?amount=-4');
    expect(res.statusCode).toBe(200);
    expect(res.json().credits).toBe(6);
  });

  it('refuses a debit below zero with 409 and changes neither the balance nor the ledger', async () => {
    await addCredits(alice.id, '?amount=3');
    const before = { account: await account(alice.id), ledger: await ledger(alice.id) };
    const res = await addCredits(alice.id, '?amount=-4');
    expectErrorShape(res, 409, 'insufficient_credits');
    expect(await account(alice.id)).toEqual(before.account);
    expect(await ledger(alice.id)).toEqual(before.ledger);
  });

  it('gives exactly +1,000 and 1,000 ledger rows for 1,000 concurrent add-credits +1', async () => {
    const results = await Promise.all(Array.from({ length: 1000 }, () => addCredits(alice.id, '?amount=1')));
    expect(results.every((r) => r.statusCode === 200)).toBe(true);
    const balances = results.map((r) => r.json().credits as number).sort((a, b) => a - b);
    expect(balances).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect((await account(alice.id)).credits).toBe(1000);
    const entries = [];
    for (let before = ''; ; ) {
      const page = await ledger(alice.id, `?limit=1000${before}`);
      entries.push(...page.entries);
      if (page.next_before === null) break;
      before = `&before=${page.next_before}`;
    }
    expect(entries).toHaveLength(1000);
    expect(entries.every((e: { delta: number }) => e.delta === 1)).toBe(true);
    expect(new Set(entries.map((e: { balance_after: number }) => e.balance_after)).size).toBe(1000);
  });

  it('never lets concurrent debits take the balance below zero', async () => {
    await addCredits(alice.id, '?amount=100');
    const results = await Promise.all(Array.from({ length: 300 }, () => addCredits(alice.id, '?amount=-1')));
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(100);
    expect(results.filter((r) => r.statusCode === 409)).toHaveLength(200);
    expect((await account(alice.id)).credits).toBe(0);
    expect((await ledger(alice.id, '?limit=1000')).entries).toHaveLength(101);
  });

  it.each([
    ['no amount', '', undefined, 422],
    ['amount 0', '?amount=0', undefined, 400],
    ['a fractional amount', '?amount=1.5', undefined, 422],
    ['a non-numeric amount', '?amount=abc', undefined, 422],
    ['a fractional body amount', '', { amount: 2.5 }, 422],
    ['conflicting query and body amounts', '?amount=1', { amount: 2 }, 400],
  ])('refuses %s with %i', async (_name, query, payload, status) => {
    const res = await addCredits(alice.id, query, payload);
    expectErrorShape(res, status);
    if (status === 422) expect(res.json().detail[0].loc).toEqual(expect.arrayContaining([expect.stringMatching(/^(query|body)$/), 'amount']));
    expect((await account(alice.id)).credits).toBe(0);
  });

  it('answers 404 for an unknown user', async () => {
    const res = await addCredits('999', '?amount=1');
    expect(res.statusCode).toBe(404);
    expect(res.json().error).toBe('not_found');
  });

  it('lets only the admin change credits', async () => {
    expect((await addCredits(alice.id, '?amount=1', undefined, {})).statusCode).toBe(401);
    expect((await addCredits(alice.id, '?amount=1', undefined, alice.auth)).statusCode).toBe(403);
    expect((await account(alice.id)).credits).toBe(0);
  });

  it("shows a user its own billing and ledger, never another user's", async () => {
    await addCredits(alice.id, '?amount=7');
    const own = await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${alice.id}`, headers: alice.auth });
    expect(own.statusCode).toBe(200);
    expect(own.json()).toMatchObject({ credits: 7 });
    const ownLedger = await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${alice.id}/ledger`, headers: alice.auth });
    expect(ownLedger.statusCode).toBe(200);
    expect(ownLedger.json().entries).toHaveLength(1);
    for (const url of [`/api/ocean/billing/${alice.id}`, `/api/ocean/billing/${alice.id}/ledger`]) {
      expect((await t.app.inject({ method: 'GET', url, headers: bob.auth })).statusCode).toBe(403);
      expect((await t.app.inject({ method: 'GET', url })).statusCode).toBe(401);
    }
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/billing/999', headers: t.admin })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/billing/999/ledger', headers: t.admin })).statusCode).toBe(404);
  });

  it('pages the ledger with limit and next_before', async () => {
    for (let i = 1; i <= 5; i++) await addCredits(alice.id, `?amount=${i}`);
    const first = await ledger(alice.id, '?limit=2');
    expect(first.entries.map((e: { delta: number }) => e.delta)).toEqual([5, 4]);
    const rest = await ledger(alice.id, `?limit=10&before=${first.next_before}`);
    expect(rest.entries.map((e: { delta: number }) => e.delta)).toEqual([3, 2, 1]);
    expect(rest.next_before).toBeNull();
    const bad = await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${alice.id}/ledger?limit=0`, headers: t.admin });
    expect(bad.statusCode).toBe(422);
  });
});
