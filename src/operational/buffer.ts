import type { MeasurementRecord } from '../nanogridata/types.js';
import type { Db } from './db.js';
import { nowS } from './db.js';

/** Where a buffered message came from; also the `source` label of the ingest metrics. */
export type IngestSource = 'http' | 'http_frames' | 'stream';

export interface BufferInsert {
  /** Unique per transport message (stream entry id, HTTP request + index): a redelivery is a no-op. */
  sourceId: string;
  source: IngestSource;
  sensorId: string;
  ts: number;
  labId: string | null;
  modelId: number | null;
  raw: Buffer | null;
  records: MeasurementRecord[];
}

export interface BufferRow {
  id: number;
  source_id: string;
  source: IngestSource;
  sensor_id: string;
  ts: number;
  lab_id: string | null;
  model_id: number | null;
  records: MeasurementRecord[];
  record_count: number;
  processed: boolean;
  created_at: number;
}

interface RawRow extends Omit<BufferRow, 'records' | 'processed'> {
  records: string;
  processed: number;
}

/** What the flusher needs of a buffered row. */
export interface PendingRow {
  id: number;
  source: IngestSource;
  lab_id: string | null;
  model_id: number | null;
  records: string;
}

/**
 * The durable buffer between ingest and DuckDB. The flusher reads by id (DuckDB's high-water
 * mark), not by the `processed` flag, so an admin's mark-processed can never hide rows from it.
 */
export function createBuffer(db: Db) {
  const insert = db.prepare<[BufferInsert & { recordsJson: string; recordCount: number; now: number }]>(
    `INSERT INTO telemetry_buffer(source_id, source, sensor_id, ts, lab_id, model_id, raw, records, record_count, created_at)
     VALUES (@sourceId, @source, @sensorId, @ts, @labId, @modelId, @raw, @recordsJson, @recordCount, @now)
     ON CONFLICT(source_id) DO NOTHING`,
  );
  const unprocessed = db.prepare<[number], RawRow>(
    `SELECT id, source_id, source, sensor_id, ts, lab_id, model_id, records, record_count, processed, created_at
     FROM telemetry_buffer WHERE processed = 0 ORDER BY id LIMIT ?`,
  );
  const markOne = db.prepare<[number]>('UPDATE telemetry_buffer SET processed = 1 WHERE id = ? AND processed = 0');
  const after = db.prepare<[number, number], PendingRow>(
    'SELECT id, source, lab_id, model_id, records FROM telemetry_buffer WHERE id > ? ORDER BY id LIMIT ?',
  );
  // Uses the (processed, id) index: cost follows the unprocessed rows, not the table.
  const markUpTo = db.prepare<[number]>('UPDATE telemetry_buffer SET processed = 1 WHERE processed = 0 AND id <= ?');
  const prune = db.prepare<[number, number]>(
    'DELETE FROM telemetry_buffer WHERE processed = 1 AND id <= ? AND created_at < ?',
  );
  const counters = db.prepare<[], { name: string; value: number }>('SELECT name, value FROM counters');
  const maxId = db.prepare<[], { id: number | null }>('SELECT max(id) AS id FROM telemetry_buffer');

  const markMany = db.transaction((ids: number[]) => ids.reduce((n, id) => n + markOne.run(id).changes, 0));

  return {
    /** Inserts one row and returns its id, or null when its source id is already stored. Call inside the batch transaction. */
    insert(row: BufferInsert): number | null {
      const recordsJson = JSON.stringify(row.records);
      const result = insert.run({ ...row, recordsJson, recordCount: row.records.length, now: nowS() });
      return result.changes === 1 ? Number(result.lastInsertRowid) : null;
    },
    unprocessed(limit: number): BufferRow[] {
      return unprocessed.all(limit).map((r) => ({ ...r, records: JSON.parse(r.records) as MeasurementRecord[], processed: r.processed === 1 }));
    },
    /** Marks the given ids processed; returns how many changed state. */
    markProcessed(ids: number[]): number {
      return markMany(ids);
    },
    /** Rows after the flusher's high-water mark, oldest first. */
    after(highWater: number, limit: number): PendingRow[] {
      return after.all(highWater, limit);
    },
    /** Marks every row up to the flusher's high-water mark processed. */
    markFlushed(highWater: number): number {
      return markUpTo.run(highWater).changes;
    },
    /** Deletes processed rows at or below the high-water mark that are older than the cut-off. */
    prune(highWater: number, olderThanS: number): number {
      return prune.run(highWater, olderThanS).changes;
    },
    /** Row counts from trigger-maintained counters: constant time however large the table. */
    counts(): { rows: number; unprocessed: number } {
      const c = Object.fromEntries(counters.all().map((r) => [r.name, r.value]));
      return { rows: c['buffer_rows'] ?? 0, unprocessed: c['buffer_unprocessed'] ?? 0 };
    },
    maxId(): number {
      return maxId.get()?.id ?? 0;
    },
  };
}

export type TelemetryBuffer = ReturnType<typeof createBuffer>;
