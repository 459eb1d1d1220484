import type { Logger } from 'pino';
import type { IngestState } from '../analytics/commit-types.js';
import type { DeviceActivity } from '../operational/devices.js';
import type { OperationalStore } from '../operational/store.js';

/** What a batch of frames owes SQLite once its readings are committed in DuckDB. */
export interface Effects {
  /** Unix seconds of the commit: the devices' last seen. */
  at: number;
  /** Per device: [device_id, frames, records, lab_id, model_id]. */
  activity: Array<[deviceId: string, frames: number, records: number, labId: string | null, modelId: number | null]>;
  /** Non-telemetry frames: [source_id, device_id, payload_type, ts, body]. */
  events: Array<[sourceId: string, deviceId: string, payloadType: number, ts: number, body: Record<string, unknown>]>;
}

/** Applied at least this often while batches arrive: one SQLite transaction for many batches. */
const APPLY_MS = 500;
const COUNTER = 'effects_applied_through';

/**
 * Device activity (last seen, frame and record counts), users' usage and device events of the
 * frames DuckDB committed. Each batch's effects are committed with its readings in DuckDB and
 * applied here later, many batches per SQLite transaction, with the number of the last batch
 * applied moved in that same transaction: after a crash the batches above it are read back from
 * DuckDB and applied, so each frame counts exactly once.
 */
export class SideEffects {
  private pending: Array<[batch: number, effects: Effects]> = [];
  private timer: NodeJS.Timeout | undefined;
  private applied: number | undefined;
  private readonly log: Logger;

  constructor(
    private readonly store: OperationalStore,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'side-effects' });
  }

  /** The last batch whose effects are in SQLite. */
  get appliedThrough(): number {
    // Only this class writes the counter: kept here after the first read, not read per commit.
    return (this.applied ??= this.store.buffer.counter(COUNTER));
  }

  /**
   * At start: applies what DuckDB kept for batches SQLite has not seen. An ocean.db newer than
   * analytics.duckdb (restored from different backups) counts from DuckDB's last batch again.
   */
  recover(state: IngestState): void {
    if (this.appliedThrough > state.batch) {
      this.log.warn({ sqlite: this.appliedThrough, duckdb: state.batch }, 'ocean.db counted batches analytics.duckdb does not hold; counting from its last batch');
      this.store.transaction(() => this.store.buffer.setCounter(COUNTER, state.batch));
      this.applied = state.batch;
    }
    for (const [batch, json] of state.effects) if (batch > this.appliedThrough) this.pending.push([batch, JSON.parse(json) as Effects]);
    this.apply();
  }

  /** A committed batch's effects: applied within APPLY_MS. */
  add(batch: number, effects: Effects): void {
    this.pending.push([batch, effects]);
    this.schedule();
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.apply();
    }, APPLY_MS);
  }

  /** Applies every pending batch now (also on stop). A failure leaves them pending, retried with the next. */
  apply(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batches = this.pending.splice(0);
    if (batches.length === 0) return;
    const { store } = this;
    try {
      store.transaction(() => {
        const tally = new ActivityTally();
        for (const [, e] of batches) {
          for (const [deviceId, frames, records, labId, modelId] of e.activity) tally.add(deviceId, frames, records, labId, modelId, e.at);
          for (const [sourceId, deviceId, payloadType, ts, body] of e.events) store.deviceEvents.add({ sourceId, deviceId, payloadType, ts, body });
        }
        tally.write(store);
        store.buffer.setCounter(COUNTER, batches[batches.length - 1]![0]);
      });
      this.applied = batches[batches.length - 1]![0];
    } catch (err) {
      this.pending.unshift(...batches);
      this.log.error({ err }, 'counting device activity failed; it is retried');
      this.schedule();
    }
  }

  /** Applies what is pending; a failure stays logged, and DuckDB keeps those effects for the next start. */
  stop(): void {
    this.apply();
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** Device activity summed per device, then written with each owner's usage, inside the caller's transaction. */
export class ActivityTally {
  private readonly devices = new Map<string, DeviceActivity>();

  add(deviceId: string, frames: number, records: number, labId: string | null, modelId: number | null, at: number): void {
    const a = this.devices.get(deviceId) ?? { deviceId, lastSeen: at, frames: 0, records: 0, labId: null, modelId: null };
    a.frames += frames;
    a.records += records;
    a.lastSeen = Math.max(a.lastSeen, at);
    a.labId = labId ?? a.labId;
    a.modelId = modelId ?? a.modelId;
    this.devices.set(deviceId, a);
  }

  /** One update per device; usage is billed to each sensor's owner, once per stored record. */
  write(store: OperationalStore): void {
    const usage = new Map<string, number>();
    for (const a of this.devices.values()) {
      store.devices.recordActivity(a);
      const owner = store.devices.ownerOf(a.deviceId);
      if (owner != null && a.records > 0) usage.set(owner, (usage.get(owner) ?? 0) + a.records);
    }
    for (const [userId, n] of usage) store.billing.addUsage(userId, n);
  }
}
