import type { Db } from './db.js';
import { nowS } from './db.js';

/** Where a buffered message came from; also the `source` label of the ingest metrics. */
export type IngestSource = 'http' | 'http_frames' | 'stream';

/** Per device, what the frames of one buffer row did: [device_id, frames, records, lab_id, model_id]. */
export type ActivityEntry = [deviceId: string, frames: number, records: number, labId: string | null, modelId: number | null];

export interface BufferInsert {
  source: IngestSource;
  /** Frames or readings the row holds. */
  messages: number;
  /** Packed records (ingest/record-batch.ts). */
  records: Buffer;
  recordCount: number;
  /** A row of frames: what each device did. */
  activity?: ActivityEntry[];
  /** A row of one JSON reading: it enters the work queue with the data exactly as sent. */
  reading?: { sensorId: string; ts: number; data: string };
}

/** What the flusher needs of a buffered row. */
export interface PendingRow {
  id: number;
  source: IngestSource;
  messages: number;
  record_count: number;
  records: Buffer;
}

/** A row whose device activity and usage are still to be counted. */
export interface ActivityRow {
  id: number;
  sensor_id: string | null;
  record_count: number;
  activity: string | null;
  created_at: number;
}

/** A reading of the work queue, as the client sent it. */
export interface QueuedReading {
  id: number;
  sensor_id: string;
  /** Unix seconds. */
  ts: number;
  data: string;
  source: IngestSource;
  record_count: number;
  created_at: number;
}

/**
 * The durable buffer between ingest and DuckDB: one row per JSON reading, or per batch of frames
 * (their records packed). The flusher reads by id (DuckDB's high-water mark). JSON readings also
 * form the work queue of `telemetry/unprocessed`, from which only mark-processed removes them
 * (retention deletes processed rows only): the flush into DuckDB is separate bookkeeping.
 *
 * Counters are kept in the same transactions as the rows, so /health never counts rows.
 */
