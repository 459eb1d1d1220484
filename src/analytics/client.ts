import { statSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import { timedAsync } from '../metrics.js';
import { startWorker } from '../worker-thread.js';
import type { AnalyticsFacts } from './backup.js';
import type { AnalyticsEngineOptions } from './engine.js';
import { randomUUID } from 'node:crypto';
import { MAX_EXPORTS, streamExport, type ExportLimits } from './export.js';
import { Admission, type AdmissionLimits, type Caller } from './admission.js';
import { DEFAULT_QUERY_TIMEOUT_MS, type Row } from './reader-pool.js';
import type { CommitFingerprints, CommitRequest, CommitResult, IngestState } from './commit-types.js';
import { transferablesOf } from './transfer.js';
import type { Anomalies, AnalyticsStore, Comparison, ExportFile, ExportRequest, RangeFilter, SensorList, SensorsPage, SensorStats, Timeseries } from './types.js';

/** `timeoutMs`: what is left of a user query's time limit (counted from its request's arrival). */
export type Call = { id: number; timeoutMs?: number } & (
  | { method: 'all' | 'exec'; args: [op: string, sql: string, values?: unknown[]] }
  | { method: 'ingestState' | 'healthPing' | 'close'; args: [] }
  | { method: 'commit'; args: [request: CommitRequest] }
  | { method: 'fingerprints'; args: [sinceS: number] }
  | { method: 'sensorStats' | 'timeseries' | 'anomalies'; args: [sensorId: string, filter: object] }
  | { method: 'compare'; args: [sensorIds: readonly string[], filter: object] }
  | { method: 'sensors'; args: [filter: object] }
  | { method: 'exportToPipe'; args: [request: ExportRequest, path: string, id: string] }
  | { method: 'cancelExport'; args: [id: string] }
  | { method: 'backupTo'; args: [path: string] }
);

export type Reply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { name: string; message: string; code?: string; statusCode?: number } };

/** What one caller may hold: see Admission; the export bounds are ExportLimits. */
export type CallerLimits = Omit<AdmissionLimits, 'running' | 'timeoutMs' | 'exports'> & ExportLimits;

export type AnalyticsClientOptions = Omit<AnalyticsEngineOptions, 'logger'> & { logger?: Logger; logLevel?: string; limits?: CallerLimits };

/** Without configured limits (tools): shares as large as the pool, no queue bound. */
const UNBOUNDED: CallerLimits = { perCallerRunning: Infinity, perCallerWaiting: Infinity, queue: Infinity, perCallerExports: Infinity };

/** Calls that are reads of the user, timed into ocean_database_query_duration_seconds by name. */
const TIMED: Partial<Record<Call['method'], string>> = {
  commit: 'commit',
  sensorStats: 'stats',
  timeseries: 'timeseries',
  anomalies: 'anomalies',
  compare: 'compare',
  sensors: 'sensors',
};

/**
 * The analytics store as the rest of the service uses it: every call goes to the DuckDB engine in
 * its worker thread (analytics/worker.ts) and comes back as plain data. Errors keep their kind
 * (an AppError keeps its status), and packed records move to the worker without a copy.
 */
export class AnalyticsClient implements AnalyticsStore {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private closing: Promise<void> | undefined;
  private failed: Error | undefined;

  private worker: Worker | undefined;
  private opened: Promise<void> | undefined;

  private readonly admission: Admission;

  constructor(private readonly options: AnalyticsClientOptions) {
    const limits = options.limits ?? UNBOUNDED;
    this.admission = new Admission({
      ...limits,
      running: options.readers ?? 2,
      timeoutMs: options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS,
      exports: options.maxExports ?? MAX_EXPORTS,
    });
  }

