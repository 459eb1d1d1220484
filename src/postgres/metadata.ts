import { nowS } from '../operational/db.js';
import { entryOf, KV, PROFILE, profileOf, type MetadataEntry, type MetadataRow, type Profile, type ProfileInput } from '../operational/metadata.js';
import type { Queryable } from './connect.js';

/** Metadata and profiles in the shared PostgreSQL: the embedded store's operations (operational/metadata.ts), async. */
export function createPgMetadata(db: Queryable) {
  const upsert = (namespace: string, key: string, value: string, sensorId: string | null, ts: number | null, now: number) =>
    db.query(
      `INSERT INTO metadata(namespace, key, value, sensor_id, ts, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, sensor_id = excluded.sensor_id,
         ts = excluded.ts, updated_at = excluded.updated_at`,
      [namespace, key, value, sensorId, ts, now],
    );
  const select = async (namespace: string, key: string) =>
    (await db.query<MetadataRow>('SELECT key, value, sensor_id, ts, updated_at FROM metadata WHERE namespace = $1 AND key = $2', [namespace, key])).rows[0];

  return {
    async set(key: string, value: unknown): Promise<void> {
      await upsert(KV, key, JSON.stringify(value ?? null), null, null, nowS());
    },
    async get(key: string): Promise<MetadataEntry | undefined> {
      const row = await select(KV, key);
      return row && entryOf(row);
    },
    async storeProfile(input: ProfileInput): Promise<void> {
      const now = nowS();
      await upsert(PROFILE, input.profile_id, JSON.stringify(input.metadata), input.sensor_id, input.timestamp ?? now, now);
    },
    async getProfile(profileId: string): Promise<Profile | undefined> {
      const row = await select(PROFILE, profileId);
      return row && profileOf(row);
    },
  };
}

export type PgMetadata = ReturnType<typeof createPgMetadata>;
