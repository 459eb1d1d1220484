import { ValidationError } from '../errors.js';
import type { Db } from './db.js';

/** An Idempotency-Key as a store sees it: the key, and the caller and route it belongs to. */
export interface IdempotencyKey {
  /** Who and where, e.g. `admin:add-credits`: the same key from another caller or route is another key. */
  scope: string;
  key: string;
}

/** The answer first given for a key. */
export interface StoredAnswer {
  status: number;
  body: string;
}

interface Row extends StoredAnswer {
  fingerprint: string;
}

/** A key sent again with another request: refused (422) rather than answered with the other's answer. */
export const differentRequestError = (): ValidationError =>
  new ValidationError([
    {
      loc: ['header', 'idempotency-key'],
      msg: 'this Idempotency-Key was already used for a different request; use a new key for a new request',
      type: 'value_error',
    },
  ]);

/**
 * Answers remembered by Idempotency-Key, for `ttlS` seconds of the injected clock. Runs inside the
 * caller's transaction: the answer is stored with the change it describes, or not at all.
 */
export function createIdempotencyKeys(db: Db, options: { ttlS: number; now: () => number }) {
  const select = db.prepare<[string, string, number], Row>(
    'SELECT fingerprint, status, body FROM idempotency_keys WHERE scope = ? AND key = ? AND created_at > ?',
  );
  // An expired row with the same key is replaced.
  const upsert = db.prepare<[string, string, string, number, string, number]>(
    `INSERT INTO idempotency_keys(scope, key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT(scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, status = excluded.status,
       body = excluded.body, created_at = excluded.created_at`,
  );
  const purge = db.prepare<[number]>('DELETE FROM idempotency_keys WHERE created_at <= ?');
  const cutoff = () => Math.floor(options.now()) - options.ttlS;

  return {
    /**
     * The answer stored for `key`, if it is still remembered. `fingerprint` describes the request:
     * the same key with another request is refused (422) rather than answered with the other's answer.
     */
    find(key: IdempotencyKey, fingerprint: string): StoredAnswer | undefined {
      const row = select.get(key.scope, key.key, cutoff());
      if (!row) return undefined;
      if (row.fingerprint !== fingerprint) throw differentRequestError();
      return { status: row.status, body: row.body };
    },
    remember(key: IdempotencyKey, fingerprint: string, answer: StoredAnswer): void {
      upsert.run(key.scope, key.key, fingerprint, answer.status, answer.body, Math.floor(options.now()));
    },
    /** Deletes the keys no longer remembered; returns how many. */
    purgeExpired(): number {
      return purge.run(cutoff()).changes;
    },
  };
}

export type IdempotencyKeys = ReturnType<typeof createIdempotencyKeys>;