  /**
   * The store as one caller's requests use it: each query waits its turn within the caller's share
   * (Admission) and runs on what is left of its time limit; each export holds one of the caller's
   * export slots until it has ended, and is cut off past the export bounds.
   */
  forCaller(caller: Caller): AnalyticsStore {
    const query = <T>(call: Omit<Call, 'id' | 'timeoutMs'>) =>
      this.admission.query(caller, (timeoutMs) => this.call({ ...call, timeoutMs } as Omit<Call, 'id'>) as Promise<T>);
    return {
      sensorStats: (sensorId, filter = {}) => query({ method: 'sensorStats', args: [sensorId, filter] }),
      timeseries: (sensorId, options) => query({ method: 'timeseries', args: [sensorId, options] }),
      anomalies: (sensorId, options = {}) => query({ method: 'anomalies', args: [sensorId, options] }),
      compare: (sensorIds, filter = {}) => query({ method: 'compare', args: [sensorIds, filter] }),
      sensors: (options = {}) => query({ method: 'sensors', args: [options] }),
      exportMeasurements: async (request) => {
        const release = this.admission.exportSlot(caller);
        try {
          const remaining = caller.arrivedAt + (this.options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS) - performance.now();
          const file = await this.exportWithin(request, Math.max(1, remaining));
          void file.finished.then(release);
          return file;
        } catch (err) {
          release();
          throw err;
        }
      },
    };
  }

  /**
   * Starts the worker and opens the store in it, once; every call does this first. Rejects as the
   * engine's open would (a file of another partition count, a locked file).
   */
  open(): Promise<void> {
    this.opened ??= (async () => {
      const { metrics: _metrics, logger, logLevel, limits: _limits, ...engineOptions } = this.options;
      const worker = startWorker(import.meta.url, 'worker', { workerData: { ...engineOptions, logLevel: logLevel ?? logger?.level ?? 'info' } });
      this.listen(worker);
      // The worker answers id -1 once the store is open (or failed to open).
      try {
        await new Promise<void>((resolve, reject) => this.pending.set(-1, { resolve: () => resolve(), reject }));
      } catch (err) {
        this.failed = err as Error;
        await worker.terminate();
        throw err;
      }
    })();
    return this.opened;
  }

