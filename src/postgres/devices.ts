import { SensorLimitError } from '../errors.js';
import { nowS } from '../operational/db.js';
import { deviceEventOf, type DeviceEvent, type DeviceEventInsert, type DeviceEventRow } from '../operational/device-events.js';
import { toDevice, type Device, type DeviceActivity, type DeviceConflict, type DeviceRow } from '../operational/devices.js';
import { inTransaction, type Queryable } from './connect.js';

/** Channel on which an instance that sets a device's own secret tells the others to reload theirs. */
export const SECRETS_CHANNEL = 'ocean_device_secrets';

/**
 * Devices in the shared PostgreSQL: the embedded store's operations (operational/devices.ts), async,
 * with the same rules. Two differences of the mode: a purge of a claimant's readings (an admin gave
 * a claimed sensor to another party) runs at once, in the registration's transaction, since
 * readings live in the same database; and setting a device's own secret notifies SECRETS_CHANNEL
 * at commit, so that every instance reloads the secrets its decoder checks frames with.
 *
 * `settled` remembers devices that are neither new nor claimed by JSON: that is for good (an admin
 * registration or a first frame never turns back into a claim), so it holds across instances.
 */
export interface PgDevicesOptions {
  maxSensorsPerUser?: number;
  /**
   * Called after a registration that sets a device's own secret has committed, and awaited before
   * it answers: this instance's decoder takes the new secret at once, as the embedded store's does
   * (the other instances follow on the NOTIFY).
   */
  onSecretSet?: () => Promise<void>;
}

