import { createBilling } from './billing.js';
import { openOperationalDb } from './db.js';
import { createDeviceEvents, type DeviceEvents } from './device-events.js';
import { createDevices, type Devices } from './devices.js';
import { createBuffer } from './buffer.js';
import { createMetadata, type Metadata, type ProfileInput } from './metadata.js';
import { createQuarantine } from './quarantine.js';
import { createSessions, type Sessions } from './sessions.js';
import { createUsers, type Users } from './users.js';
import type { Billing } from './billing.js';

/**
 * The operational store: one SQLite connection and the operations the service runs on it. `now`
 * (Unix seconds, default the system clock) times billing and its Idempotency-Keys, which are
 * remembered `idempotencyKeyTtlS` (default a day).
 */
export function openOperationalStore(path: string, options: { sessionTtlS: number; idempotencyKeyTtlS?: number; now?: () => number; maxSensorsPerUser?: number }) {
  const db = openOperationalDb(path);
  let closed = false;
  const sessions = createSessions(db, { ttlS: options.sessionTtlS });
  const metadata = createMetadata(db);
  const devices = createDevices(db, options.maxSensorsPerUser === undefined ? {} : { maxSensorsPerUser: options.maxSensorsPerUser });
  return {
    db,
    // A user's change or deletion drops its cached sessions too (their username, their existence).
    users: createUsers(db, { onChange: (userId) => sessions.forgetUser(userId) }),
    sessions,
    billing: createBilling(db, { now: options.now ?? (() => Date.now() / 1000), idempotencyKeyTtlS: options.idempotencyKeyTtlS ?? 86400 }),
    metadata,
    devices,
    deviceEvents: createDeviceEvents(db),
    buffer: createBuffer(db),
    quarantine: createQuarantine(db),
    /**
     * Stores (or replaces) a profile for a user (null: the admin), in one transaction: a user needs
     * the sensor the profile described before (when it moves to another) and the sensor it
     * describes, which becomes the user's when nobody owns it yet (a claim, which the sensor cap may
     * refuse). Answers 'stored', or which of the two was refused ('profile', 'sensor'), changing nothing.
     */
    storeProfileAs(userId: string | null, input: ProfileInput): 'stored' | 'profile' | 'sensor' {
      return db
        .transaction((): 'stored' | 'profile' | 'sensor' => {
          if (userId !== null) {
            const existing = metadata.getProfile(input.profile_id);
            if (existing && existing.sensor_id !== input.sensor_id && devices.ownerOf(existing.sensor_id) !== userId) return 'profile';
            if (!devices.claimForUser(input.sensor_id, userId)) return 'sensor';
          }
          metadata.storeProfile(input);
          return 'stored';
        })
        .immediate();
    },
    /** Runs fn in one IMMEDIATE transaction (the write lock is taken up front). */
    transaction<T>(fn: () => T): T {
      return db.transaction(fn).immediate();
    },
    close(): void {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}

export type OperationalStore = ReturnType<typeof openOperationalStore>;

/**
 * A store's operations as either mode offers them: the embedded store answers at once, the shared
 * one (PostgreSQL) with a promise. Callers `await` either.
 */
export type EitherMode<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => R | Promise<Awaited<R>> : T[K];
};

/** The operational stores as the HTTP layer uses them, in either mode (the rest is each store's own). */
export interface StoreOperations {
  users: EitherMode<Users>;
  sessions: EitherMode<Omit<Sessions, 'forgetUser'>>;
  billing: EitherMode<Omit<Billing, 'addUsage'>>;
  metadata: EitherMode<Metadata>;
  /** Purges queued for DuckDB and the listeners are the embedded store's own (the shared one purges at once and notifies). */
  devices: EitherMode<Omit<Devices, 'pendingPurges' | 'purgeDone' | 'onPurgeQueued' | 'onSecretsChanged'>>;
  deviceEvents: EitherMode<DeviceEvents>;
  storeProfileAs: EitherMode<Pick<OperationalStore, 'storeProfileAs'>>['storeProfileAs'];
  /** The JSON work queue as the admin reads and empties it. */
  buffer: EitherMode<Pick<OperationalStore['buffer'], 'queued' | 'markProcessed'>>;
  quarantine: EitherMode<Pick<OperationalStore['quarantine'], 'count' | 'list'>>;
}
