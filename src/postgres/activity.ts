import type { DeviceActivity } from '../operational/devices.js';
import { inTransaction, type Pg, type PgClient } from './connect.js';

/** Key of the advisory lock the fold holds: 'ocean activity'. */
export const ACTIVITY_LOCK = 0x6f63_6163;

/**
 * Appends a batch's device activity (inside the batch's transaction): one row per device, so that
 * instances storing batches of the same devices at once never wait for each other's row locks.
 */
export async function appendActivity(tx: PgClient, activity: readonly DeviceActivity[]): Promise<void> {
  if (activity.length === 0) return;
  const column = <K extends keyof DeviceActivity>(k: K) => activity.map((a) => a[k]);
  await tx.query(
    `INSERT INTO device_activity(device_id, frames, records, lab_id, model_id, last_seen)
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::integer[], $6::double precision[])`,
    [column('deviceId'), column('frames'), column('records'), column('labId'), column('modelId'), column('lastSeen')],
  );
}

/**
 * Folds the appended activity into devices (last seen, frame and record counts, lab, model) and the
 * owners' usage, on one instance at a time (an instance that finds the lock held skips: undefined).
 * The rows it folds are deleted in the same transaction, so each counts exactly once; a batch that
 * commits meanwhile is folded the next time. `now`: Unix seconds, for a device's creation time.
 */
export function foldActivity(pool: Pg, now: number): Promise<{ devices: number; records: number } | undefined> {
  return inTransaction(pool, async (tx) => {
    const { rows: mine } = await tx.query<{ mine: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS mine', [ACTIVITY_LOCK]);
    if (!mine[0]!.mine) return undefined;
    const { rows } = await tx.query<{ device_id: string; owner_id: string | null; records: number }>(
      `WITH taken AS (DELETE FROM device_activity RETURNING *),
       per_device AS (
         SELECT device_id, sum(frames) AS frames, sum(records) AS records, max(last_seen) AS last_seen,
                (array_agg(lab_id ORDER BY id DESC) FILTER (WHERE lab_id IS NOT NULL))[1] AS lab_id,
                (array_agg(model_id ORDER BY id DESC) FILTER (WHERE model_id IS NOT NULL))[1] AS model_id
         FROM taken GROUP BY device_id),
       upserted AS (
         INSERT INTO devices(device_id, created_at, model_id, lab_id, last_seen, frames, records)
         SELECT device_id, $1, model_id, lab_id, last_seen, frames, records FROM per_device ORDER BY device_id
         ON CONFLICT (device_id) DO UPDATE SET last_seen = greatest(coalesce(devices.last_seen, 0), excluded.last_seen), frames = devices.frames + excluded.frames,
           records = devices.records + excluded.records, model_id = coalesce(devices.model_id, excluded.model_id), lab_id = coalesce(excluded.lab_id, devices.lab_id)
         RETURNING device_id, owner_id)
       SELECT u.device_id, u.owner_id, p.records FROM upserted u JOIN per_device p USING (device_id)`,
      [Math.floor(now)],
    );
    const usage = new Map<string, number>();
    for (const r of rows) if (r.owner_id != null && r.records > 0) usage.set(r.owner_id, (usage.get(r.owner_id) ?? 0) + Number(r.records));
    if (usage.size > 0) {
      const owners = [...usage.keys()].sort();
      await tx.query(
        `UPDATE billing SET usage = billing.usage + u.n, updated_at = $3
         FROM (SELECT * FROM unnest($1::text[], $2::bigint[]) AS u(user_id, n)) AS u WHERE billing.user_id = u.user_id`,
        [owners, owners.map((o) => usage.get(o)!), Math.floor(now)],
      );
    }
    return { devices: rows.length, records: rows.reduce((n, r) => n + Number(r.records), 0) };
  });
}