export function createPgDevices(db: Queryable, options: PgDevicesOptions = {}) {
  const maxSensors = options.maxSensorsPerUser ?? Infinity;
  const settled = new Set<string>();
  const one = async <T extends object>(sql: string, values: unknown[]): Promise<T | undefined> => (await db.query<T>(sql, values)).rows[0];

  const claimAll = async (deviceIds: Iterable<string>, userId: string): Promise<string | undefined> =>
    inTransaction(db, async (tx) => {
      let claimed = 0;
      const now = nowS();
      for (const id of deviceIds) {
        // Looked up first: most readings are of a sensor the user has already (a read, not a write).
        const known = (await tx.query<{ owner_id: string | null }>('SELECT owner_id FROM devices WHERE device_id = $1', [id])).rows[0];
        if (known) {
          if (known.owner_id !== userId) return id;
          continue;
        }
        if (claimed === 0 && maxSensors !== Infinity) {
          // The user's claims are counted one transaction at a time, whichever instance makes them.
          await tx.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [userId]);
        }
        const made = await tx.query("INSERT INTO devices(device_id, owner_id, created_at, origin) VALUES ($1, $2, $3, 'claim') ON CONFLICT (device_id) DO NOTHING", [id, userId, now]);
        if (made.rowCount !== 1) {
          // Made meanwhile by a transaction that committed first (READ COMMITTED: this statement sees it):
          // the same user's concurrent first reading of the sensor is no conflict.
          const owner = (await tx.query<{ owner_id: string | null }>('SELECT owner_id FROM devices WHERE device_id = $1', [id])).rows[0]?.owner_id;
          if (owner !== userId) return id;
          continue;
        }
        claimed++;
      }
      if (claimed > 0) {
        const { n } = (await tx.query<{ n: number }>('SELECT count(*) AS n FROM devices WHERE owner_id = $1', [userId])).rows[0]!;
        if (n > maxSensors) throw new SensorLimitError(maxSensors);
      }
      return undefined;
    });

  return {
    async get(deviceId: string): Promise<Device | undefined> {
      const row = await one<DeviceRow>('SELECT * FROM devices WHERE device_id = $1', [deviceId]);
      return row && toDevice(row);
    },
    /** undefined: unknown device; null: known, no owner. */
    async ownerOf(deviceId: string): Promise<string | null | undefined> {
      return (await one<{ owner_id: string | null }>('SELECT owner_id FROM devices WHERE device_id = $1', [deviceId]))?.owner_id;
    },
    async isHeld(deviceId: string): Promise<boolean> {
      return (await one("SELECT 1 FROM devices WHERE device_id = $1 AND (origin = 'admin' OR owner_id IS NOT NULL)", [deviceId])) !== undefined;
    },
    async secretOf(deviceId: string): Promise<Buffer | undefined> {
      return (await one<{ secret: Buffer | null }>('SELECT secret FROM devices WHERE device_id = $1', [deviceId]))?.secret ?? undefined;
    },
    /** Admin registration, as the embedded store's; a claimant's readings and profiles go at once when the sensor changes hands. */
    async register(input: { deviceId: string; ownerId: string | null; modelId?: number; secret?: Buffer; labId?: string }): Promise<Device> {
      const row = await inTransaction(db, async (tx) => {
        const claimant = (await tx.query<{ owner_id: string }>("SELECT owner_id FROM devices WHERE device_id = $1 AND origin = 'claim' FOR UPDATE", [input.deviceId])).rows[0]?.owner_id;
        if (claimant !== undefined && claimant !== input.ownerId) {
          await tx.query('DELETE FROM readings WHERE series IN (SELECT series FROM series WHERE sensor_id = $1)', [input.deviceId]);
          await tx.query("DELETE FROM metadata WHERE namespace = 'profile' AND sensor_id = $1", [input.deviceId]);
        }
        await tx.query('DELETE FROM device_conflicts WHERE device_id = $1', [input.deviceId]);
        const { rows } = await tx.query<DeviceRow>(
          `INSERT INTO devices(device_id, owner_id, model_id, secret, lab_id, created_at, origin) VALUES ($1, $2, $3, $4, $5, $6, 'admin')
           ON CONFLICT (device_id) DO UPDATE SET owner_id = excluded.owner_id, model_id = coalesce(excluded.model_id, devices.model_id),
             secret = coalesce(excluded.secret, devices.secret), lab_id = coalesce(excluded.lab_id, devices.lab_id), origin = 'admin'
           RETURNING *`,
          [input.deviceId, input.ownerId, input.modelId ?? null, input.secret ?? null, input.labId ?? null, nowS()],
        );
        if (input.secret) await tx.query('SELECT pg_notify($1, $2)', [SECRETS_CHANNEL, input.deviceId]);
        return rows[0]!;
      });
      // Committed whatever the reload does: should it fail, the NOTIFY (or the listener's reconnection) reloads.
      if (input.secret) await options.onSecretSet?.().catch(() => undefined);
      settled.add(input.deviceId);
      return toDevice(row);
    },
    async claimForUser(deviceId: string, userId: string): Promise<boolean> {
      return (await claimAll([deviceId], userId)) === undefined;
    },
    /** The first id that cannot be the user's, or undefined when all are; SensorLimitError past the cap (the claims of the call are taken back). */
    claimAllForUser: claimAll,
    async claimantOf(deviceId: string): Promise<string | undefined> {
      if (settled.has(deviceId)) return undefined;
      return (await one<{ owner_id: string }>("SELECT owner_id FROM devices WHERE device_id = $1 AND origin = 'claim'", [deviceId]))?.owner_id;
    },
    async noteConflict(deviceId: string, claimedBy: string): Promise<void> {
      const now = nowS();
      await db.query(
        `INSERT INTO device_conflicts(device_id, claimed_by, frames, first_at, last_at) VALUES ($1, $2, 1, $3, $3)
         ON CONFLICT (device_id) DO UPDATE SET claimed_by = $2, frames = device_conflicts.frames + 1, last_at = $3`,
        [deviceId, claimedBy, now],
      );
    },
    async conflicts(): Promise<DeviceConflict[]> {
      return (await db.query<DeviceConflict>('SELECT * FROM device_conflicts ORDER BY device_id COLLATE "C"')).rows;
    },
    /** Devices whose signed frames a batch accepts: an unknown one is created without owner, so no claim can take it meanwhile. */
    async noteFrameDevices(deviceIds: Iterable<string>): Promise<void> {
      const unsettled = [...new Set(deviceIds)].filter((id) => !settled.has(id));
      if (unsettled.length === 0) return;
      await db.query("INSERT INTO devices(device_id, created_at, origin) SELECT id, $2, 'frame' FROM unnest($1::text[]) AS id ON CONFLICT (device_id) DO NOTHING", [unsettled, nowS()]);
      if (settled.size + unsettled.length > 100_000) settled.clear();
      for (const id of unsettled) settled.add(id);
    },
    async ownSecrets(): Promise<Map<string, Buffer>> {
      const { rows } = await db.query<{ device_id: string; secret: Buffer }>('SELECT device_id, secret FROM devices WHERE secret IS NOT NULL');
      return new Map(rows.map((r) => [r.device_id, r.secret]));
    },
    async recordActivity(a: DeviceActivity): Promise<void> {
      await db.query(
        `INSERT INTO devices(device_id, created_at, model_id, lab_id, last_seen, frames, records) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (device_id) DO UPDATE SET last_seen = greatest(coalesce(devices.last_seen, 0), $5), frames = devices.frames + $6,
           records = devices.records + $7, model_id = coalesce(devices.model_id, $3), lab_id = coalesce($4, devices.lab_id)`,
        [a.deviceId, nowS(), a.modelId, a.labId, a.lastSeen, a.frames, a.records],
      );
    },
    async page(ownerId: string | undefined, after: string, limit: number): Promise<Device[]> {
      const { rows } =
        ownerId === undefined
          ? await db.query<DeviceRow>('SELECT * FROM devices WHERE device_id COLLATE "C" > $1 ORDER BY device_id COLLATE "C" LIMIT $2', [after, limit])
          : await db.query<DeviceRow>('SELECT * FROM devices WHERE owner_id = $1 AND device_id COLLATE "C" > $2 ORDER BY device_id COLLATE "C" LIMIT $3', [ownerId, after, limit]);
      return rows.map(toDevice);
    },
    async ownedIds(ownerId: string): Promise<string[]> {
      return (await db.query<{ device_id: string }>('SELECT device_id FROM devices WHERE owner_id = $1 ORDER BY device_id COLLATE "C"', [ownerId])).rows.map((r) => r.device_id);
    },
    async ownedIdsPage(ownerId: string, after: string, limit: number): Promise<string[]> {
      const { rows } = await db.query<{ device_id: string }>(
        'SELECT device_id FROM devices WHERE owner_id = $1 AND device_id COLLATE "C" > $2 ORDER BY device_id COLLATE "C" LIMIT $3',
        [ownerId, after, limit],
      );
      return rows.map((r) => r.device_id);
    },
    async ownedCount(ownerId: string): Promise<number> {
      return (await one<{ n: number }>('SELECT count(*) AS n FROM devices WHERE owner_id = $1', [ownerId]))!.n;
    },
  };
}

export type PgDevices = ReturnType<typeof createPgDevices>;

/** Non-telemetry frames in the shared PostgreSQL: the embedded store's operations (operational/device-events.ts), async. */
export function createPgDeviceEvents(db: Queryable) {
  return {
    async add(e: DeviceEventInsert): Promise<boolean> {
      const { rowCount } = await db.query(
        `INSERT INTO device_events(source_id, device_id, payload_type, ts, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (source_id) DO NOTHING`,
        [e.sourceId, e.deviceId, e.payloadType, Math.floor(e.ts), JSON.stringify(e.body), nowS()],
      );
      return rowCount === 1;
    },
    async list(deviceId: string, options: { limit: number; before?: number }): Promise<DeviceEvent[]> {
      const { rows } = await db.query<DeviceEventRow>(
        'SELECT id, device_id, payload_type, ts, body, created_at FROM device_events WHERE device_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3',
        [deviceId, options.before ?? Number.MAX_SAFE_INTEGER, options.limit],
      );
      return rows.map(deviceEventOf);
    },
  };
}