  private listen(worker: Worker): void {
    this.worker = worker;
    worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (reply.ok) p.resolve(reply.value);
      else p.reject(errorOf(reply.error));
    });
    const fail = (err: Error) => {
      this.failed ??= err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`analytics worker exited with code ${code}`)));
  }

  all(op: string, sql: string, values?: readonly unknown[]): Promise<Row[]> {
    return this.call({ method: 'all', args: [op, sql, ...(values ? [[...values]] : [])] as [string, string, unknown[]?] }, op) as Promise<Row[]>;
  }

  exec(op: string, sql: string, values?: readonly unknown[]): Promise<void> {
    return this.call({ method: 'exec', args: [op, sql, ...(values ? [[...values]] : [])] as [string, string, unknown[]?] }, op) as Promise<void>;
  }

  /**
   * Commits one batch of the ingest path in one DuckDB transaction (all or nothing); its number.
   * The segments' record buffers and the fingerprint columns' buffers move to the worker: the
   * caller must not use them afterwards.
   */
  commit(request: CommitRequest): Promise<CommitResult> {
    const f = request.fingerprints;
    const views: ArrayBufferView[] = [...request.segments.map((s) => s.records), ...(f ? [f.fp, f.ts, f.tag] : [])];
    return this.call({ method: 'commit', args: [request] }, undefined, transferablesOf(views)) as Promise<CommitResult>;
  }

  /** What the store holds of the ingest path (read once at start). */
  ingestState(): Promise<IngestState> {
    return this.call({ method: 'ingestState', args: [] }) as Promise<IngestState>;
  }

  /** Every stored fingerprint with ts ≥ sinceS (Unix seconds), as columns (moved from the worker, not copied). */
  fingerprints(sinceS: number): Promise<CommitFingerprints> {
    return this.call({ method: 'fingerprints', args: [sinceS] }) as Promise<CommitFingerprints>;
  }

  /** A trivial query on a connection of the engine's own, never queued behind user queries. */
  healthPing(): Promise<void> {
    return this.call({ method: 'healthPing', args: [] }) as Promise<void>;
  }

  sensorStats(sensorId: string, filter: RangeFilter = {}): Promise<SensorStats> {
    return this.call({ method: 'sensorStats', args: [sensorId, filter] }) as Promise<SensorStats>;
  }

  timeseries(sensorId: string, options: RangeFilter & { interval: string }): Promise<Timeseries> {
    return this.call({ method: 'timeseries', args: [sensorId, options] }) as Promise<Timeseries>;
  }

  anomalies(sensorId: string, options: RangeFilter & { threshold?: number; limit?: number } = {}): Promise<Anomalies> {
    return this.call({ method: 'anomalies', args: [sensorId, options] }) as Promise<Anomalies>;
  }

  compare(sensorIds: readonly string[], filter: RangeFilter = {}): Promise<Comparison> {
    return this.call({ method: 'compare', args: [sensorIds, filter] }) as Promise<Comparison>;
  }

  sensors(options: SensorsPage = {}): Promise<SensorList> {
    return this.call({ method: 'sensors', args: [options] }) as Promise<SensorList>;
  }

  /** Streams an export: the worker's DuckDB writes into a named pipe that this thread reads (export.ts). */
  exportMeasurements(request: ExportRequest): Promise<ExportFile> {
    return this.exportWithin(request, this.options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS);
  }

  private exportWithin(request: ExportRequest, firstByteMs: number): Promise<ExportFile> {
    const id = randomUUID();
    const { maxDurationMs, minBytesPerS, rateWindowMs } = this.options.limits ?? {};
    return streamExport(
      request,
      {
        run: (path) => this.call({ method: 'exportToPipe', args: [request, path, id] }) as Promise<void>,
        cancel: () => void this.call({ method: 'cancelExport', args: [id] }).catch(() => undefined),
      },
      firstByteMs,
      {
        ...(maxDurationMs !== undefined ? { maxDurationMs } : {}),
        ...(minBytesPerS !== undefined ? { minBytesPerS } : {}),
        ...(rateWindowMs !== undefined ? { rateWindowMs } : {}),
      },
    );
  }

  /** Copies the database into a new file at `path` (a backup), in the worker; what the copy holds. */
  backupTo(path: string): Promise<AnalyticsFacts> {
    return this.call({ method: 'backupTo', args: [path] }) as Promise<AnalyticsFacts>;
  }

  /** Bytes of the database file and its WAL. Cheap: two stat calls. */
  sizeBytes(): number {
    const size = (p: string) => {
      try {
        return statSync(p).size;
      } catch {
        return 0;
      }
    };
    const { path } = this.options;
    return size(path) + size(`${path}.wal`);
  }

  /** Waits for running work, closes the store and stops the worker (if it ever started). Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.opened) return;
      await this.opened.catch(() => undefined);
      try {
        if (!this.failed) await this.send({ method: 'close', args: [] }, []);
      } finally {
        await this.worker?.terminate();
      }
    })();
    return this.closing;
  }

  private call(call: Omit<Call, 'id'>, op?: string, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.closing) return Promise.reject(new Error('analytics engine is closed'));
    const run = async () => {
      await this.open();
      return this.send(call, transfer);
    };
    const name = op ?? TIMED[call.method];
    return name === undefined ? run() : timedAsync(this.options.metrics, 'duckdb', name, run);
  }

  private send(call: Omit<Call, 'id'>, transfer: ArrayBuffer[]): Promise<unknown> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<unknown>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker!.postMessage({ ...call, id }, transfer);
    });
  }
}

/** An error from the worker as the kind it was: an AppError keeps its code and status. */
function errorOf(e: { name: string; message: string; code?: string; statusCode?: number }): Error {
  if (e.code !== undefined && e.statusCode !== undefined) return new AppError(e.code, e.statusCode, e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}
