import type { Logger } from 'pino';
import type { AnalyticsClient } from '../analytics/client.js';
import type { CommitFingerprints, CommitRequest, CommitSegment, IngestState } from '../analytics/commit-types.js';
import type { Metrics } from '../metrics.js';
import { recordCountOf } from '../operational/record-batch.js';
import type { OperationalStore } from '../operational/store.js';
import type { Effects, SideEffects } from './side-effects.js';

/** What one caller (a stream batch, an HTTP body of frames) brings to a commit. */
export interface CommitPart {
  segments: CommitSegment[];
  fingerprints?: CommitFingerprints;
  effects?: Effects;
  /** Last stream entry id of the part. */
  position?: string;
}

interface Queued extends CommitPart {
  seq: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Purge {
  id: number;
  sensorId: string;
  /** The claimant's readings in the work queue are those up to this id. */
  throughId: number;
  /** Parts queued before the purge was (they may hold the claimant's readings). */
  atSeq: number;
}

export interface CommitterStatus {
  batch: number;
  queue_through: number;
  position: string | null;
  last_commit_at: string | null;
  last_error: string | null;
  /** Consecutive failed commits. */
  failures: number;
}

/** Work-queue rows carried per commit at most (an upgrade may leave many behind). */
const QUEUE_ROWS_PER_COMMIT = 2000;
/** The fingerprints that left the replay window are deleted at most this often. */
const FORGET_EVERY_S = 30;
const MAX_BACKOFF_MS = 30_000;
/**
 * Under a steady trickle, the least time between two commits of JSON readings alone. They are
 * durable in SQLite already; a DuckDB commit costs milliseconds of CPU, so at 333 readings/s a
 * commit every 50 ms cost more than everything else a reading does (measured in bench:http).
 */
const QUEUE_DELAY_MS = 1000;

const concat = <T extends Uint8Array | Uint32Array | Int32Array>(arrays: T[], make: (n: number) => T): T => {
  const out = make(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
};

/** A buffer that can move to the analytics worker: one that spans its own ArrayBuffer (never Node's shared pool). */
const movable = (b: Uint8Array): Uint8Array => (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : new Uint8Array(b));

/**
 * The one writer of the ingest path into the analytics store. Parts submitted while a commit runs
 * wait and go together in the next one (group commit): one DuckDB transaction holds their readings,
 * the accepted frames' fingerprints, the side effects owed to SQLite, work-queue readings not yet
 * in analytics, queued history purges and the stream position. One commit runs at a time, so the
 * work-queue mark and the purges stay in order with the readings around them.
 */
export class Committer {
  private queue: Queued[] = [];
  private seq = 0;
  private running = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private queueTimer: NodeJS.Timeout | undefined;
  /** performance.now() when the last commit ended. */
  private lastCommitEnd = -Infinity;
  private purges: Purge[] = [];
  private readonly done = new Set<number>();
  /** Work-queue rows up to this id are in analytics (confirmed by a commit). */
  private queueThrough = 0;
  private queueBacklog = false;
  private batch = 0;
  private position: string | null = null;
  private lastForgetAt = 0;
  /** The last effectsAppliedThrough a commit carried. */
  private appliedSent = 0;
  private lastCommitAt: Date | null = null;
  private lastError: string | null = null;
  private failures = 0;
  private started = false;
  private idle: Array<() => void> = [];
  private readonly log: Logger;

  constructor(
    private readonly options: {
      analytics: AnalyticsClient;
      store: OperationalStore;
      effects: SideEffects;
      metrics: Metrics;
      logger: Logger;
      /** Unix seconds. */
      now: () => number;
      /** Seconds a fingerprint is kept after its frame's header time. */
      replayWindowS: number;
    },
  ) {
    this.log = options.logger.child({ component: 'committer' });
    options.store.buffer.onInsert(() => this.kickSoon());
    options.store.devices.onPurgeQueued(() => {
      this.loadPurges();
      this.kick();
    });
  }

  /**
   * Takes up from what DuckDB holds: an ocean.db restored from an older backup than
   * analytics.duckdb gets its work-queue ids moved above DuckDB's mark; readings SQLite holds
   * above it are committed now.
   */
  start(state: IngestState): Promise<void> {
    const { store } = this.options;
    this.queueThrough = state.queueThrough;
    this.batch = state.batch;
    this.position = state.position;
    for (const id of state.purgesDone) this.done.add(id);
    if (store.buffer.lastId() < state.queueThrough) {
      this.log.warn({ queueLastId: store.buffer.lastId(), duckdbQueueThrough: state.queueThrough }, 'the work queue is behind DuckDB; new readings continue above its mark');
      store.buffer.reanchor(state.queueThrough);
    }
    this.started = true;
    this.loadPurges();
    this.kick();
    return this.whenIdle();
  }

  /** Commits the part with whatever else is waiting; resolves once DuckDB has committed it. */
  submit(part: CommitPart): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ...part, seq: ++this.seq, resolve, reject });
      this.kick();
    });
  }

  /** Resolves when nothing is waiting or running (a failed commit counts as done). */
  whenIdle(): Promise<void> {
    if (!this.running && this.queue.length === 0 && !this.hasQueueRows() && this.purges.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  status(): CommitterStatus {
    return {
      batch: this.batch,
      queue_through: this.queueThrough,
      position: this.position,
      last_commit_at: this.lastCommitAt?.toISOString() ?? null,
      last_error: this.lastError,
      failures: this.failures,
    };
  }

  /** Work-queue rows not yet in analytics. */
  backlog(): number {
    return this.options.store.buffer.countAfter(this.queueThrough);
  }

  stop(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearTimeout(this.queueTimer);
    this.queueTimer = undefined;
    this.started = false;
    return this.running ? new Promise((resolve) => this.idle.push(resolve)) : Promise.resolve();
  }

  private hasQueueRows(): boolean {
    return this.started && this.options.store.buffer.lastId() > this.queueThrough;
  }

  private loadPurges(): void {
    const known = new Set(this.purges.map((p) => p.id));
    for (const p of this.options.store.devices.pendingPurges()) {
      if (known.has(p.id)) continue;
      if (this.done.has(p.id)) {
        this.options.store.devices.purgeDone(p.id); // DuckDB ran it; SQLite had not heard
        continue;
      }
      this.purges.push({ id: p.id, sensorId: p.device_id, throughId: p.through_id, atSeq: this.seq });
    }
  }

  /**
   * Work-queue readings are durable in SQLite already. A reading after a quiet spell is committed
   * at once (a client that reads right after it wrote sees it); under a steady trickle, readings
   * wait until QUEUE_DELAY_MS after the last commit and share the next one.
   */
  private kickSoon(): void {
    if (this.queueTimer) return;
    const wait = this.lastCommitEnd + QUEUE_DELAY_MS - performance.now();
    if (wait <= 0 && !this.running) return this.kick();
    this.queueTimer = setTimeout(() => {
      this.queueTimer = undefined;
      this.kick();
    }, Math.max(wait, 1));
  }

  private kick(): void {
    if (this.running || this.retryTimer || !this.started) return;
    this.running = true;
    queueMicrotask(() => void this.run());
  }

  /**
   * Commits while parts or purges wait. Work-queue rows ride along with every commit; rows stored
   * during the last one wait for their own delay (kickSoon) rather than get a commit each.
   */
  private async run(): Promise<void> {
    try {
      let first = true;
      // A full page of work-queue rows means a backlog (an upgrade, a long outage): no delay then.
      while (this.started && (this.queue.length > 0 || this.purges.length > 0 || ((first || this.queueBacklog) && this.hasQueueRows()))) {
        first = false;
        if (!(await this.commitOnce())) return;
      }
      if (this.hasQueueRows()) this.kickSoon();
    } finally {
      this.running = false;
      if (!this.retryTimer && !this.queueTimer) for (const resolve of this.idle.splice(0)) resolve();
    }
  }

  /** One commit of what is waiting. False when it failed (a retry is scheduled). */
  private async commitOnce(): Promise<boolean> {
    const { store, analytics, metrics, effects: sideEffects } = this.options;
    // A purge waits for the parts queued before it and the work-queue rows up to its mark, so the
    // claimant's readings are in DuckDB when it runs, and nothing committed after it is touched.
    const purge = this.purges[0];
    let parts = this.queue;
    let queueLimit = store.buffer.lastId();
    const runPurges: Purge[] = [];
    if (purge) {
      const before = this.queue.filter((p) => p.seq <= purge.atSeq);
      if (before.length > 0 || this.queueThrough < Math.min(purge.throughId, queueLimit)) {
        parts = before;
        queueLimit = Math.min(queueLimit, purge.throughId);
      } else runPurges.push(purge);
    }
    this.queue = parts === this.queue ? [] : this.queue.filter((p) => !parts.includes(p));

    const rows = queueLimit > this.queueThrough ? store.buffer.rowsBetween(this.queueThrough, queueLimit, QUEUE_ROWS_PER_COMMIT) : [];
    const queueThrough = rows.length === QUEUE_ROWS_PER_COMMIT ? rows[rows.length - 1]!.id : Math.max(this.queueThrough, queueLimit);
    const segments = [...parts.flatMap((p) => p.segments), ...rows.map((r) => ({ source: r.source, records: r.records }))].map((s) => ({
      source: s.source,
      records: movable(s.records),
    }));
    const prints = parts.flatMap((p) => (p.fingerprints ? [p.fingerprints] : []));
    const effects = mergeEffects(parts, this.options.now());
    const position = parts.reduce<string | undefined>((at, p) => p.position ?? at, undefined);
    const now = this.options.now();
    const forget = now - this.lastForgetAt >= FORGET_EVERY_S;
    const applied = sideEffects.appliedThrough;
    const request: CommitRequest = {
      segments,
      ...(prints.length > 0
        ? {
            fingerprints: {
              fp: concat(prints.map((f) => f.fp), (n) => new Uint8Array(n)),
              ts: concat(prints.map((f) => f.ts), (n) => new Uint32Array(n)),
              tag: concat(prints.map((f) => f.tag), (n) => new Int32Array(n)),
            },
          }
        : {}),
      queueThrough,
      ...(effects ? { effects: JSON.stringify(effects) } : {}),
      // Effects rows SQLite has applied go, when there are new ones (a DELETE per commit costs).
      ...(applied > this.appliedSent ? { effectsAppliedThrough: applied } : {}),
      ...(position !== undefined ? { position } : {}),
      ...(forget ? { forgetBefore: Math.floor(now - this.options.replayWindowS) } : {}),
      ...(runPurges.length > 0 ? { purges: runPurges.map((p) => ({ id: p.id, sensorId: p.sensorId })) } : {}),
    };
    // Counted now: the commit moves the segments' buffers to the analytics worker (detached here).
    const records = segments.reduce((n, s) => n + recordCountOf(s.records), 0);
    const end = metrics.commitDuration.startTimer();
    try {
      const { batch } = await analytics.commit(request);
      end();
      this.lastCommitEnd = performance.now();
      this.batch = batch;
      this.queueThrough = queueThrough;
      this.queueBacklog = rows.length === QUEUE_ROWS_PER_COMMIT;
      if (position !== undefined) this.position = position;
      if (forget) this.lastForgetAt = now;
      this.appliedSent = Math.max(this.appliedSent, applied);
      this.lastCommitAt = new Date();
      this.lastError = null;
      this.failures = 0;
      for (const p of runPurges) {
        this.done.add(p.id);
        this.purges.shift();
        try {
          store.devices.purgeDone(p.id);
        } catch (err) {
          this.log.warn({ err }, 'could not mark a purge done in SQLite; DuckDB has it');
        }
        this.log.info({ deviceId: p.sensorId }, "purged a claimant's readings from a sensor the admin gave to another party");
      }
      if (effects) sideEffects.add(batch, effects);
      metrics.committedRecords.inc(records);
      for (const p of parts) p.resolve();
      return true;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.failures++;
      metrics.errorsTotal.inc({ component: 'committer' });
      this.log.error({ err, attempt: this.failures }, 'analytics commit failed');
      for (const p of parts) p.reject(err);
      // Work-queue rows and purges are retried here; parts are their callers' to retry.
      if (this.hasQueueRows() || this.purges.length > 0) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.kick();
        }, Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.failures));
        return false;
      }
      return true;
    }
  }
}


function mergeEffects(parts: readonly CommitPart[], at: number): Effects | undefined {
  const withEffects = parts.filter((p) => p.effects && (p.effects.activity.length > 0 || p.effects.events.length > 0));
  if (withEffects.length === 0) return undefined;
  if (withEffects.length === 1) return withEffects[0]!.effects;
  return {
    at: Math.floor(at),
    activity: withEffects.flatMap((p) => p.effects!.activity),
    events: withEffects.flatMap((p) => p.effects!.events),
  };
}
