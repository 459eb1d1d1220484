import type { Logger } from 'pino';
import type { ActivityEntry } from '../operational/buffer.js';
import type { OperationalStore } from '../operational/store.js';
import { ActivityTally } from './side-effects.js';

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
        const tally = new ActivityTally();
        for (const row of rows) {
          if (row.activity !== null) {
            for (const [deviceId, frames, records, labId, modelId] of JSON.parse(row.activity) as ActivityEntry[]) tally.add(deviceId, frames, records, labId, modelId, row.created_at);
          } else if (row.sensor_id !== null) {
            tally.add(row.sensor_id, 0, row.record_count, null, null, row.created_at);
          }
        }
        tally.write(store);
        store.buffer.setActivityApplied(rows[rows.length - 1]!.id);
      });
      if (rows.length < ROWS_PER_PASS) return;
    }
  } catch (err) {
    logger.error({ err }, 'counting the earlier release\'s device activity failed; it is retried at the next start');
  }
}
