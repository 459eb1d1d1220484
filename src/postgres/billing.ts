import { ConflictError, NotFoundError } from '../errors.js';
import { checkedAmount, type BillingAccount, type CreditChange, type IdempotencyKey, type LedgerEntry } from '../operational/billing.js';
import { differentRequestError } from '../operational/idempotency.js';
import { isoFromS } from '../operational/time.js';
import { inTransaction, type Queryable } from './connect.js';

interface AccountRow extends Omit<BillingAccount, 'created_at' | 'updated_at'> {
  created_at: number;
  updated_at: number;
}

/**
 * Billing in the shared PostgreSQL: the embedded store's operations (operational/billing.ts), async.
 * A credit change is one statement (the balance update with its guard, and the ledger row made from
 * what it returned): the row lock it takes orders concurrent changes from any number of instances,
 * and each re-checks the guard on the balance the one before left, so it never goes below 0 and the
 * ledger always sums to it. A change under an Idempotency-Key holds a lock on that key for its
 * transaction, so that the same key sent to two instances at once is applied once.
 */
export function createPgBilling(db: Queryable, options: { now: () => number; idempotencyKeyTtlS: number }) {
  const nowS = () => Math.floor(options.now());

  const change = async (db: Queryable, userId: string, delta: number, reason: string | null): Promise<CreditChange> => {
    const { rows } = await db.query<{ credits: number; ledger_id: number }>(
      `WITH updated AS (
         UPDATE billing SET credits = credits + $2, updated_at = $3
         WHERE user_id = $1 AND credits + $2 >= 0 AND credits + $2 <= 9007199254740991
         RETURNING credits)
       INSERT INTO billing_ledger(user_id, delta, balance_after, reason, created_at)
       SELECT $1, $2, credits, $4, $3 FROM updated
       RETURNING balance_after AS credits, id AS ledger_id`,
      [userId, delta, nowS(), reason],
    );
    const made = rows[0];
    if (made) return { user_id: userId, delta, credits: made.credits, ledger_id: made.ledger_id };
    const exists = await db.query('SELECT 1 FROM billing WHERE user_id = $1', [userId]);
    if (exists.rowCount === 0) throw new NotFoundError(`user ${userId} has no billing account`);
    if (delta < 0) throw new ConflictError(`a debit of ${-delta} would make the balance of user ${userId} negative`, 'insufficient_credits');
    throw new ConflictError('the balance would exceed the largest supported amount', 'credits_overflow');
  };

  return {
    async get(userId: string): Promise<BillingAccount | undefined> {
      const { rows } = await db.query<AccountRow>('SELECT id, user_id, plan, credits, usage, created_at, updated_at FROM billing WHERE user_id = $1', [userId]);
      const row = rows[0];
      return row && { ...row, created_at: isoFromS(row.created_at), updated_at: isoFromS(row.updated_at) };
    },
    /** Adds `amount` credits (negative debits) and appends one ledger row, atomically; 409 past the balance. */
    async addCredits(userId: string, amount: number, reason?: string): Promise<CreditChange> {
      return change(db, userId, checkedAmount(amount), reason ?? null);
    },
    /** addCredits under an Idempotency-Key, as the embedded store answers it (see operational/billing.ts). */
    async addCreditsOnce(key: IdempotencyKey, userId: string, amount: number, reason?: string): Promise<{ change: CreditChange; replayed: boolean }> {
      const delta = checkedAmount(amount);
      const fingerprint = JSON.stringify([userId, delta, reason ?? null]);
      return inTransaction(db, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${key.scope}\n${key.key}`]);
        const { rows } = await client.query<{ fingerprint: string; body: string }>(
          'SELECT fingerprint, body FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at > $3',
          [key.scope, key.key, nowS() - options.idempotencyKeyTtlS],
        );
        const stored = rows[0];
        if (stored) {
          if (stored.fingerprint !== fingerprint) throw differentRequestError();
          return { change: JSON.parse(stored.body) as CreditChange, replayed: true };
        }
        const made = await change(client, userId, delta, reason ?? null);
        await client.query(
          `INSERT INTO idempotency_keys(scope, key, fingerprint, status, body, created_at) VALUES ($1, $2, $3, 200, $4, $5)
           ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, status = excluded.status,
             body = excluded.body, created_at = excluded.created_at`,
          [key.scope, key.key, fingerprint, JSON.stringify(made), nowS()],
        );
        return { change: made, replayed: false };
      });
    },
    /** Deletes Idempotency-Keys older than their time to live; returns how many. */
    async purgeIdempotencyKeys(): Promise<number> {
      const { rowCount } = await db.query('DELETE FROM idempotency_keys WHERE created_at <= $1', [nowS() - options.idempotencyKeyTtlS]);
      return rowCount ?? 0;
    },
    /** Counts ingested records against the user (inside the ingest's transaction when given its client). */
    async addUsage(userId: string, n: number): Promise<void> {
      if (n !== 0) await db.query('UPDATE billing SET usage = usage + $1, updated_at = $2 WHERE user_id = $3', [n, nowS(), userId]);
    },
    /** Ledger entries, newest first; `before` is the id to continue below. */
    async ledger(userId: string, options: { limit: number; before?: number }): Promise<LedgerEntry[]> {
      const { rows } = await db.query<Omit<LedgerEntry, 'created_at'> & { created_at: number }>(
        `SELECT id, delta, balance_after, reason, created_at FROM billing_ledger
         WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`,
        [userId, options.before ?? Number.MAX_SAFE_INTEGER, options.limit],
      );
      return rows.map((r) => ({ ...r, created_at: isoFromS(r.created_at) }));
    },
  };
}

export type PgBilling = ReturnType<typeof createPgBilling>;
