import bindings from '@duckdb/node-bindings';
import {
  BIGINT,
  DOUBLE,
  DuckDBDataChunk,
  DuckDBInstance,
  SMALLINT,
  TIMESTAMP,
  VARCHAR,
  type DuckDBAppender,
  type DuckDBConnection,
  type DuckDBType,
  type DuckDBValue,
} from '@duckdb/node-api';
import { RecordBatchBuilder, readRecordBatch, type RecordColumns } from '../operational/record-batch.js';

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
import { PARTITIONS, PARTITION_TABLES, partitionOf } from './partitions.js';
import { PARTITIONS_CHECK, SCHEMA } from './schema.js';
import type { AnalyticsStore, ExportRequest, MeasurementRow, RangeFilter, SensorsPage } from './types.js';

export type { MeasurementRow } from './types.js';

export interface AnalyticsEngineOptions {
  /** File path, or ':memory:' for tests. */
  path: string;
  /** DuckDB memory_limit, e.g. '512MB'. */
  memoryLimit: string;
  threads: number;
  /** Connections for queries (the flusher has its own). Default 2. */
  readers?: number;
  /** A query (or an export's first byte) taking longer is interrupted: 503. Default 30 s; 0 = no limit. */
  queryTimeoutMs?: number;
  /** Exports running at once (503 beyond). Default MAX_EXPORTS. */
  maxExports?: number;
  metrics?: Metrics;
  logger?: Logger;
}

