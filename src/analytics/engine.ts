import { DuckDBInstance, type DuckDBConnection, type DuckDBType, type DuckDBValue } from '@duckdb/node-api';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import { ensureDataDir, makePrivate } from '../data-files.js';
import { UnavailableError } from '../errors.js';
import { timedAsync, type Metrics } from '../metrics.js';
import { copyAnalytics, type AnalyticsFacts } from './backup.js';
import { MAX_EXPORTS, exportStatement, streamExport } from './export.js';
import { anomalies, compare, sensorStats, sensors, timeseries } from './queries.js';
import { DEFAULT_QUERY_TIMEOUT_MS, ReaderPool, type Row } from './reader-pool.js';
import { commitBatch } from './commit.js';
import type { CommitFingerprints, CommitRequest, CommitResult, IngestState } from './commit-types.js';
import { readFingerprints, readIngestState } from './ingest-state.js';
import { prepareSchema } from './migrate.js';
import { SeriesIndex } from './series.js';
import type { AnalyticsStore, ExportRequest, RangeFilter, SensorsPage } from './types.js';

export interface AnalyticsEngineOptions {
  /** File path. */
  path: string;
  /** DuckDB memory_limit, e.g. '512MB'. */
  memoryLimit: string;
  threads: number;
  /** Connections for queries (commits have their own). Default 2. */
  readers?: number;
  /** A query (or an export's first byte) taking longer is interrupted: 503. Default 30 s; 0 = no limit. */
  queryTimeoutMs?: number;
  /** Exports running at once (503 beyond). Default MAX_EXPORTS. */
  maxExports?: number;
  metrics?: Metrics;
  logger?: Logger;
}

