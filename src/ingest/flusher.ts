import type { Logger } from 'pino';
import type { AnalyticsClient, WireSegment } from '../analytics/client.js';
import { deleteSensorHistory } from '../analytics/purge.js';
import { timed, type Metrics } from '../metrics.js';
import type { PendingRow } from '../operational/buffer.js';
import { readRecordBatch, recordAt, type RecordColumns } from '../operational/record-batch.js';
import type { OperationalStore } from '../operational/store.js';
import { applyDeviceActivity } from './device-activity.js';

interface FlusherOptions {
  store: OperationalStore;
  analytics: AnalyticsClient;
  metrics: Metrics;
  logger: Logger;
  /** Most records per DuckDB transaction (a single bigger row is flushed alone). */
  batchRecords: number;
  intervalMs: number;
  retentionS: number;
  /** Unix seconds: the clock retention measures age by. */
  now: () => number;
}

/** Most bytes of packed records per DuckDB transaction. */
const BATCH_BYTES = 16 * 1024 * 1024;
/** Failed attempts at one batch before it is narrowed down to the records DuckDB refuses. */
const ATTEMPTS_BEFORE_NARROWING = 3;
const MAX_BACKOFF_MS = 30_000;
/**
 * With nothing to flush the flusher sleeps this long (retention is applied at most once a minute
 * anyway): a buffer insert or a queued purge wakes it to flush within the interval.
 */
const IDLE_MS = 60_000;
/**
 * A refusal caused by the data itself (DuckDB's conversion, range and constraint errors, or a value
 * the driver cannot convert), as opposed to the store's condition.
 */
function isDataError(err: unknown): err is Error {
  return err instanceof Error && /constraint|conversion|could not convert|out of .*range|invalid input|mismatch type|invalid (utf|unicode)/i.test(err.message);
}

/** Times DuckDB can store: years 1 to 9999. */
const MIN_TS = -62_135_596_800;
const MAX_TS = 253_402_300_799;

/** A buffer row on its way to DuckDB: its packed records, read here for the checks, and what to leave out. */
interface FlushSegment {
  bufferId: number;
  source: string;
  records: Buffer;
  columns: RecordColumns;
  count: number;
  skip?: number[];
}

/**
 * What crosses to the analytics worker: a copy of the records in a buffer of its own, which moves
 * to the worker (a retry or the narrowing sends the same row again).
 */
const wire = (s: FlushSegment): WireSegment => ({ bufferId: s.bufferId, source: s.source, records: new Uint8Array(s.records), ...(s.skip ? { skip: s.skip } : {}) });

export interface FlusherStatus {
  high_water: number;
  last_flush_at: string | null;
  last_error: string | null;
  /** Consecutive failed attempts at the current batch. */
  failures: number;
  quarantined: number;
}

/**
 * Moves buffered records from SQLite into DuckDB. The high-water mark (last buffer id appended) is
 * written in the same DuckDB transaction as the rows, and read back from DuckDB on start, so a crash
 * anywhere between the two stores neither loses nor doubles a record.
 *
 * A batch DuckDB refuses is retried with backoff; after a few attempts it is narrowed down row by
 * row and record by record, the records DuckDB still refuses are quarantined (kept in SQLite with
 * the error, visible to the admin) and the rest flows on. A failure that every row shares (disk
 * full, out of memory) quarantines nothing: the flusher keeps retrying, and /health says so.
 */
export class Flusher {
  private highWater = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The timer armed is the idle one (IDLE_MS), which a wake-up brings forward. */
  private idle = false;
  /** Work arrived since the current flush began (or the last timer fired). */
  private woken = false;
  private running: Promise<number> | undefined;
  private stopped = true;
  /** Holds of pausedWhile() in progress: no flush (nor prune) starts while one runs. */
  private holds = 0;
  private lastFlushAt: Date | null = null;
  private lastError: string | null = null;
  private failures = 0;
  private lastPruneAt = 0;
  private readonly log: Logger;

  constructor(private readonly options: FlusherOptions) {
    this.log = options.logger.child({ component: 'flusher' });
    options.store.buffer.onInsert(() => this.wake());
    options.store.devices.onPurgeQueued(() => this.wake());
  }