export function createBuffer(db: Db) {
  const insert = db.prepare<[string, string | null, number | null, string | null, number, number, Buffer, string | null, number, number]>(
    `INSERT INTO telemetry_buffer(source, sensor_id, ts, data, messages, record_count, records, activity, queued, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const after = db.prepare<[number], PendingRow>(
    'SELECT id, source, messages, record_count, records FROM telemetry_buffer WHERE id > ? ORDER BY id',
  );
  const activityAfter = db.prepare<[number, number], ActivityRow>(
    'SELECT id, sensor_id, record_count, activity, created_at FROM telemetry_buffer WHERE id > ? ORDER BY id LIMIT ?',
  );
  const queue = db.prepare<[number, number], QueuedReading>(
    `SELECT id, sensor_id, ts, data, source, record_count, created_at FROM telemetry_buffer
     WHERE queued = 1 AND id > ? ORDER BY id LIMIT ?`,
  );
  const dequeue = db.prepare<[number]>('UPDATE telemetry_buffer SET queued = 0 WHERE id = ? AND queued = 1');
  const counter = db.prepare<[string], { value: number }>('SELECT value FROM counters WHERE name = ?');
  // counts() is read on every /health poll; it is kept in memory and dropped by every counter
  // write (all of them are here; better-sqlite3 transactions are synchronous, so no read can see
  // a write that is later rolled back).
  let counts: { rows: number; unprocessed: number; queued: number } | undefined;
  const forgetting = <A extends unknown[]>(statement: { run(...args: A): unknown }) => ({
    run: (...args: A) => {
      counts = undefined;
      return statement.run(...args);
    },
  });
  const setCounter = forgetting(db.prepare<[number, string]>('UPDATE counters SET value = ? WHERE name = ?'));
  const addCounter = forgetting(db.prepare<[number, string]>('UPDATE counters SET value = value + ? WHERE name = ?'));
  const counters = db.prepare<[], { name: string; value: number }>('SELECT name, value FROM counters');
  const messagesBetween = db.prepare<[number, number], { messages: number }>(
    'SELECT coalesce(sum(messages), 0) AS messages FROM telemetry_buffer WHERE id > ? AND id <= ?',
  );
  const lastId = db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'telemetry_buffer'");
  const raiseSeq = db.prepare<[number]>("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'telemetry_buffer'");
  const seedSeq = db.prepare<[number]>("INSERT INTO sqlite_sequence(name, seq) SELECT 'telemetry_buffer', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'telemetry_buffer')");
  // Oldest rows first, in slices, so one prune never holds the write lock for long. Quarantined rows
  // and readings still in the work queue stay (the original never deleted an unprocessed reading).
  const pruneSlice = db.prepare<[number, number], { messages: number }>(
    `DELETE FROM telemetry_buffer WHERE id IN (
       SELECT id FROM telemetry_buffer WHERE id <= ? AND created_at < ? AND queued = 0
         AND id NOT IN (SELECT buffer_id FROM quarantine) ORDER BY id LIMIT 5000)
     RETURNING messages`,
  );

  const bump = (name: string, by: number) => {
    if (by !== 0) addCounter.run(by, name);
  };
  const read = (name: string) => counter.get(name)?.value ?? 0;
  const insertListeners: Array<() => void> = [];

  return {
    /** Inserts one row; returns its id. Call inside the batch transaction. */
    insert(row: BufferInsert): number {
      const r = row.reading;
      const id = Number(
        insert.run(
          row.source,
          r?.sensorId ?? null,
          r?.ts ?? null,
          r?.data ?? null,
          row.messages,
          row.recordCount,
          row.records,
          row.activity ? JSON.stringify(row.activity) : null,
          r ? 1 : 0,
          nowS(),
        ).lastInsertRowid,
      );
      bump('buffer_rows', row.messages);
      bump('buffer_unprocessed', row.messages);
      if (r) bump('work_queue', 1);
      for (const listener of insertListeners) listener();
      return id;
    },
    /** Calls `listener` after every insert (inside its transaction: it must only schedule work). */
    onInsert(listener: () => void): void {
      insertListeners.push(listener);
    },
    /**
     * Rows after the flusher's high-water mark, oldest first: at least one, then as many as fit
     * in `maxRecords` records and `maxBytes` bytes of packed records.
     */
    pending(highWater: number, bounds: { maxRecords: number; maxBytes: number }): PendingRow[] {
      const rows: PendingRow[] = [];
      let records = 0;
      let bytes = 0;
      for (const row of after.iterate(highWater)) {
        if (rows.length > 0 && (records + row.record_count > bounds.maxRecords || bytes + row.records.length > bounds.maxBytes)) break;
        rows.push(row);
        records += row.record_count;
        bytes += row.records.length;
      }
      return rows;
    },
    /** Everything up to `highWater` is in DuckDB: `messages` of them since the last mark. */
    markFlushed(highWater: number, messages: number): void {
      db.transaction(() => {
        setCounter.run(Math.max(read('flushed_through'), highWater), 'flushed_through');
        bump('buffer_unprocessed', -messages);
      })();
    },
    flushedThrough(): number {
      return read('flushed_through');
    },
    /**
     * DuckDB holds rows up to `highWater` but the buffer's mark stopped short of it (the process
     * died between DuckDB's commit and markFlushed): marks them, counting their messages here.
     */
    catchUp(highWater: number): void {
      db.transaction(() => {
        const from = read('flushed_through');
        if (highWater <= from) return;
        setCounter.run(highWater, 'flushed_through');
        bump('buffer_unprocessed', -(messagesBetween.get(from, highWater)?.messages ?? 0));
      })();
    },
    /** The highest id ever given to a row (0 for a new buffer). */
    lastId(): number {
      return lastId.get()?.seq ?? 0;
    },
    /**
     * Makes new rows take ids above `id` (DuckDB already holds rows up to it: the buffer was lost
     * or restored from a backup), and counts what the buffer holds as not yet flushed.
     */
    reanchor(id: number): void {
      db.transaction(() => {
        seedSeq.run(id);
        raiseSeq.run(id);
        setCounter.run(id, 'flushed_through');
        setCounter.run(Math.max(read('activity_applied_through'), id), 'activity_applied_through');
      })();
    },
    /** Rows whose device activity is not yet counted, oldest first. */
    activityAfter(limit: number): ActivityRow[] {
      return activityAfter.all(read('activity_applied_through'), limit);
    },
    activityAppliedThrough(): number {
      return read('activity_applied_through');
    },
    /** Call inside the transaction that counted the activity of rows up to `id`. */
    setActivityApplied(id: number): void {
      setCounter.run(id, 'activity_applied_through');
    },
    /** The work queue: readings not yet marked processed, oldest first. */
    queued(limit: number, after = 0): QueuedReading[] {
      return queue.all(after, limit);
    },
    /** Takes readings out of the work queue; returns how many were in it. */
    markProcessed: db.transaction((ids: readonly number[]): number => {
      const changed = ids.reduce((n, id) => n + dequeue.run(id).changes, 0);
      bump('work_queue', -changed);
      return changed;
    }),
    /** Deletes rows older than the cut-off that are flushed, counted and not queued (quarantined rows stay). */
    prune(upTo: number, olderThanS: number): number {
      let removed = 0;
      for (;;) {
        const deleted = db.transaction(() => {
          const rows = pruneSlice.all(upTo, olderThanS);
          bump('buffer_rows', -rows.reduce((n, r) => n + r.messages, 0));
          return rows.length;
        })();
        removed += deleted;
        if (deleted < 5000) return removed;
      }
    },
    /** Message counts from counters kept with the rows: constant time however large the table. */
    counts(): { rows: number; unprocessed: number; queued: number } {
      if (counts) return { ...counts };
      const c = Object.fromEntries(counters.all().map((r) => [r.name, r.value]));
      counts = { rows: c['buffer_rows'] ?? 0, unprocessed: c['buffer_unprocessed'] ?? 0, queued: c['work_queue'] ?? 0 };
      return { ...counts };
    },
  };
}

export type TelemetryBuffer = ReturnType<typeof createBuffer>;
