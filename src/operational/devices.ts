import { SensorLimitError } from '../errors.js';
import type { Db } from './db.js';
import { nowS } from './db.js';

export interface Device {
  device_id: string;
  owner_id: string | null;
  model_id: number | null;
  lab_id: string | null;
  has_secret: boolean;
  created_at: number;
  last_seen: number | null;
  frames: number;
  records: number;
}

/** A devices row as both stores keep it. */
export interface DeviceRow extends Omit<Device, 'has_secret'> {
  secret: Buffer | null;
  origin: string;
}

/** Frames for a sensor a user claimed by JSON, held for an admin instead of stored. */
export interface DeviceConflict {
  device_id: string;
  claimed_by: string;
  frames: number;
  first_at: number;
  last_at: number;
}

/** Readings of a sensor, up to a buffer id, that must leave its history (DuckDB). */
export interface HistoryPurge {
  id: number;
  device_id: string;
  through_id: number;
}

export interface DeviceActivity {
  deviceId: string;
  lastSeen: number;
  frames: number;
  records: number;
  labId: string | null;
  modelId: number | null;
}

export const toDevice = ({ secret, origin: _origin, ...row }: DeviceRow): Device => ({ ...row, has_secret: secret !== null });

/**
 * Devices are sensors: the device id is the analytics sensor_id. A device is created by an admin
 * (owner, optional own frame secret), by a user's first HTTP ingest (that user owns it), or by its
 * first accepted frame (no owner until an admin assigns one).
 *
 * A sensor's history is one party's: frames never take a user's claim away (they are held as a
 * conflict for the admin), and when the admin gives a claimed sensor to another party, the
 * claimant's readings are purged from it.
 */