/** Something that runs parameterised SQL on a reader connection; what queries.ts needs (exec: loaders in tests and benchmarks). */
export interface SqlRunner {
  all(op: string, sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<Row[]>;
  exec(op: string, sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<void>;
}

export { MAX_EXPORTS };

/**
 * The DuckDB analytics store. One writer connection, used only by appendBatch (the flusher),
 * and a small pool of reader connections for queries: readers see committed data only and do
 * not queue behind an append.
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
  ) {}

  static async open(options: AnalyticsEngineOptions): Promise<AnalyticsEngine> {
    if (options.path !== ':memory:') ensureDataDir(dirname(options.path));
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
      // Files of an earlier release, or made under a looser umask (the service's own is 077).
      if (options.path !== ':memory:') makePrivate(options.path, `${options.path}.wal`);
      const stored = (await writer.runAndReadAll(PARTITIONS_CHECK)).getRowObjectsJS()[0]?.value;
      if (stored !== String(PARTITIONS)) {
        throw new Error(`${options.path} was written with ${stored} measurement partitions; this build uses ${PARTITIONS}`);
      }
      const queryTimeoutMs = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
      const pool = await ReaderPool.create(instance, options.readers ?? 2, queryTimeoutMs);
      const probe = await instance.connect();
      const logger = options.logger?.child({ component: 'analytics' });
      logger?.info({ path: options.path, memoryLimit: options.memoryLimit, threads: options.threads }, 'analytics store open');
      return new AnalyticsEngine(options.path, instance, writer, pool, probe, options.metrics, logger, queryTimeoutMs, options.maxExports ?? MAX_EXPORTS);
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
    // Not `WHERE id = 1`: DuckDB keeps a prepared primary-key lookup planned on an empty table
    // answering empty after rows arrive (seen on 1.5.6); an aggregate is planned afresh each time.
    const rows = await this.all('high_water', 'SELECT max(high_water) AS high_water FROM ingest_state');
    return rows[0]?.high_water == null ? 0 : Number(rows[0].high_water);
  }

  /**
   * Appends rows and records the high-water buffer id in one DuckDB transaction: after a crash
   * either both are there or neither (the appender takes part in the connection's transaction).
   * Rows as objects, for tests and tools; the flusher appends packed segments.
   */
  appendBatch(rows: readonly MeasurementRow[], highWater: number): Promise<void> {
    let segments: Segment[];
    try {
      segments = segmentsOf(rows);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.appendSegments(segments, highWater);
  }

  /** Appends packed records (one segment per buffer row) and the high-water mark in one transaction. */
  appendSegments(segments: readonly Segment[], highWater: number): Promise<void> {
    if (this.closing) return Promise.reject(new Error('analytics engine is closed'));
    if (!Number.isSafeInteger(highWater) || highWater < 0) {
      return Promise.reject(new Error(`high-water mark must be a non-negative integer, got ${highWater}`));
    }
    return this.exclusive(() => timedAsync(this.metrics, 'duckdb', 'append', () => this.appendInTransaction(segments, highWater)));
  }

  /** Appends the segments in a transaction that is always rolled back: the error DuckDB gives, or null. */
  probeSegments(segments: readonly Segment[]): Promise<Error | null> {
    return this.exclusive(async () => {
      try {
        await this.appendInTransaction(segments, undefined);
        return null;
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      }
    });
  }

  private async appendInTransaction(segments: readonly Segment[], highWater: number | undefined): Promise<void> {
    const w = this.writer;
    await w.run('BEGIN TRANSACTION');
    try {
      for (const [partition, parts] of byPartition(segments)) {
        const appender = await w.createAppender(PARTITION_TABLES[partition]!);
        try {
          appendParts(appender, parts);
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
      if (highWater === undefined) {
        await w.run('ROLLBACK'); // a probe
        return;
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

  /** Throws when the store cannot answer a trivial query (on a reader, as user queries run). */
  async ping(): Promise<void> {
    await this.all('ping', 'SELECT 1 AS ok');
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

  /** Waits for a running append and running queries, then closes. Safe to call twice. */
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

/** Packed records of one buffer row, with what every record of that row shares. */
export interface Segment {
  bufferId: number;
  source: string;
  columns: RecordColumns;
  /** Record indexes to leave out (quarantined). */
  skip?: ReadonlySet<number>;
}

/** The records of one segment that go to one partition. */
interface Part {
  segment: Segment;
  indexes: Uint32Array;
}

/** Each partition's records, segment by segment, in their original order. */
function byPartition(segments: readonly Segment[]): Map<number, Part[]> {
  const parts = new Map<number, Part[]>();
  for (const segment of segments) {
    const c = segment.columns;
    const partitionOfString = new Int8Array(c.strings.length).fill(-1);
    const lists: number[][] = [];
    for (let i = 0; i < c.length; i++) {
      if (segment.skip?.has(i)) continue;
      const s = c.sensor[i]!;
      let p = partitionOfString[s]!;
      if (p < 0) p = partitionOfString[s] = partitionOf(c.strings[s]!);
      (lists[p] ??= []).push(i);
    }
    lists.forEach((list, p) => {
      if (!list) return;
      const part = { segment, indexes: Uint32Array.from(list) };
      const existing = parts.get(p);
      if (existing) existing.push(part);
      else parts.set(p, [part]);
    });
  }
  return parts;
}

const COLUMN_TYPES = [BIGINT, TIMESTAMP, VARCHAR, VARCHAR, DOUBLE, VARCHAR, VARCHAR, SMALLINT, VARCHAR];
/** DuckDB's vector size: a data chunk holds at most this many rows. */
const CHUNK_ROWS = 2048;
/** Bytes of DuckDB's string_t (C API duckdb_string_t): a length and 12 inlined bytes, or a prefix and a pointer. */
const STRING_T = 16;
const INLINE_BYTES = 12;

/** A column of a chunk being filled: its bytes, written in place, then copied into the vector once. */
class ChunkColumns {
  readonly bufferId = new Int32Array(CHUNK_ROWS * 2);
  readonly ts = new Int32Array(CHUNK_ROWS * 2);
  readonly value = new Float64Array(CHUNK_ROWS);
  readonly model = new Int16Array(CHUNK_ROWS);
  /** sensor, metric, unit, lab, source: string_t words. */
  readonly strings = [0, 1, 2, 3, 4].map(() => new Int32Array((CHUNK_ROWS * STRING_T) / 4));
  /** Validity bits of lab (3) and model; 1 = a value. */
  readonly labValid = new BigUint64Array(CHUNK_ROWS / 64);
  readonly modelValid = new BigUint64Array(CHUNK_ROWS / 64);
  /** Strings longer than 12 bytes: [column, row, bytes]; assigned one by one after the copy. */
  long: Array<[number, number, Uint8Array]> = [];
  anyNullLab = false;
  anyNullModel = false;

  reset(): void {
    this.labValid.fill(~0n);
    this.modelValid.fill(~0n);
    this.long = [];
    this.anyNullLab = false;
    this.anyNullModel = false;
  }
}

/** A string as DuckDB's string_t words when it fits inline (≤ 12 UTF-8 bytes), else its bytes. */
type EncodedString = { words: Int32Array } | { bytes: Uint8Array };
const utf8 = new TextEncoder();
function encodeString(text: string): EncodedString {
  const bytes = utf8.encode(text);
  if (bytes.length > INLINE_BYTES) return { bytes };
  const t = new Uint8Array(STRING_T);
  t[0] = bytes.length; // the length, little-endian; at most 12
  t.set(bytes, 4);
  return { words: new Int32Array(t.buffer) };
}

/** Each segment's strings, encoded once however many partitions its records go to. */
const encodedStrings = new WeakMap<RecordColumns, EncodedString[]>();
function encodedOf(c: RecordColumns): EncodedString[] {
  let e = encodedStrings.get(c);
  if (!e) {
    e = c.strings.map(encodeString);
    encodedStrings.set(c, e);
  }
  return e;
}

/** A safe integer as an int64's two 32-bit halves, little-endian: no BigInt per row. */
function setInt64(words: Int32Array, row: number, value: number): void {
  const hi = Math.floor(value / 4294967296);
  words[row * 2] = (value - hi * 4294967296) | 0;
  words[row * 2 + 1] = hi | 0;
}

/**
 * Column by column into data chunks, writing each column's bytes in place and handing them to
 * DuckDB in one copy per column: numbers as they are, strings as DuckDB's own string_t (short
 * strings, nearly all of ours, are inlined in it), so no value is converted on its own. Strings
 * longer than 12 bytes are assigned one by one.
 */
function appendParts(appender: DuckDBAppender, parts: readonly Part[]): void {
  const cols = new ChunkColumns();
  const chunk = DuckDBDataChunk.create(COLUMN_TYPES, CHUNK_ROWS);
  const vectors = COLUMN_TYPES.map((_, i) => bindings.data_chunk_get_vector(chunk.chunk, i));
  let n = 0;
  const emit = () => {
    if (n === 0) return;
    copy(vectors[0]!, cols.bufferId, n * 8);
    copy(vectors[1]!, cols.ts, n * 8);
    copy(vectors[2]!, cols.strings[0]!, n * STRING_T);
    copy(vectors[3]!, cols.strings[1]!, n * STRING_T);
    copy(vectors[4]!, cols.value, n * 8);
    copy(vectors[5]!, cols.strings[2]!, n * STRING_T);
    copy(vectors[6]!, cols.strings[3]!, n * STRING_T);
    copy(vectors[7]!, cols.model, n * 2);
    copy(vectors[8]!, cols.strings[4]!, n * STRING_T);
    for (const [column, row, bytes] of cols.long) bindings.vector_assign_string_element_len(vectors[[2, 3, 5, 6, 8][column]!]!, row, bytes);
    if (cols.anyNullLab) validity(vectors[6]!, cols.labValid);
    if (cols.anyNullModel) validity(vectors[7]!, cols.modelValid);
    bindings.data_chunk_set_size(chunk.chunk, n);
    appender.appendDataChunk(chunk);
    // A vector made writable for nulls stays so: mark every row valid again for the next chunk.
    if (cols.anyNullLab) validity(vectors[6]!, cols.labValid.fill(~0n));
    if (cols.anyNullModel) validity(vectors[7]!, cols.modelValid.fill(~0n));
    cols.reset();
    n = 0;
  };
  cols.reset();
  for (const { segment, indexes } of parts) {
    const c = segment.columns;
    const encoded = encodedOf(c);
    const source = encodeString(segment.source);
    const put = (column: number, row: number, e: EncodedString) => {
      if ('words' in e) cols.strings[column]!.set(e.words, (row * STRING_T) / 4);
      else cols.long.push([column, row, e.bytes]);
    };
    for (const i of indexes) {
      if (n === CHUNK_ROWS) emit();
      setInt64(cols.bufferId, n, segment.bufferId);
      setInt64(cols.ts, n, Math.round(c.ts[i]! * 1e6));
      cols.value[n] = c.value[i]!;
      put(0, n, encoded[c.sensor[i]!]!);
      put(1, n, encoded[c.metric[i]!]!);
      put(2, n, encoded[c.unit[i]!]!);
      const lab = c.lab[i]!;
      if (lab < 0) {
        cols.labValid[n >> 6]! &= ~(1n << BigInt(n & 63));
        cols.anyNullLab = true;
        cols.strings[3]!.fill(0, (n * STRING_T) / 4, ((n + 1) * STRING_T) / 4);
      } else put(3, n, encoded[lab]!);
      const model = c.model[i]!;
      if (model < 0) {
        cols.modelValid[n >> 6]! &= ~(1n << BigInt(n & 63));
        cols.anyNullModel = true;
      }
      cols.model[n] = model < 0 ? 0 : model;
      put(4, n, source);
      n++;
    }
  }
  emit();
}

function copy(vector: ReturnType<typeof bindings.data_chunk_get_vector>, data: ArrayBufferView, bytes: number): void {
  bindings.copy_data_to_vector(vector, 0, data.buffer as ArrayBuffer, data.byteOffset, bytes);
}

function validity(vector: ReturnType<typeof bindings.data_chunk_get_vector>, bits: BigUint64Array): void {
  bindings.vector_ensure_validity_writable(vector);
  bindings.copy_data_to_vector_validity(vector, 0, bits.buffer as ArrayBuffer, bits.byteOffset, bits.byteLength);
}

/** Rows as objects → one segment per run of rows from the same buffer row and source. */
function segmentsOf(rows: readonly MeasurementRow[]): Segment[] {
  const segments: Segment[] = [];
  let builder: RecordBatchBuilder | undefined;
  let current: { bufferId: number; source: string } | undefined;
  const close = () => {
    if (builder && current) segments.push({ ...current, columns: readRecordBatch(builder.toBuffer()) });
  };
  for (const r of rows) {
    if (!current || current.bufferId !== r.buffer_id || current.source !== r.source) {
      close();
      current = { bufferId: r.buffer_id, source: r.source };
      builder = new RecordBatchBuilder();
    }
    if (typeof r.metric !== 'string' || typeof r.sensor_id !== 'string' || typeof r.unit !== 'string') throw new Error('a measurement needs sensor_id, metric and unit');
    if (r.model_id !== null && !(Number.isInteger(r.model_id) && r.model_id >= 0 && r.model_id <= 32767)) throw new Error(`model_id ${r.model_id} is out of range`);
    builder!.add(r, r.lab_id, r.model_id);
  }
  close();
  return segments;
}
