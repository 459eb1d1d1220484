import { createPgBilling } from './billing.js';
import { inTransaction, type Pg } from './connect.js';
import { createPgSessions } from './sessions.js';
import { createPgWorkQueue } from './work-queue.js';

/** Key of the advisory lock the periodic job holds: 'ocean maintenance'. */
export const MAINTENANCE_LOCK = 0x6f63_6d74;

export interface MaintenanceOptions {
  /** Unix seconds. */
  now: number;
  /** Fingerprints of frames whose header time is older than now minus this are forgotten. */
  replayWindowS: number;
  idempotencyKeyTtlS: number;
  /** Work-queue rows marked processed are kept this long. */
  bufferRetentionS: number;
}

/**
 * The shared mode's periodic job, on one instance at a time: whichever instance takes the advisory
 * lock runs it in one transaction, the others skip this round (undefined). It deletes expired
 * sessions and Idempotency-Keys, forgets the fingerprints of frames that left the replay window
 * (a copy of such a frame is refused by the drift check anyway) and prunes processed work-queue rows.
 */
export function runMaintenance(pool: Pg, o: MaintenanceOptions) {
  return inTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ mine: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS mine', [MAINTENANCE_LOCK]);
    if (!rows[0]!.mine) return undefined;
    const now = Math.floor(o.now);
    const deleted = async (sql: string, value: number) => (await tx.query(sql, [value])).rowCount ?? 0;
    return {
      sessions: await createPgSessions(tx, { ttlS: 0, now: () => now }).purgeExpired(),
      idempotencyKeys: await createPgBilling(tx, { now: () => now, idempotencyKeyTtlS: o.idempotencyKeyTtlS }).purgeIdempotencyKeys(),
      fingerprints: await deleted('DELETE FROM replay_fingerprints WHERE ts < $1', now - o.replayWindowS),
      queueRows: await createPgWorkQueue(tx).prune(now - o.bufferRetentionS),
    };
  });
}
