import { BusyError, QueryTimeoutError } from '../errors.js';
import type { AnalyticsStore } from './types.js';

/** Who asks (the key of its share: a user id, or `admin`) and when its request arrived (performance.now()). */
export interface Caller {
  key: string;
  arrivedAt: number;
}

export interface AdmissionLimits {
  /** Queries running at once over all callers: the reader connections. */
  running: number;
  /** Queries of one caller running at once. */
  perCallerRunning: number;
  /** Queries of one caller waiting beyond those; more are refused (503, Retry-After). */
  perCallerWaiting: number;
  /** Queries waiting over all callers; more are refused (503, Retry-After). */
  queue: number;
  /** The time limit of a query, counted from its request's arrival: waiting counts. */
  timeoutMs: number;
  /** Exports running at once over all callers, and of one caller; beyond, refused (503, Retry-After). */
  exports: number;
  perCallerExports: number;
}

interface Share {
  running: number;
  waiting: number;
  exports: number;
}

interface Waiter {
  share: Share;
  start: () => void;
}

/**
 * Who gets a DuckDB reader, and who waits, on the main thread before a call goes to the analytics
 * worker: each caller has a share (a few queries running, a few waiting), the wait is bounded over
 * all callers, and the time limit runs from the request's arrival. A caller that sends many heavy
 * queries at once fills its own share and is refused the rest at once; it never holds every
 * reader while another caller waits, as long as its share is below the reader count. Waiters start
 * in arrival order, skipping those whose caller is at its share.
 */
export class Admission {
  private running = 0;
  private exports = 0;
  private readonly shares = new Map<string, Share>();
  private readonly waiting: Waiter[] = [];

  constructor(private readonly limits: AdmissionLimits) {}

  /**
   * Runs fn once the caller may: fn gets the milliseconds left of the time limit. Refuses with
   * BusyError (503) past the caller's share or the queue bound, and with QueryTimeoutError when the
   * limit runs out while waiting.
   */
  async query<T>(caller: Caller, fn: (remainingMs: number) => Promise<T>): Promise<T> {
    const share = this.shareOf(caller.key);
    const { limits } = this;
    if (!this.mayStart(share)) {
      if (share.waiting >= limits.perCallerWaiting) {
        this.forget(caller.key, share);
        throw new BusyError(`${share.running} analytics queries of yours are running and ${share.waiting} waiting; retry when one has finished`);
      }
      if (this.waiting.length >= limits.queue) {
        this.forget(caller.key, share);
        throw new BusyError(`${this.waiting.length} analytics queries are waiting; retry shortly`);
      }
      await this.wait(caller, share);
    } else this.start(share);
    try {
      const remaining = caller.arrivedAt + limits.timeoutMs - performance.now();
      if (remaining <= 0) throw new QueryTimeoutError(limits.timeoutMs);
      return await fn(remaining);
    } finally {
      share.running--;
      this.running--;
      this.forget(caller.key, share);
      this.dispatch();
    }
  }

  /**
   * An export slot for the caller, or BusyError (503): exports are long, so they do not wait. The
   * slot is the caller's until `release` is called (the export's stream closed and its COPY ended).
   */
  exportSlot(caller: Caller): () => void {
    const share = this.shareOf(caller.key);
    if (this.exports >= this.limits.exports || share.exports >= this.limits.perCallerExports) {
      this.forget(caller.key, share);
      const why = share.exports >= this.limits.perCallerExports ? `${share.exports} exports of yours are running` : `${this.exports} exports are running`;
      throw new BusyError(`${why}; retry when one has finished`);
    }
    this.exports++;
    share.exports++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.exports--;
      share.exports--;
      this.forget(caller.key, share);
    };
  }

  private mayStart(share: Share): boolean {
    return this.running < this.limits.running && share.running < this.limits.perCallerRunning;
  }

  private start(share: Share): void {
    this.running++;
    share.running++;
  }

  private wait(caller: Caller, share: Share): Promise<void> {
    share.waiting++;
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        share,
        start: () => {
          clearTimeout(timer);
          share.waiting--;
          this.start(share);
          resolve();
        },
      };
      const timer = setTimeout(
        () => {
          this.waiting.splice(this.waiting.indexOf(waiter), 1);
          share.waiting--;
          this.forget(caller.key, share);
          reject(new QueryTimeoutError(this.limits.timeoutMs));
        },
        Math.max(0, caller.arrivedAt + this.limits.timeoutMs - performance.now()),
      );
      this.waiting.push(waiter);
    });
  }

  /** Starts waiters, oldest first, while readers are free; a waiter whose caller is at its share stays. */
  private dispatch(): void {
    for (let i = 0; i < this.waiting.length && this.running < this.limits.running; ) {
      const waiter = this.waiting[i]!;
      if (this.mayStart(waiter.share)) {
        this.waiting.splice(i, 1);
        waiter.start();
      } else i++;
    }
  }

  private shareOf(key: string): Share {
    let share = this.shares.get(key);
    if (!share) this.shares.set(key, (share = { running: 0, waiting: 0, exports: 0 }));
    return share;
  }

  /** Drops an idle share, so the map holds only callers with something running or waiting. */
  private forget(key: string, share: Share): void {
    if (share.running === 0 && share.waiting === 0 && share.exports === 0) this.shares.delete(key);
  }
}

/**
 * An analytics store whose calls wait their caller's turn: each query runs within its caller's
 * share and the queue bounds, each export holds one of its caller's export slots until it ends.
 * The embedded client admits on its own (it also hands the time left to its worker); this serves a
 * store that has none (the shared mode's PostgreSQL, whose pool bounds the connections).
 */
export function admitted(store: AnalyticsStore, admission: Admission): { forCaller(caller: Caller): AnalyticsStore } {
  return {
    forCaller(caller) {
      const query = <T>(fn: () => Promise<T>) => admission.query(caller, fn);
      return {
        sensorStats: (sensorId, filter) => query(() => store.sensorStats(sensorId, filter)),
        timeseries: (sensorId, options) => query(() => store.timeseries(sensorId, options)),
        anomalies: (sensorId, options) => query(() => store.anomalies(sensorId, options)),
        compare: (sensorIds, filter) => query(() => store.compare(sensorIds, filter)),
        sensors: (options) => query(() => store.sensors(options)),
        exportMeasurements: async (request) => {
          const release = admission.exportSlot(caller);
          try {
            const file = await store.exportMeasurements(request);
            void file.finished.then(release, release);
            return file;
          } catch (err) {
            release();
            throw err;
          }
        },
      };
    },
  };
}
