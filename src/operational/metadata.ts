import type { Db } from './db.js';
import { nowS } from './db.js';
import type { MetadataEntry, Profile } from './schemas.js';
import { isoFromS } from './time.js';

export type { MetadataEntry, Profile } from './schemas.js';

/** A metadata row as both stores keep it. */
export interface MetadataRow {
  key: string;
  value: string;
  sensor_id: string | null;
  ts: number | null;
  updated_at: number;
}

export const KV = 'kv';
export const PROFILE = 'profile';

/** A profile to store; `timestamp` is Unix seconds, default now. */
export interface ProfileInput {
  profile_id: string;
  sensor_id: string;
  timestamp?: number;
  metadata: Record<string, unknown>;
}

export const entryOf = (row: MetadataRow): MetadataEntry => ({ key: row.key, value: JSON.parse(row.value) as unknown, updated_at: isoFromS(row.updated_at) });

export const profileOf = (row: MetadataRow): Profile => ({
  profile_id: row.key,
  sensor_id: row.sensor_id ?? '',
  timestamp: isoFromS(row.ts ?? row.updated_at),
  metadata: JSON.parse(row.value) as Record<string, unknown>,
});

/**
 * Key-value metadata (namespace 'kv') and sensor profiles (namespace 'profile') in one table.
 * Values are stored as JSON text.
 */
export function createMetadata(db: Db) {
  const upsert = db.prepare<[string, string, string, string | null, number | null, number]>(
    `INSERT INTO metadata(namespace, key, value, sensor_id, ts, updated_at) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value, sensor_id = excluded.sensor_id,
       ts = excluded.ts, updated_at = excluded.updated_at`,
  );
  const select = db.prepare<[string, string], MetadataRow>(
    'SELECT key, value, sensor_id, ts, updated_at FROM metadata WHERE namespace = ? AND key = ?',
  );

  return {
    /** Sets a key to any JSON value (undefined is not JSON: store null instead). */
    set(key: string, value: unknown): void {
      upsert.run(KV, key, JSON.stringify(value ?? null), null, null, nowS());
    },
    get(key: string): MetadataEntry | undefined {
      const row = select.get(KV, key);
      return row && entryOf(row);
    },
    /** Stores (or replaces) a profile; `timestamp` is Unix seconds, default now. */
    storeProfile(input: ProfileInput): void {
      const now = nowS();
      upsert.run(PROFILE, input.profile_id, JSON.stringify(input.metadata), input.sensor_id, input.timestamp ?? now, now);
    },
    getProfile(profileId: string): Profile | undefined {
      const row = select.get(PROFILE, profileId);
      return row && profileOf(row);
    },
  };
}

export type Metadata = ReturnType<typeof createMetadata>;
