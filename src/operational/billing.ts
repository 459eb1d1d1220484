import { BadRequestError, ConflictError, NotFoundError } from '../errors.js';
import type { Db } from './db.js';
import { createIdempotencyKeys, type IdempotencyKey } from './idempotency.js';
import type { BillingAccount, CreditChange, LedgerEntry } from './schemas.js';
import { isoFromS } from './time.js';

export type { BillingAccount, CreditChange, LedgerEntry } from './schemas.js';
export type { IdempotencyKey } from './idempotency.js';

interface AccountRow extends Omit<BillingAccount, 'created_at' | 'updated_at'> {
  created_at: number;
  updated_at: number;
}
interface LedgerRow extends Omit<LedgerEntry, 'created_at'> {
  created_at: number;
}

/** A credit change's amount: a non-zero safe integer (negative debits). */
export function checkedAmount(amount: number): number {
  if (!Number.isSafeInteger(amount)) throw new BadRequestError('amount must be an integer');
  if (amount === 0) throw new BadRequestError('amount must not be 0');
  return amount;
}

/**
 * Billing: one account row per user (created with the user) and an append-only ledger. A credit
 * change and its ledger row are written in one IMMEDIATE transaction; the balance never goes below 0.
 * A change made under an Idempotency-Key stores its answer in that transaction too (see idempotency.ts).
 * Times come from `now` (Unix seconds), the service's clock.
 */
export function createBilling(db: Db, options: { now: () => number; idempotencyKeyTtlS: number }) {
  const nowS = () => Math.floor(options.now());
  const keys = createIdempotencyKeys(db, { ttlS: options.idempotencyKeyTtlS, now: options.now });
  const account = db.prepare<[string], AccountRow>(
    'SELECT id, user_id, plan, credits, usage, created_at, updated_at FROM billing WHERE user_id = ?',
  );
  const exists = db.prepare<[string], { one: number }>('SELECT 1 AS one FROM billing WHERE user_id = ?');
  // The guard in the WHERE clause makes "never below 0" (and never past 2^53) part of the update itself.
  const applyDelta = db.prepare<[{ userId: string; delta: number; now: number }], { credits: number }>(
    `UPDATE billing SET credits = credits + @delta, updated_at = @now
     WHERE user_id = @userId AND credits + @delta >= 0 AND credits + @delta <= 9007199254740991
     RETURNING credits`,
  );
  const appendLedger = db.prepare<[string, number, number, string | null, number]>(
    'INSERT INTO billing_ledger(user_id, delta, balance_after, reason, created_at) VALUES (?, ?, ?, ?, ?)',
  );
  const ledgerPage = db.prepare<[string, number, number], LedgerRow>(
    `SELECT id, delta, balance_after, reason, created_at FROM billing_ledger
     WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?`,
  );
  const addUsage = db.prepare<[number, number, string]>('UPDATE billing SET usage = usage + ?, updated_at = ? WHERE user_id = ?');

  const change = db.transaction((userId: string, delta: number, reason: string | null): CreditChange => {
    const now = nowS();
    const updated = applyDelta.get({ userId, delta, now });
    if (!updated) {
      if (!exists.get(userId)) throw new NotFoundError(`user ${userId} has no billing account`);
      if (delta < 0) throw new ConflictError(`a debit of ${-delta} would make the balance of user ${userId} negative`, 'insufficient_credits');
      throw new ConflictError('the balance would exceed the largest supported amount', 'credits_overflow');
    }
    const { lastInsertRowid } = appendLedger.run(userId, delta, updated.credits, reason, now);
    return { user_id: userId, delta, credits: updated.credits, ledger_id: Number(lastInsertRowid) };
  });

  const changeOnce = db.transaction((key: IdempotencyKey, userId: string, delta: number, reason: string | null) => {
    const fingerprint = JSON.stringify([userId, delta, reason]);
    const stored = keys.find(key, fingerprint);
    if (stored) return { change: JSON.parse(stored.body) as CreditChange, replayed: true };
    // Nested: a savepoint, so a refused change leaves no key behind either.
    const made = change(userId, delta, reason);
    keys.remember(key, fingerprint, { status: 200, body: JSON.stringify(made) });
    return { change: made, replayed: false };
  });

  return {
    get(userId: string): BillingAccount | undefined {
      const row = account.get(userId);
      return row && { ...row, created_at: isoFromS(row.created_at), updated_at: isoFromS(row.updated_at) };
    },
    /**
     * Adds `amount` credits (negative debits) and appends one ledger row, atomically. Refuses 0,
     * and a debit past the balance (409 insufficient_credits) without changing anything.
     */
    addCredits(userId: string, amount: number, reason?: string): CreditChange {
      return change.immediate(userId, checkedAmount(amount), reason ?? null);
    },
    /**
     * addCredits under an Idempotency-Key: the first use of the key makes the change and stores its
     * answer with it; a later use with the same request gets that answer (`replayed`) and changes
     * nothing; with another request (user, amount or reason), 422. A refused change (404, 409)
     * stores nothing: it changed nothing, so its retry is decided afresh.
     */
    addCreditsOnce(key: IdempotencyKey, userId: string, amount: number, reason?: string): { change: CreditChange; replayed: boolean } {
      return changeOnce.immediate(key, userId, checkedAmount(amount), reason ?? null);
    },
    /** Deletes Idempotency-Keys older than their time to live; returns how many. */
    purgeIdempotencyKeys(): number {
      return keys.purgeExpired();
    },
    /** Ledger entries, newest first; `before` is the id to continue below. */
    ledger(userId: string, options: { limit: number; before?: number }): LedgerEntry[] {
      return ledgerPage
        .all(userId, options.before ?? Number.MAX_SAFE_INTEGER, options.limit)
        .map((r) => ({ ...r, created_at: isoFromS(r.created_at) }));
    },
    /** Counts ingested records against the user. Runs inside the caller's (ingest batch) transaction. */
    addUsage(userId: string, n: number): void {
      if (n !== 0) addUsage.run(n, nowS(), userId);
    },
  };
}

export type Billing = ReturnType<typeof createBilling>;
