import { DuckDBInstance, DuckDBTimestampValue, type DuckDBAppender, type DuckDBConnection, type DuckDBType, type DuckDBValue } from '@duckdb/node-api';
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { timedAsync, type Metrics } from '../metrics.js';
import { exportMeasurements } from './export.js';
import { anomalies, compare, sensorStats, sensors, timeseries } from './queries.js';
import { ReaderPool, type Row } from './reader-pool.js';
import { PARTITIONS, PARTITION_TABLES, partitionOf } from './partitions.js';
import { PARTITIONS_CHECK, SCHEMA } from './schema.js';
import type { AnalyticsStore, ExportRequest, MeasurementRow, RangeFilter } from './types.js';

export type { MeasurementRow } from './types.js';

export interface AnalyticsEngineOptions {
  /** File path, or ':memory:' for tests. */
  path: string;
  /** DuckDB memory_limit, e.g. '512MB'. */
  memoryLimit: string;
  threads: number;
  /** Connections for queries (the flusher has its own). Default 2. */
  readers?: number;
  metrics?: Metrics;
  logger?: Logger;
}

/** Something that runs parameterised SQL on a reader connection; what queries.ts and export.ts need. */
export interface SqlRunner {
  all(op: string, sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<Row[]>;
  exec(op: string, sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<void>;
}

/**
 * The DuckDB analytics store. One writer connection, used only by appendBatch (the flusher),
 * and a small pool of reader connections for queries: readers see committed data only and do
 * not queue behind an append.
 */
export class AnalyticsEngine implements AnalyticsStore, SqlRunner {
  private writeChain: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly path: string,
    private readonly instance: DuckDBInstance,
    private readonly writer: DuckDBConnection,
    private readonly pool: ReaderPool,
    private readonly metrics: Metrics | undefined,
    private readonly logger: Logger | undefined,
  ) {}

  static async open(options: AnalyticsEngineOptions): Promise<AnalyticsEngine> {
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    const instance = await DuckDBInstance.create(options.path, {
      memory_limit: options.memoryLimit,
      threads: String(options.threads),
    });
    try {
      const writer = await instance.connect();
      // One transaction: one WAL sync instead of one per statement.
      await writer.run('BEGIN TRANSACTION');
      for (const statement of SCHEMA) await writer.run(statement);
      await writer.run('COMMIT');
      const stored = (await writer.runAndReadAll(PARTITIONS_CHECK)).getRowObjectsJS()[0]?.value;
      if (stored !== String(PARTITIONS)) {
        throw new Error(`${options.path} was written with ${stored} measurement partitions; this build uses ${PARTITIONS}`);
      }
      const pool = await ReaderPool.create(instance, options.readers ?? 2);
      const logger = options.logger?.child({ component: 'analytics' });
      logger?.info({ path: options.path, memoryLimit: options.memoryLimit, threads: options.threads }, 'analytics store open');
      return new AnalyticsEngine(options.path, instance, writer, pool, options.metrics, logger);
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

  /** Highest buffer id whose records are in DuckDB; 0 before the first flush. */
  async highWaterMark(): Promise<number> {
    const rows = await this.all('high_water', 'SELECT high_water FROM ingest_state WHERE id = 1');
    return rows.length > 0 ? Number(rows[0]!.high_water) : 0;
  }

  /**
   * Appends rows and records the high-water buffer id in one DuckDB transaction: after a crash
   * either both are there or neither (the appender takes part in the connection's transaction).
   */
  appendBatch(rows: readonly MeasurementRow[], highWater: number): Promise<void> {
    if (this.closing) return Promise.reject(new Error('analytics engine is closed'));
    if (!Number.isSafeInteger(highWater) || highWater < 0) {
      return Promise.reject(new Error(`high-water mark must be a non-negative integer, got ${highWater}`));
    }
    return this.exclusive(() => timedAsync(this.metrics, 'duckdb', 'append', () => this.appendInTransaction(rows, highWater)));
  }

  private async appendInTransaction(rows: readonly MeasurementRow[], highWater: number): Promise<void> {
    const w = this.writer;
    await w.run('BEGIN TRANSACTION');
    try {
      for (const [partition, part] of byPartition(rows)) {
        const appender = await w.createAppender(PARTITION_TABLES[partition]!);
        try {
          appendRows(appender, part);
          appender.closeSync(); // flushes into the open transaction
        } catch (err) {
          try {
            appender.clear();
            appender.closeSync();
          } catch {
            // The appender is unusable already; the ROLLBACK below discards what it wrote.
          }
          throw err;
        }
      }
      await w.run(
        'INSERT INTO ingest_state (id, high_water) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET high_water = excluded.high_water',
        [highWater],
      );
      await w.run('COMMIT');
    } catch (err) {
      try {
        await w.run('ROLLBACK');
      } catch (rollbackErr) {
        this.logger?.error({ err: rollbackErr }, 'rollback failed');
      }
      throw err;
    }
  }

  /** Serialises writes on the single writer connection. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writeChain.then(fn, fn);
    this.writeChain = run.catch(() => undefined);
    return run;
  }

  /** Bytes of the database file and its WAL; 0 in memory. Cheap: two stat calls. */
  sizeBytes(): number {
    if (this.path === ':memory:') return 0;
    const size = (p: string) => {
      try {
        return statSync(p).size;
      } catch {
        return 0;
      }
    };
    return size(this.path) + size(`${this.path}.wal`);
  }

  /** Throws when the store cannot answer a trivial query. */
  async ping(): Promise<void> {
    await this.all('ping', 'SELECT 1 AS ok');
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

  sensors(options: { sensorIds?: readonly string[] | undefined } = {}) {
    return sensors(this, options);
  }

  exportMeasurements(request: ExportRequest) {
    return exportMeasurements(this, request);
  }

  /** Waits for a running append and running queries, then closes. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.writeChain;
      await this.pool.close();
      this.writer.closeSync();
      this.instance.closeSync();
      this.logger?.info('analytics store closed');
    })();
    return this.closing;
  }
}

/** The rows of each partition, in their original order. */
function byPartition(rows: readonly MeasurementRow[]): Map<number, MeasurementRow[]> {
  const parts = new Map<number, MeasurementRow[]>();
  const cache = new Map<string, number>();
  for (const row of rows) {
    let partition = cache.get(row.sensor_id);
    if (partition === undefined) {
      partition = partitionOf(row.sensor_id);
      cache.set(row.sensor_id, partition);
    }
    const part = parts.get(partition);
    if (part) part.push(row);
    else parts.set(partition, [row]);
  }
  return parts;
}

/** Row by row through the appender; about a million rows a second from JS. */
function appendRows(appender: DuckDBAppender, rows: readonly MeasurementRow[]): void {
  for (const r of rows) {
    appender.appendBigInt(BigInt(r.buffer_id));
    appender.appendTimestamp(new DuckDBTimestampValue(BigInt(Math.round(r.ts * 1e6))));
    appender.appendVarchar(r.sensor_id);
    appender.appendVarchar(r.metric);
    appender.appendDouble(r.value);
    appender.appendVarchar(r.unit);
    if (r.lab_id === null) appender.appendNull();
    else appender.appendVarchar(r.lab_id);
    if (r.model_id === null) appender.appendNull();
    else appender.appendSmallInt(r.model_id);
    appender.appendVarchar(r.source);
    appender.endRow();
  }
}