export function createDevices(db: Db, options: { maxSensorsPerUser?: number } = {}) {
  const maxSensors = options.maxSensorsPerUser ?? Infinity;
  const byId = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE device_id = ?');
  const ownerOf = db.prepare<[string], { owner_id: string | null }>('SELECT owner_id FROM devices WHERE device_id = ?');
  const held = db.prepare<[string], { held: number }>(
    "SELECT 1 AS held FROM devices WHERE device_id = ? AND (origin = 'admin' OR owner_id IS NOT NULL)",
  );
  const secretOf = db.prepare<[string], { secret: Buffer | null }>('SELECT secret FROM devices WHERE device_id = ?');
  const upsert = db.prepare<[string, string | null, number | null, Buffer | null, string | null, number]>(
    `INSERT INTO devices(device_id, owner_id, model_id, secret, lab_id, created_at, origin) VALUES (?, ?, ?, ?, ?, ?, 'admin')
     ON CONFLICT(device_id) DO UPDATE SET owner_id = excluded.owner_id, model_id = coalesce(excluded.model_id, model_id),
       secret = coalesce(excluded.secret, secret), lab_id = coalesce(excluded.lab_id, lab_id), origin = 'admin'`,
  );
  const claim = db.prepare<[string, string, number]>(
    "INSERT INTO devices(device_id, owner_id, created_at, origin) VALUES (?, ?, ?, 'claim') ON CONFLICT(device_id) DO NOTHING",
  );
  const originOf = db.prepare<[string], { origin: string }>('SELECT origin FROM devices WHERE device_id = ?');
  const insertFromFrame = db.prepare<[string, number]>(
    "INSERT INTO devices(device_id, created_at, origin) VALUES (?, ?, 'frame') ON CONFLICT(device_id) DO NOTHING",
  );
  const claimantOf = db.prepare<[string], { owner_id: string }>("SELECT owner_id FROM devices WHERE device_id = ? AND origin = 'claim'");
  const noteConflict = db.prepare<[{ deviceId: string; claimedBy: string; now: number }]>(
    `INSERT INTO device_conflicts(device_id, claimed_by, frames, first_at, last_at) VALUES (@deviceId, @claimedBy, 1, @now, @now)
     ON CONFLICT(device_id) DO UPDATE SET claimed_by = @claimedBy, frames = frames + 1, last_at = @now`,
  );
  const listConflicts = db.prepare<[], DeviceConflict>('SELECT * FROM device_conflicts ORDER BY device_id');
  const settleConflict = db.prepare<[string]>('DELETE FROM device_conflicts WHERE device_id = ?');
  const addPurge = db.prepare<[string, number]>(
    `INSERT INTO history_purges(device_id, through_id, created_at)
     VALUES (?, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'telemetry_buffer'), 0), ?)`,
  );
  // The claimant's profiles of the sensor (metadata.ts keeps them, namespace 'profile') go with it.
  const dropProfiles = db.prepare<[string]>("DELETE FROM metadata WHERE namespace = 'profile' AND sensor_id = ?");
  const listPurges = db.prepare<[], HistoryPurge>('SELECT id, device_id, through_id FROM history_purges ORDER BY id');
  const purgeDone = db.prepare<[number]>('DELETE FROM history_purges WHERE id = ?');
  const withSecret = db.prepare<[], { device_id: string; secret: Buffer }>('SELECT device_id, secret FROM devices WHERE secret IS NOT NULL');
  const touch = db.prepare<[DeviceActivity & { now: number }]>(
    `INSERT INTO devices(device_id, created_at, model_id, lab_id, last_seen, frames, records)
     VALUES (@deviceId, @now, @modelId, @labId, @lastSeen, @frames, @records)
     ON CONFLICT(device_id) DO UPDATE SET last_seen = max(coalesce(last_seen, 0), @lastSeen), frames = frames + @frames,
       records = records + @records, model_id = coalesce(model_id, @modelId), lab_id = coalesce(@labId, lab_id)`,
  );
  const listOwnedAfter = db.prepare<[string, string, number], DeviceRow>(
    'SELECT * FROM devices WHERE owner_id = ? AND device_id > ? ORDER BY device_id LIMIT ?',
  );
  const listAllAfter = db.prepare<[string, number], DeviceRow>('SELECT * FROM devices WHERE device_id > ? ORDER BY device_id LIMIT ?');
  const ownedIdsAfter = db.prepare<[string, string, number], { device_id: string }>(
    'SELECT device_id FROM devices WHERE owner_id = ? AND device_id > ? ORDER BY device_id LIMIT ?',
  );
  const ownedIds = db.prepare<[string], { device_id: string }>('SELECT device_id FROM devices WHERE owner_id = ?');
  const ownedCount = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM devices WHERE owner_id = ?');

  /** Devices known to be neither new nor claimed by JSON ingest: a batch of frames need not look them up. */
  const settled = new Set<string>();
  const secretListeners: Array<() => void> = [];
  const purgeListeners: Array<() => void> = [];

  return {
    get(deviceId: string): Device | undefined {
      const row = byId.get(deviceId);
      return row && toDevice(row);
    },
    /** undefined: unknown device; null: known, no owner. */
    ownerOf(deviceId: string): string | null | undefined {
      return ownerOf.get(deviceId)?.owner_id;
    },
    /** Whether a party speaks for the sensor: an admin registered it, or a user owns it. */
    isHeld(deviceId: string): boolean {
      return held.get(deviceId) !== undefined;
    },
    secretOf(deviceId: string): Buffer | undefined {
      return secretOf.get(deviceId)?.secret ?? undefined;
    },
    /**
     * Admin registration: creates the device or sets its owner / secret / model, and settles a
     * conflict. A sensor a user had claimed by JSON that goes to another party (another owner, or
     * none) loses the claimant's readings and profiles: a purge of its readings so far is
     * queued (the ingest committer runs it in DuckDB), and the profiles are deleted.
     */
    register(input: { deviceId: string; ownerId: string | null; modelId?: number; secret?: Buffer; labId?: string }): Device {
      let purge = false;
      db.transaction(() => {
        const claimant = claimantOf.get(input.deviceId)?.owner_id;
        purge = claimant !== undefined && claimant !== input.ownerId;
        if (purge) {
          addPurge.run(input.deviceId, nowS());
          dropProfiles.run(input.deviceId);
        }
        settleConflict.run(input.deviceId);
        upsert.run(input.deviceId, input.ownerId, input.modelId ?? null, input.secret ?? null, input.labId ?? null, nowS());
      })();
      settled.add(input.deviceId);
      if (input.secret) for (const listener of secretListeners) listener();
      if (purge) for (const listener of purgeListeners) listener();
      return toDevice(byId.get(input.deviceId)!);
    },
    /**
     * A user's JSON ingest (or profile) claims an unknown sensor id for that user. Returns false
     * when the id is anyone else's, registered by an admin, or already seen in signed frames:
     * those can never be claimed this way (an admin assigns them).
     */
    claimForUser(deviceId: string, userId: string): boolean {
      return this.claimAllForUser([deviceId], userId) === undefined;
    },
    /**
     * claimForUser for several ids: the first id that cannot be the user's, or undefined when all
     * are. Throws SensorLimitError (409) when the new claims take the user past its sensor cap;
     * callers run it inside a transaction, so a refused request leaves no claim behind. One
     * count of the user's sensors per call, and only when something new was claimed.
     */
    claimAllForUser(deviceIds: Iterable<string>, userId: string): string | undefined {
      let claimed = 0;
      const now = nowS();
      for (const id of deviceIds) {
        // Looked up first: most readings are of a sensor the user has already (a read, not a write).
        const known = ownerOf.get(id);
        if (known) {
          if (known.owner_id !== userId) return id;
        } else if (claim.run(id, userId, now).changes === 1) claimed++;
        else return id;
      }
      if (claimed > 0 && ownedCount.get(userId)!.n > maxSensors) throw new SensorLimitError(maxSensors);
      return undefined;
    },
    /**
     * The user who claimed a sensor by JSON ingest (or a profile), while no admin has settled it:
     * frames for it are held (noteConflict), never stored in that user's history nor taking it away.
     */
    claimantOf(deviceId: string): string | undefined {
      return settled.has(deviceId) ? undefined : claimantOf.get(deviceId)?.owner_id;
    },
    /** Frames for a claimed sensor were held (inside the batch transaction). */
    noteConflict(deviceId: string, claimedBy: string): void {
      noteConflict.run({ deviceId, claimedBy, now: nowS() });
    },
    conflicts(): DeviceConflict[] {
      return listConflicts.all();
    },
    /** Purges queued by register, oldest first; purgeDone once DuckDB ran them (ingest/committer.ts). */
    pendingPurges(): HistoryPurge[] {
      return listPurges.all();
    },
    purgeDone(id: number): void {
      purgeDone.run(id);
    },
    /**
     * Devices whose signed frames a batch accepts, before the batch commits: an unknown one is
     * created without owner, so no claim can take it meanwhile. (A claimed one never gets here:
     * its frames are held.)
     */
    noteFrameDevices(deviceIds: Iterable<string>): void {
      const unsettled = [...deviceIds].filter((id) => !settled.has(id));
      if (unsettled.length === 0) return;
      const now = nowS();
      db.transaction(() => {
        for (const id of unsettled) if (originOf.get(id) === undefined) insertFromFrame.run(id, now);
      })();
      if (settled.size + unsettled.length > 100_000) settled.clear();
      for (const id of unsettled) settled.add(id);
    },
    /** Devices registered with a secret of their own: only that secret authenticates their frames. */
    ownSecrets(): Map<string, Buffer> {
      return new Map(withSecret.all().map((r) => [r.device_id, r.secret]));
    },
    /** Calls `listener` whenever a device's own secret is set. */
    onSecretsChanged(listener: () => void): void {
      secretListeners.push(listener);
    },
    /** Calls `listener` whenever a purge is queued (pendingPurges). */
    onPurgeQueued(listener: () => void): void {
      purgeListeners.push(listener);
    },
    /** Ingest bookkeeping: last seen, frame and record counts. Run inside a transaction. */
    recordActivity(a: DeviceActivity): void {
      touch.run({ ...a, now: nowS() });
    },
    /** One page of devices in device_id order, after `after` ('' = from the start). */
    page(ownerId: string | undefined, after: string, limit: number): Device[] {
      return (ownerId === undefined ? listAllAfter.all(after, limit) : listOwnedAfter.all(ownerId, after, limit)).map(toDevice);
    },
    /** Every device id of a user (at most MAX_SENSORS_PER_USER of its own claims, plus what an admin assigned). */
    ownedIds(ownerId: string): string[] {
      return ownedIds.all(ownerId).map((r) => r.device_id);
    },
    /** One page of a user's device ids in order, after `after` ('' = from the start). */
    ownedIdsPage(ownerId: string, after: string, limit: number): string[] {
      return ownedIdsAfter.all(ownerId, after, limit).map((r) => r.device_id);
    },
    /** How many devices the user owns (an index count). */
    ownedCount(ownerId: string): number {
      return ownedCount.get(ownerId)!.n;
    },
  };
}

export type Devices = ReturnType<typeof createDevices>;
