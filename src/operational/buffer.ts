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
  const insert = db.prepare<[string, IngestSource, string, number, string | null, number | null, Buffer | null, string, number, number]>(
    `INSERT INTO telemetry_buffer(source_id, source, sensor_id, ts, lab_id, model_id, raw, records, record_count, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source_id) DO NOTHING`,
  );
  const flushedThrough = `(SELECT value FROM counters WHERE name = 'flushed_through')`;
  const unprocessed = db.prepare<[number], RawRow>(
    `SELECT id, source_id, source, sensor_id, ts, lab_id, model_id, records, record_count, processed, created_at
     FROM telemetry_buffer WHERE id > ${flushedThrough} AND processed = 0 ORDER BY id LIMIT ?`,
  );
  const markOne = db.prepare<[number]>('UPDATE telemetry_buffer SET processed = 1 WHERE id = ? AND processed = 0');
  const after = db.prepare<[number, number], PendingRow>(
    'SELECT id, source, lab_id, model_id, records FROM telemetry_buffer WHERE id > ? ORDER BY id LIMIT ?',
  );
  // A rowid range above what was flushed before: cost follows the new rows, not the table.
  const markUpTo = db.prepare<[number]>(
    `UPDATE telemetry_buffer SET processed = 1 WHERE id > ${flushedThrough} AND id <= ? AND processed = 0`,
  );
  const setFlushedThrough = db.prepare<[number]>(`UPDATE counters SET value = max(value, ?) WHERE name = 'flushed_through'`);
  // Oldest rows first, in slices, so one prune never holds the write lock for long.
  const pruneSlice = db.prepare<[number, number]>(
    `DELETE FROM telemetry_buffer WHERE id IN (
       SELECT id FROM telemetry_buffer WHERE id <= min(?, ${flushedThrough}) AND processed = 1 AND created_at < ? ORDER BY id LIMIT 10000)`,
  );
  const counters = db.prepare<[], { name: string; value: number }>('SELECT name, value FROM counters');
  const maxId = db.prepare<[], { id: number | null }>('SELECT max(id) AS id FROM telemetry_buffer');
  const bump = db.prepare<[number, number]>(
    `UPDATE counters SET value = value + CASE name WHEN 'buffer_rows' THEN ? ELSE ? END
     WHERE name IN ('buffer_rows', 'buffer_unprocessed')`,
  );
  const adjust = (rows: number, unprocessed: number) => {
    if (rows !== 0 || unprocessed !== 0) bump.run(rows, unprocessed);
  };

  const markMany = db.transaction((ids: number[]) => {
    const changed = ids.reduce((n, id) => n + markOne.run(id).changes, 0);
    adjust(0, -changed);
    return changed;
  });

  return {
    /**
     * Inserts rows, skipping those whose source id is already stored (a redelivery). Returns, per
     * row, its new id or null when skipped. Call inside the batch transaction.
     */
    insertMany(rows: readonly BufferInsert[]): Array<number | null> {
      const now = nowS();
      const ids = rows.map((r) => {
        const result = insert.run(r.sourceId, r.source, r.sensorId, r.ts, r.labId, r.modelId, r.raw, JSON.stringify(r.records), r.records.length, now);
        return result.changes === 1 ? Number(result.lastInsertRowid) : null;
      });
      const inserted = ids.reduce((n: number, id) => (id === null ? n : n + 1), 0);
      adjust(inserted, inserted);
      return ids;
    },
    /** One row; see insertMany. */
    insert(row: BufferInsert): number | null {
      return this.insertMany([row])[0]!;
    },
    maxId(): number {
      return maxId.get()?.id ?? 0;
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
    markFlushed: db.transaction((highWater: number): number => {
      const changed = markUpTo.run(highWater).changes;
      setFlushedThrough.run(highWater);
      adjust(0, -changed);
      return changed;
    }),
    /** Deletes processed rows at or below the high-water mark that are older than the cut-off. */
    prune(highWater: number, olderThanS: number): number {
      let removed = 0;
      for (;;) {
        const slice = db.transaction(() => {
          const n = pruneSlice.run(highWater, olderThanS).changes;
          adjust(-n, 0);
          return n;
        })();
        removed += slice;
        if (slice < 10000) return removed;
      }
    },
    /** Row counts from counters kept with the rows: constant time however large the table. */
    counts(): { rows: number; unprocessed: number } {
      const c = Object.fromEntries(counters.all().map((r) => [r.name, r.value]));
      return { rows: c['buffer_rows'] ?? 0, unprocessed: c['buffer_unprocessed'] ?? 0 };
    },
  };
}

export type TelemetryBuffer = ReturnType<typeof createBuffer>;