  /**
   * Resumes from DuckDB's high-water mark (re-anchoring a buffer that is behind it) and flushes
   * within `intervalMs` of each insert (or queued purge); with nothing to flush it sleeps.
   */
  async start(): Promise<void> {
    const { store } = this.options;
    this.highWater = await this.options.analytics.highWaterMark();
    const lastId = store.buffer.lastId();
    if (lastId < this.highWater) {
      // ocean.db was lost or restored from a backup while analytics.duckdb was kept: new rows must
      // take ids above what DuckDB holds, or the flusher would skip them as already appended.
      this.log.warn({ bufferLastId: lastId, duckdbHighWater: this.highWater }, 'the buffer is behind DuckDB; new rows continue above its high-water mark');
      store.buffer.reanchor(this.highWater);
    } else if (store.buffer.flushedThrough() > this.highWater) {
      this.log.warn({ flushedThrough: store.buffer.flushedThrough(), duckdbHighWater: this.highWater }, 'DuckDB is behind the buffer (analytics.duckdb lost or restored); appending the buffered rows it lacks');
      store.buffer.reanchor(this.highWater);
    } else if (store.buffer.flushedThrough() < this.highWater) {
      // Stopped between DuckDB's commit and the buffer's mark: those rows are in DuckDB already.
      this.log.info({ flushedThrough: store.buffer.flushedThrough(), duckdbHighWater: this.highWater }, 'marking the rows DuckDB took before the last stop as flushed');
      store.buffer.catchUp(this.highWater);
    }
    this.stopped = false;
    this.schedule(0);
  }

  /**
   * Flushes every row committed before the call (or fails), then returns how many records were
   * appended. Rows that arrive meanwhile wait for the next flush: under a steady stream the buffer
   * is never empty, and chasing it would append a few rows per DuckDB transaction.
   */
  async flush(): Promise<number> {
    // One flush at a time: the interval and an explicit call must not append the same rows twice.
    while (this.running) await this.running.catch(() => undefined);
    this.running = this.drain();
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }

  /**
   * Stops the interval after the flush in progress, then flushes what is left. Safe to call twice.
   * A flusher that never started has no high-water mark from DuckDB, so it flushes nothing.
   */
  async stop(): Promise<void> {
    if (this.stopped) {
      while (this.running) await this.running.catch(() => undefined);
      return;
    }
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush().catch((err: unknown) => this.log.error({ err }, 'final flush failed'));
  }

  /**
   * Runs `fn` with the flusher held after the flush in progress: no record moves into DuckDB and
   * no buffer row is pruned meanwhile, so a backup of DuckDB and then of SQLite sees the same
   * high-water mark, and every row above it is still in the buffer. Ingest goes on into the buffer.
   */
  async pausedWhile<T>(fn: () => Promise<T>): Promise<T> {
    this.holds++;
    try {
      while (this.running) await this.running.catch(() => undefined);
      return await fn();
    } finally {
      this.holds--;
    }
  }

  status(): FlusherStatus {
    return {
      high_water: this.highWater,
      last_flush_at: this.lastFlushAt?.toISOString() ?? null,
      last_error: this.lastError,
      failures: this.failures,
      quarantined: this.options.store.quarantine.count(),
    };
  }

  /** Rows were inserted (or a purge queued): a sleeping flusher flushes within the interval. */
  private wake(): void {
    this.woken = true;
    if (this.idle) this.schedule(this.options.intervalMs);
  }

