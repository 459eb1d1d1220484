import { dirname } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { appendReadings, withAppender, type ReadingsPart } from '../analytics/append.js';
import { exportStatement, streamExport, type ExportLimits } from '../analytics/export.js';
import { PARTITIONS, PARTITION_TABLES, partitionOf } from '../analytics/partitions.js';
import { SCHEMA } from '../analytics/schema.js';
import type { ExportFile, ExportRequest } from '../analytics/types.js';
import { UnavailableError } from '../errors.js';
import { inTransaction, type Pg } from './connect.js';

/** Readings fetched from PostgreSQL per round trip. */
const FETCH_ROWS = 20_000;

export interface PgExportOptions {
  /** Exports at once (EXPORTS_MAX). */
  maxExports: number;
  /** The export's first byte, at most (QUERY_TIMEOUT_MS). */
  timeoutMs: number;
  limits?: ExportLimits;
  /** DuckDB memory for one export's rows; past it DuckDB spills to its temp directory. */
  memoryLimit?: string;
}

/**
 * Exports from the shared PostgreSQL in the formats of the embedded store, byte for byte: the
 * matching readings are read with a cursor into a private in-memory DuckDB laid out as the
 * embedded store is (series and partitions), and the same COPY statement (analytics/export.ts)
 * writes them into the download's pipe. The rows are all loaded before the first byte is written,
 * so an export's first byte waits for its rows (about a second per million here), and its memory
 * is DuckDB's compressed columns (past memoryLimit, spilled to disk).
 */
export function pgExporter(pool: Pg, options: PgExportOptions) {
  const running = new Map<string, { cancelled: boolean; connection?: DuckDBConnection }>();
  let next = 0;

  async function run(request: ExportRequest, path: string, id: string): Promise<void> {
    if (running.size >= options.maxExports) throw new UnavailableError(`${options.maxExports} exports are running; retry when one has finished`);
    const state: { cancelled: boolean; connection?: DuckDBConnection } = { cancelled: false };
    running.set(id, state);
    // Spilled rows go beside the pipe, in the export's private temp directory (removed after it).
    const instance = await DuckDBInstance.create(':memory:', { memory_limit: options.memoryLimit ?? '256MB', threads: '1', temp_directory: dirname(path) });
    try {
      const duck = (state.connection = await instance.connect());
      for (const statement of SCHEMA) await duck.run(statement);
      await duck.run('SET preserve_insertion_order = false');
      const series = await matchingSeries(pool, request);
      if (series.size > 0) {
        await duck.run('BEGIN TRANSACTION');
        await appendSeries(duck, series.values());
        // A connection is held while the rows are read, not while the download streams.
        await inTransaction(pool, async (client) => {
          const values: unknown[] = [[...series.keys()]];
          const range: string[] = [];
          if (request.start !== undefined) range.push(` AND ts >= to_timestamp($${values.push(request.start)})`);
          if (request.end !== undefined) range.push(` AND ts <= to_timestamp($${values.push(request.end)})`);
          await client.query(`DECLARE export NO SCROLL CURSOR FOR SELECT series, extract(epoch FROM ts)::float8, value FROM readings WHERE series = ANY($1::integer[])${range.join('')}`, values);
          for (;;) {
            if (state.cancelled) throw new Error('export cancelled');
            const { rows } = await client.query<[number, number, number]>({ text: `FETCH ${FETCH_ROWS} FROM export`, rowMode: 'array' });
            if (rows.length === 0) break;
            for (const [p, part] of partsOf(rows, series)) await withAppender(duck, PARTITION_TABLES[p]!, (a) => appendReadings(a, [part]));
          }
        });
        await duck.run('COMMIT');
      }
      if (state.cancelled) throw new Error('export cancelled');
      const { sql, values, types } = exportStatement(request, path);
      await duck.run(sql, values, types);
    } finally {
      state.connection?.closeSync();
      instance.closeSync();
      running.delete(id);
    }
  }

  return {
    exportMeasurements(request: ExportRequest): Promise<ExportFile> {
      const id = String(++next);
      return streamExport(
        request,
        {
          run: (path) => run(request, path, id),
          cancel: () => {
            const state = running.get(id);
            if (!state) return;
            state.cancelled = true;
            state.connection?.interrupt();
          },
        },
        options.timeoutMs,
        options.limits,
      );
    },
  };
}

/** Series rows into a DuckDB laid out as the embedded store (inside the connection's transaction). */
export function appendSeries(duck: DuckDBConnection, rows: Iterable<SeriesRow & { series: number }>): Promise<void> {
  return withAppender(duck, 'series', (a) => {
    for (const s of rows) {
      a.appendInteger(s.series);
      a.appendVarchar(s.sensor_id);
      a.appendVarchar(s.metric);
      a.appendVarchar(s.unit);
      if (s.lab_id === null) a.appendNull();
      else a.appendVarchar(s.lab_id);
      if (s.model_id === null) a.appendNull();
      else a.appendSmallInt(s.model_id);
      a.appendVarchar(s.source);
      a.endRow();
    }
  });
}

interface SeriesRow {
  sensor_id: string;
  metric: string;
  unit: string;
  lab_id: string | null;
  model_id: number | null;
  source: string;
}

/** The series an export covers (tenancy and metric filters), by id. */
async function matchingSeries(pool: Pg, request: ExportRequest): Promise<Map<number, SeriesRow & { series: number; partition: number }>> {
  const values: unknown[] = [];
  const where: string[] = [];
  if (request.sensorIds !== undefined) where.push(`sensor_id = ANY($${values.push([...request.sensorIds])}::text[])`);
  if (request.metric !== undefined) where.push(`metric = $${values.push(request.metric)}`);
  const { rows } = await pool.query<SeriesRow & { series: number }>(
    `SELECT series, sensor_id, metric, unit, lab_id, model_id, source FROM series${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`,
    values,
  );
  return new Map(rows.map((s) => [s.series, { ...s, partition: partitionOf(s.sensor_id) }]));
}

/** Fetched rows (series, epoch seconds, value) as one appendable part per partition of their series. */
export function partsOf(rows: ReadonlyArray<[number, number, number]>, series: ReadonlyMap<number, { partition: number }>): Map<number, ReadingsPart> {
  const n = rows.length;
  const ts = new Float64Array(n);
  const value = new Float64Array(n);
  const ids = new Int32Array(n);
  const byPartition: number[][] = Array.from({ length: PARTITIONS }, () => []);
  for (let i = 0; i < n; i++) {
    const [s, t, v] = rows[i]!;
    ids[i] = s;
    ts[i] = t;
    value[i] = v;
    byPartition[series.get(s)!.partition]!.push(i);
  }
  const parts = new Map<number, ReadingsPart>();
  byPartition.forEach((indexes, p) => {
    if (indexes.length > 0) parts.set(p, { ts, value, series: ids, indexes: Uint32Array.from(indexes) });
  });
  return parts;
}
