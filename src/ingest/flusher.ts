import type { Logger } from 'pino';
import type { AnalyticsEngine } from '../analytics/engine.js';
import type { MeasurementRow } from '../analytics/types.js';
import { timed, type Metrics } from '../metrics.js';
import type { MeasurementRecord } from '../nanogridata/types.js';
import type { OperationalStore } from '../operational/store.js';

interface FlusherOptions {
  store: OperationalStore;
  analytics: AnalyticsEngine;
  metrics: Metrics;
  logger: Logger;
  batchRows: number;
  intervalMs: number;
  retentionS: number;
}

/**
 * Moves buffered records from SQLite into DuckDB. The high-water mark (last buffer id appended) is
 * written in the same DuckDB transaction as the rows, and read back from DuckDB on start, so a crash
 * anywhere between the two stores neither loses nor doubles a record. Marking rows processed in
 * SQLite afterwards is bookkeeping that a restart redoes.
 */
export class Flusher {
  private highWater = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private stopped = true;
  private lastFlushAt: Date | null = null;
  private lastError: string | null = null;
  private lastPruneAt = 0;
  private readonly log: Logger;

  constructor(private readonly options: FlusherOptions) {
    this.log = options.logger.child({ component: 'flusher' });
  }

  /** Resumes from DuckDB's high-water mark and flushes on an interval until stop(). */
  async start(): Promise<void> {
    this.highWater = await this.options.analytics.highWaterMark();
    this.options.store.buffer.markFlushed(this.highWater);
    this.stopped = false;
    this.schedule(0);
  }

  /** Flushes until the buffer is drained (or fails), then returns how many records were appended. */
  async flush(): Promise<number> {
    // One flush at a time: the interval and an explicit call must not append the same rows twice.
    while (this.running) await this.running;
    this.running = this.drain();
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }

  /** Stops the interval after the flush in progress, then flushes what is left. Safe to call twice. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush().catch((err: unknown) => this.log.error({ err }, 'final flush failed'));
  }

  status() {
    return {
      high_water: this.highWater,
      last_flush_at: this.lastFlushAt?.toISOString() ?? null,
      last_error: this.lastError,
    };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.flush()
        .catch(() => undefined) // counted and logged in drain()
        .finally(() => this.schedule(this.options.intervalMs));
    }, delayMs);
  }

  private async drain(): Promise<number> {
    let total = 0;
    try {
      for (;;) {
        const appended = await this.flushBatch();
        if (appended < 0) break;
        total += appended;
      }
      this.lastError = null;
      this.prune();
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.options.metrics.errorsTotal.inc({ component: 'flusher' });
      this.log.error({ err }, 'flush failed; will retry');
      throw err;
    }
    return total;
  }

  /** Appends one batch; returns the records appended, or -1 when there was nothing to flush. */
  private async flushBatch(): Promise<number> {
    const { store, analytics, metrics, batchRows } = this.options;
    const pending = timed(metrics, 'sqlite', 'buffer_read', () => store.buffer.after(this.highWater, batchRows));
    if (pending.length === 0) return -1;
    const end = metrics.flushDuration.startTimer();
    const rows: MeasurementRow[] = [];
    for (const row of pending) {
      for (const r of JSON.parse(row.records) as MeasurementRecord[]) {
        rows.push({
          buffer_id: row.id,
          ts: r.ts,
          sensor_id: r.sensor_id,
          metric: r.metric,
          value: r.value,
          unit: r.unit,
          lab_id: row.lab_id,
          model_id: row.model_id,
          source: row.source,
        });
      }
    }
    const highWater = pending[pending.length - 1]!.id;
    await analytics.appendBatch(rows, highWater);
    this.highWater = highWater;
    timed(metrics, 'sqlite', 'buffer_mark', () => store.buffer.markFlushed(highWater));
    end();
    metrics.flushedRecords.inc(rows.length);
    this.lastFlushAt = new Date();
    return rows.length;
  }

  /** Retention: processed rows older than the retention period go, at most once a minute. */
  private prune(): void {
    const now = Date.now();
    if (now - this.lastPruneAt < 60_000) return;
    this.lastPruneAt = now;
    const removed = this.options.store.buffer.prune(this.highWater, Math.floor(now / 1000) - this.options.retentionS);
    if (removed > 0) this.log.info({ removed }, 'pruned processed buffer rows');
  }
}