  private schedule(delayMs: number, idle = false): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.idle = idle;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.idle = false;
      if (this.holds > 0) return this.schedule(this.options.intervalMs);
      this.woken = false;
      this.flush()
        .catch(() => undefined) // counted and logged in drain()
        .finally(() => {
          if (this.failures > 0) this.schedule(Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.failures));
          // Every insert wakes the flusher: when none came during this flush, the buffer is drained.
          else if (this.woken) this.schedule(this.options.intervalMs);
          else this.schedule(IDLE_MS, true);
        });
    }, delayMs);
  }

  private async drain(): Promise<number> {
    let total = 0;
    try {
      const through = this.options.store.buffer.lastId();
      while (this.highWater < through) {
        const appended = await this.flushBatch();
        if (appended < 0) break;
        total += appended;
      }
      await this.purgeHistories();
      this.lastError = null;
      this.failures = 0;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.failures++;
      this.options.metrics.errorsTotal.inc({ component: 'flusher' });
      this.log.error({ err, attempt: this.failures }, 'flush failed; will retry');
      throw err;
    } finally {
      // Device activity and usage are counted from the buffer, whatever DuckDB's state.
      applyDeviceActivity(this.options.store, this.log);
      this.prune();
    }
    return total;
  }

  /** Appends one batch; returns the records appended, or -1 when there was nothing to flush. */
  private async flushBatch(): Promise<number> {
    const { store, analytics, metrics } = this.options;
    const rows = timed(metrics, 'sqlite', 'buffer_read', () =>
      store.buffer.pending(this.highWater, { maxRecords: this.options.batchRecords, maxBytes: BATCH_BYTES }),
    );
    if (rows.length === 0) return -1;
    const end = metrics.flushDuration.startTimer();
    const segments = rows.map((row) => this.segmentOf(row));
    const highWater = rows[rows.length - 1]!.id;
    // Counted before the buffers move to the worker.
    const appended = segments.reduce((n, s) => n + s.count - (s.skip?.length ?? 0), 0);
    try {
      await analytics.appendSegments(segments.map(wire), highWater);
    } catch (err) {
      if (this.failures + 1 < ATTEMPTS_BEFORE_NARROWING || !isDataError(err)) throw err;
      this.log.warn({ err, rows: rows.length }, 'DuckDB keeps refusing a batch; narrowing it down to the records it refuses');
      await this.narrow(segments);
      await analytics.appendSegments(segments.map(wire), highWater);
    }
    this.highWater = highWater;
    timed(metrics, 'sqlite', 'buffer_mark', () => store.buffer.markFlushed(highWater, rows.reduce((n, r) => n + r.messages, 0)));
    end();
    metrics.flushedRecords.inc(appended);
    this.lastFlushAt = new Date();
    return appended;
  }

  /**
   * Purges queued by an admin giving a claimed sensor to another party (devices.register): once
   * DuckDB holds every buffer row the purge covers, the sensor's rows up to it are deleted there.
   * Between appends, so no row of the purge can arrive in DuckDB after it ran.
   */
  private async purgeHistories(): Promise<void> {
    const { store, analytics } = this.options;
    for (const purge of store.devices.pendingPurges()) {
      const next = store.buffer.pending(this.highWater, { maxRecords: 1, maxBytes: 1 })[0];
      if (next !== undefined && next.id <= purge.through_id) return; // not all in DuckDB yet
      await deleteSensorHistory(analytics, purge.device_id, purge.through_id);
      store.devices.purgeDone(purge.id);
      this.log.info({ deviceId: purge.device_id, throughId: purge.through_id }, "purged a claimant's readings from a sensor the admin gave to another party");
    }
  }

  /**
   * A row's records, leaving out those already quarantined and those no store can hold (times
   * outside years 1–9999, values that are not finite), which are quarantined now.
   */
  private segmentOf(row: PendingRow): FlushSegment {
    const columns = readRecordBatch(row.records);
    const skip = new Set(this.options.store.quarantine.recordsOf(row.id));
    for (let i = 0; i < columns.length; i++) {
      if (skip.has(i)) continue;
      const ts = columns.ts[i]!;
      const problem = !(ts >= MIN_TS && ts <= MAX_TS) ? 'time outside years 1 to 9999' : !Number.isFinite(columns.value[i]) ? 'value is not a finite number' : null;
      if (problem) {
        this.quarantine(row.id, columns, i, problem);
        skip.add(i);
      }
    }
    return { bufferId: row.id, source: row.source, records: row.records, columns, count: columns.length, ...(skip.size > 0 ? { skip: [...skip] } : {}) };
  }

  /**
   * Finds, row by row and then record by record, what DuckDB refuses because of the data (a dry
   * run, rolled back), and quarantines those records; the batch then goes in without them. A
   * refusal that is not the data's (I/O, memory) quarantines nothing: it is thrown, and retried.
   */
  private async narrow(segments: FlushSegment[]): Promise<void> {
    const { analytics } = this.options;
    for (let k = 0; k < segments.length; k++) {
      const segment = segments[k]!;
      const err = await analytics.probeSegments([wire(segment)]);
      if (!err) continue;
      if (!isDataError(err)) throw err;
      const skip = new Set(segment.skip);
      const all = Array.from({ length: segment.count }, (_, i) => i);
      for (let i = 0; i < segment.count; i++) {
        if (skip.has(i)) continue;
        const alone = await analytics.probeSegments([wire({ ...segment, skip: all.filter((j) => j !== i) })]);
        if (!alone) continue;
        if (!isDataError(alone)) throw alone;
        this.quarantine(segment.bufferId, segment.columns, i, alone.message);
        skip.add(i);
      }
      segments[k] = { ...segment, skip: [...skip] };
    }
  }

  private quarantine(bufferId: number, columns: RecordColumns, index: number, error: string): void {
    this.options.store.quarantine.add(bufferId, index, recordAt(columns, index), error);
    this.options.metrics.quarantinedRecords.inc();
    this.log.error({ bufferId, record: index, error }, 'record quarantined: DuckDB cannot store it');
  }

  /**
   * Retention, at most once a minute: rows older than the retention period go once flushed and
   * counted, and (JSON readings) once marked processed; an unprocessed reading stays until a client
   * marks it, however old.
   */
  private prune(): void {
    const now = this.options.now();
    if (now - this.lastPruneAt < 60) return;
    this.lastPruneAt = now;
    const { store } = this.options;
    const removed = store.buffer.prune(Math.min(this.highWater, store.buffer.activityAppliedThrough()), Math.floor(now) - this.options.retentionS);
    if (removed > 0) this.log.info({ removed }, 'pruned buffer rows past retention');
  }
}
