import type { Logger } from 'pino';
import type { ActivityEntry } from '../operational/buffer.js';
import type { DeviceActivity } from '../operational/devices.js';
import type { OperationalStore } from '../operational/store.js';

/** Buffer rows counted per transaction. */
const ROWS_PER_PASS = 500;

/**
 * Counts the device activity (last seen, frames, records) and users' usage of the rows an earlier
 * release buffered and had not counted yet: run once at start, before anything is ingested (new
 * readings are counted as they are stored, frames through ingest/side-effects.ts). A counter moved
 * in the same transaction makes each row count exactly once, across crashes.
 */
export function applyEarlierActivity(store: OperationalStore, logger: Logger): void {
  try {
    for (;;) {
      const rows = store.buffer.activityAfter(ROWS_PER_PASS);
      if (rows.length === 0) return;
      store.transaction(() => {
        const devices = new Map<string, DeviceActivity>();
        const add = (deviceId: string, frames: number, records: number, labId: string | null, modelId: number | null, at: number) => {
          const a = devices.get(deviceId) ?? { deviceId, lastSeen: at, frames: 0, records: 0, labId: null, modelId: null };
          a.frames += frames;
          a.records += records;
          a.lastSeen = Math.max(a.lastSeen, at);
          a.labId = labId ?? a.labId;
          a.modelId = modelId ?? a.modelId;
          devices.set(deviceId, a);
        };
        for (const row of rows) {
          if (row.activity !== null) {
            for (const [deviceId, frames, records, labId, modelId] of JSON.parse(row.activity) as ActivityEntry[]) add(deviceId, frames, records, labId, modelId, row.created_at);
          } else if (row.sensor_id !== null) {
            add(row.sensor_id, 0, row.record_count, null, null, row.created_at);
          }
        }
        // Usage is billed to each sensor's owner, once per stored message.
        const usage = new Map<string, number>();
        for (const a of devices.values()) {
          store.devices.recordActivity(a);
          const owner = store.devices.ownerOf(a.deviceId);
          if (owner != null && a.records > 0) usage.set(owner, (usage.get(owner) ?? 0) + a.records);
        }
        for (const [userId, n] of usage) store.billing.addUsage(userId, n);
        store.buffer.setActivityApplied(rows[rows.length - 1]!.id);
      });
      if (rows.length < ROWS_PER_PASS) return;
    }
  } catch (err) {
    logger.error({ err }, 'counting device activity failed; it is retried with the next flush');
  }
}