/** Something that runs parameterised SQL on a reader connection; what queries.ts needs. */
export interface SqlRunner {
  all(op: string, sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<Row[]>;
  exec(op: string, sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<void>;
}

export { MAX_EXPORTS };

/**
 * The DuckDB analytics store. One writer connection, used only by commits (the ingest path),
 * and a small pool of reader connections for queries: readers see committed data only and do
 * not queue behind a commit.
 */
export class AnalyticsEngine implements AnalyticsStore, SqlRunner {
  private writeChain: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;
  /** A backup copy in progress (close waits for it). */
  private backingUp: Promise<unknown> = Promise.resolve();
  /**
   * Running exports by id, each on its own connection (never a reader: queries are not held up);
   * `done` settles once the COPY ended and its connection is closed.
   */
  private readonly exports = new Map<string, { connection?: DuckDBConnection; done: Promise<void> }>();

  private constructor(
    private readonly path: string,
    private readonly instance: DuckDBInstance,
    private readonly writer: DuckDBConnection,
    private readonly pool: ReaderPool,
    /** For health probes only, so that they never wait for a reader behind user queries. */
    private readonly probe: DuckDBConnection,
    private readonly metrics: Metrics | undefined,
    private readonly logger: Logger | undefined,
    readonly queryTimeoutMs: number,
    private readonly maxExports: number,
    private readonly series: SeriesIndex,
    /** Number of the last commit (the writer's alone, so kept here rather than read back). */
    private batch: number,
  ) {}

  static async open(options: AnalyticsEngineOptions): Promise<AnalyticsEngine> {
    ensureDataDir(dirname(options.path));
    const instance = await DuckDBInstance.create(options.path, {
      memory_limit: options.memoryLimit,
      threads: String(options.threads),
    });
    try {
      const writer = await instance.connect();
      await prepareSchema(writer, options.path);
      // Files of an earlier release, or made under a looser umask (the service's own is 077).
      makePrivate(options.path, `${options.path}.wal`);
      const series = await SeriesIndex.load(writer);
      const { batch } = await readIngestState(writer);
      const queryTimeoutMs = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
      const pool = await ReaderPool.create(instance, options.readers ?? 2, queryTimeoutMs);
      const probe = await instance.connect();
      const logger = options.logger?.child({ component: 'analytics' });
      logger?.info({ path: options.path, memoryLimit: options.memoryLimit, threads: options.threads, series: series.size, batch }, 'analytics store open');
      return new AnalyticsEngine(options.path, instance, writer, pool, probe, options.metrics, logger, queryTimeoutMs, options.maxExports ?? MAX_EXPORTS, series, batch);
    } catch (err) {
      instance.closeSync();
      throw err;
    }
  }

  /** Runs a parameterised read on a pooled connection, timed as `op`. */
  all(op: string, sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<Row[]> {
    return timedAsync(this.metrics, 'duckdb', op, () => this.pool.use((reader) => reader.all(sql, values, types)));
  }

  /** Runs a one-off parameterised statement on a pooled connection, timed as `op`. */
  exec(op: string, sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<void> {
    return timedAsync(this.metrics, 'duckdb', op, () => this.pool.use((reader) => reader.exec(sql, values, types)));
  }

  /**
   * Commits one batch of the ingest path in one DuckDB transaction (commit.ts): all of it, or, when
   * it throws, nothing. Returns the batch's number.
   */
  commit(request: CommitRequest): Promise<CommitResult> {
    if (this.closing) return Promise.reject(new Error('analytics engine is closed'));
    return this.exclusive(() =>
      timedAsync(this.metrics, 'duckdb', 'commit', async () => {
        const batch = this.batch + 1;
        await commitBatch(this.writer, this.series, request, batch);
        this.batch = batch;
        return { batch };
      }),
    );
  }

  /** What the store holds of the ingest path (read once at start). */
  ingestState(): Promise<IngestState> {
    if (this.closing) return Promise.reject(new Error('analytics engine is closed'));
    return this.exclusive(() => readIngestState(this.writer));
  }

  /** Every stored fingerprint with ts ≥ sinceS (Unix seconds), as columns. */
  fingerprints(sinceS: number): Promise<CommitFingerprints> {
    if (this.closing) return Promise.reject(new Error('analytics engine is closed'));
    return this.exclusive(() => readFingerprints(this.writer, sinceS));
  }

  /** Serialises writes on the single writer connection. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writeChain.then(fn, fn);
    this.writeChain = run.catch(() => undefined);
    return run;
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
    return size(this.path) + size(`${this.path}.wal`);
  }

  /** Throws when the store cannot answer a trivial query, on a connection of its own. */
  async healthPing(): Promise<void> {
    if (this.closing) throw new Error('analytics engine is closed');
    await this.probe.run('SELECT 1');
  }

  sensorStats(sensorId: string, filter: RangeFilter = {}) {
    return sensorStats(this, sensorId, filter);
  }

  timeseries(sensorId: string, options: RangeFilter & { interval: string }) {
    return timeseries(this, sensorId, options);
  }

  anomalies(sensorId: string, options: RangeFilter & { threshold?: number; limit?: number } = {}) {
    return anomalies(this, sensorId, options);
  }

  compare(sensorIds: readonly string[], filter: RangeFilter = {}) {
    return compare(this, sensorIds, filter);
  }

  sensors(options: SensorsPage = {}) {
    return sensors(this, options);
  }

  /** An export as a stream (in this thread; the client runs exportToPipe in the worker instead). */
  exportMeasurements(request: ExportRequest) {
    const id = randomUUID();
    return streamExport(request, { run: (path) => this.exportToPipe(request, path, id), cancel: () => this.cancelExport(id) }, this.queryTimeoutMs);
  }

  /** Runs an export's COPY into `path` (a named pipe) on a connection of its own. */
  async exportToPipe(request: ExportRequest, path: string, id: string): Promise<void> {
    if (this.closing) throw new Error('analytics engine is closed');
    if (this.exports.size >= this.maxExports) throw new UnavailableError(`${this.maxExports} exports are running; retry when one has finished`);
    // Registered before the first await, so two calls at once cannot both pass the bound.
    const entry: { connection?: DuckDBConnection; done: Promise<void> } = { done: Promise.resolve() };
    this.exports.set(id, entry);
    entry.done = (async () => {
      const connection = (entry.connection = await this.instance.connect());
      try {
        // Rows in any order (an export has no ORDER BY): DuckDB then writes each chunk as it is
        // made instead of holding chunks back to keep the table's order (memory, first byte).
        await connection.run('SET preserve_insertion_order = false');
        const { sql, values, types } = exportStatement(request, path);
        await timedAsync(this.metrics, 'duckdb', 'export', () => connection.run(sql, values, types));
      } finally {
        connection.closeSync();
      }
    })().finally(() => this.exports.delete(id));
    return entry.done;
  }

  /**
   * Copies the database into a new file at `path` (analytics/backup.ts) on a connection of its
   * own: queries and appends go on meanwhile; the copy is the snapshot the copy began on.
   */
  backupTo(path: string): Promise<AnalyticsFacts> {
    if (this.closing) return Promise.reject(new Error('analytics engine is closed'));
    const run = (async () => {
      const connection = await this.instance.connect();
      // One DuckDB thread for the copy (the setting is the instance's: queries meanwhile get one
      // too), so that on a small machine a core stays free for the service's main thread.
      const threads = String((await connection.runAndReadAll("SELECT current_setting('threads') AS n")).getRowObjectsJS()[0]?.n);
      try {
        await connection.run('SET threads = 1');
        return await timedAsync(this.metrics, 'duckdb', 'backup', () => copyAnalytics(connection, path));
      } finally {
        await connection.run(`SET threads = ${Number(threads)}`).catch((err: unknown) => this.logger?.error({ err }, 'could not reset DuckDB threads after a backup'));
        connection.closeSync();
      }
    })();
    this.backingUp = run.catch(() => undefined);
    return run;
  }

  /** Exports whose COPY is still running. */
  get runningExports(): number {
    return this.exports.size;
  }

  /** Interrupts a running export (time limit, or its client went away). */
  cancelExport(id: string): void {
    this.exports.get(id)?.connection?.interrupt();
  }

  /** Waits for a running commit and running queries, then closes. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.writeChain;
      await this.backingUp;
      const running = [...this.exports.values()];
      for (const e of running) e.connection?.interrupt();
      await Promise.allSettled(running.map((e) => e.done));
      await this.pool.close();
      this.probe.closeSync();
      this.writer.closeSync();
      this.instance.closeSync();
      this.logger?.info('analytics store closed');
    })();
    return this.closing;
  }
}
