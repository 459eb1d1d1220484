import type { ProfileInput } from '../operational/metadata.js';
import { createPgBilling } from './billing.js';
import { inTransaction, type Pg } from './connect.js';
import { createPgDeviceEvents, createPgDevices } from './devices.js';
import { createPgMetadata } from './metadata.js';
import { createPgSessions } from './sessions.js';
import { createPgUsers } from './users.js';
import { createPgWorkQueue } from './work-queue.js';

export interface PgStoreOptions {
  sessionTtlS: number;
  idempotencyKeyTtlS?: number;
  /** Unix seconds (billing and its Idempotency-Keys); default the system clock. */
  now?: () => number;
  maxSensorsPerUser?: number;
  /** After a device's own secret is set through this store, before the registration answers (postgres/devices.ts). */
  onSecretSet?: () => Promise<void>;
}

/**
 * The operational store of the shared mode over one pool: the embedded store's operations
 * (operational/store.ts) module by module, and the operations that span modules, each in one
 * PostgreSQL transaction.
 */
export function openPgStore(pool: Pg, options: PgStoreOptions) {
  const deviceOptions = {
    ...(options.maxSensorsPerUser === undefined ? {} : { maxSensorsPerUser: options.maxSensorsPerUser }),
    ...(options.onSecretSet ? { onSecretSet: options.onSecretSet } : {}),
  };
  return {
    users: createPgUsers(pool),
    sessions: createPgSessions(pool, { ttlS: options.sessionTtlS }),
    billing: createPgBilling(pool, { now: options.now ?? (() => Date.now() / 1000), idempotencyKeyTtlS: options.idempotencyKeyTtlS ?? 86400 }),
    metadata: createPgMetadata(pool),
    devices: createPgDevices(pool, deviceOptions),
    deviceEvents: createPgDeviceEvents(pool),
    buffer: createPgWorkQueue(pool),
    /** What an earlier release's flusher could not store: there is no such release of the shared mode, so none. */
    quarantine: { count: async () => 0, list: async () => [] },
    /** As the embedded store's storeProfileAs: the access checks, the claim and the store in one transaction. */
    storeProfileAs(userId: string | null, input: ProfileInput): Promise<'stored' | 'profile' | 'sensor'> {
      return inTransaction(pool, async (tx) => {
        const metadata = createPgMetadata(tx);
        if (userId !== null) {
          const devices = createPgDevices(tx, deviceOptions);
          const existing = await metadata.getProfile(input.profile_id);
          if (existing && existing.sensor_id !== input.sensor_id && (await devices.ownerOf(existing.sensor_id)) !== userId) return 'profile';
          if (!(await devices.claimForUser(input.sensor_id, userId))) return 'sensor';
        }
        await metadata.storeProfile(input);
        return 'stored';
      });
    },
  };
}

export type PgStore = ReturnType<typeof openPgStore>;
