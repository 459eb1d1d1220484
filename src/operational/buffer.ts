import type { Db } from './db.js';
import { nowS } from './db.js';

/** Where ingested messages came from; also the `source` label of the ingest metrics and of a series. */
export type IngestSource = 'http' | 'http_frames' | 'stream';

/** Per device, what the frames of one row did (rows of releases before the one-commit path): [device_id, frames, records, lab_id, model_id]. */
export type ActivityEntry = [deviceId: string, frames: number, records: number, labId: string | null, modelId: number | null];

/** One JSON reading for the work queue, with its packed records (operational/record-batch.ts). */
export interface QueueInsert {
  source: IngestSource;
  sensorId: string;
  /** Unix seconds. */
  ts: number;
  /** The data exactly as the client sent it. */
  data: string;
  records: Buffer;
  recordCount: number;
  /** A stream entry's id: the same entry delivered again is the same row. */
  entryId?: string;
}

/** A row on its way to analytics. */
export interface QueueRow {
  id: number;
  source: IngestSource;
  records: Buffer;
}

/** A row whose device activity and usage are still to be counted (rows of earlier releases). */
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
 * The work queue of JSON readings (`telemetry/unprocessed`, from which only mark-processed takes a
 * reading) and their way into analytics: a reading is stored here first (durable, with its packed
 * records); the ingest committer then carries every row above DuckDB's `queue_through` into a
 * DuckDB commit, so a crash between the two stores neither loses nor doubles one. Rows of earlier
 * releases (batches of frames) take the same way once, on the first start after an upgrade.
 *
 * Counters are kept in the same transactions as the rows, so /health never counts rows.
 */
export function createBuffer(db: Db) {
  const insert = db.prepare<[string, string, number, string, number, Buffer, string | null, number]>(
    `INSERT INTO telemetry_buffer(source, sensor_id, ts, data, messages, record_count, records, activity, queued, entry_id, created_at)
     VALUES (?, ?, ?, ?, 1, ?, ?, NULL, 1, ?, ?)`,
  );
  const byEntry = db.prepare<[string], { id: number }>('SELECT id FROM telemetry_buffer WHERE entry_id = ?');
  const between = db.prepare<[number, number, number], QueueRow>(
    'SELECT id, source, records FROM telemetry_buffer WHERE id > ? AND id <= ? ORDER BY id LIMIT ?',
  );
  const countAfter = db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM telemetry_buffer WHERE id > ?');
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
  let counts: { rows: number; queued: number } | undefined;
  const forgetting = <A extends unknown[]>(statement: { run(...args: A): unknown }) => ({
    run: (...args: A) => {
      counts = undefined;
      return statement.run(...args);
    },
  });
  const upsertCounter = forgetting(db.prepare<[string, number]>('INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value'));
  const setCounter = { run: (value: number, name: string) => upsertCounter.run(name, value) };
  const addCounter = forgetting(db.prepare<[number, string]>('UPDATE counters SET value = value + ? WHERE name = ?'));
  const countInsert = forgetting(
    db.prepare<[number]>(
      `UPDATE counters SET value = CASE name WHEN 'activity_applied_through' THEN ? ELSE value + 1 END
       WHERE name IN ('buffer_rows', 'work_queue', 'activity_applied_through')`,
    ),
  );
  const counters = db.prepare<[], { name: string; value: number }>('SELECT name, value FROM counters');
  const lastId = db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'telemetry_buffer'");
  const raiseSeq = db.prepare<[number]>("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'telemetry_buffer'");
  const seedSeq = db.prepare<[number]>("INSERT INTO sqlite_sequence(name, seq) SELECT 'telemetry_buffer', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'telemetry_buffer')");
  // Oldest rows first, in slices, so one prune never holds the write lock for long. Readings still
  // in the work queue stay (the original never deleted an unprocessed reading).
  const pruneSlice = db.prepare<[number, number], { messages: number }>(
    `DELETE FROM telemetry_buffer WHERE id IN (
       SELECT id FROM telemetry_buffer WHERE id <= ? AND created_at < ? AND queued = 0 ORDER BY id LIMIT 5000)
     RETURNING messages`,
  );

  const bump = (name: string, by: number) => {
    if (by !== 0) addCounter.run(by, name);
  };
  const read = (name: string) => counter.get(name)?.value ?? 0;
  const insertListeners: Array<() => void> = [];

  return {
    /**
     * Inserts a reading into the work queue (inside the caller's transaction) and returns its id;
     * a stream entry stored before (delivered again) returns the id it has, not fresh.
     */
    insert(row: QueueInsert): { id: number; fresh: boolean } {
      if (row.entryId !== undefined) {
        const existing = byEntry.get(row.entryId);
        if (existing) return { id: existing.id, fresh: false };
      }
      const id = Number(insert.run(row.source, row.sensorId, row.ts, row.data, row.recordCount, row.records, row.entryId ?? null, nowS()).lastInsertRowid);
      // One more row in the table and in the work queue; its activity is counted in this transaction
      // (ingest/pipeline.ts), so the pass over older rows skips it. One statement: this runs per reading.
      countInsert.run(id);
      for (const listener of insertListeners) listener();
      return { id, fresh: true };
    },
    /** Calls `listener` after every insert (inside its transaction: it must only schedule work). */
    onInsert(listener: () => void): void {
      insertListeners.push(listener);
    },
    /** Rows with ids in (after, through], oldest first, at most `limit`. */
    rowsBetween(after: number, through: number, limit: number): QueueRow[] {
      return between.all(after, through, limit);
    },
    /** Rows above `id` (those not yet in analytics, for /health). */
    countAfter(id: number): number {
      return countAfter.get(id)!.n;
    },
    /** The highest id ever given to a row (0 for a new queue). */
    lastId(): number {
      return lastId.get()?.seq ?? 0;
    },
    /**
     * Makes new rows take ids above `id` (DuckDB already holds rows up to it: ocean.db was lost or
     * restored from an older backup than analytics.duckdb).
     */
    reanchor(id: number): void {
      db.transaction(() => {
        seedSeq.run(id);
        raiseSeq.run(id);
        setCounter.run(Math.max(read('activity_applied_through'), id), 'activity_applied_through');
      })();
    },
    /** Rows of earlier releases whose device activity is not yet counted, oldest first. */
    activityAfter(limit: number): ActivityRow[] {
      return activityAfter.all(read('activity_applied_through'), limit);
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
    /** Deletes rows up to `upTo` (in analytics) older than the cut-off and not queued. */
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
    counts(): { rows: number; queued: number } {
      if (counts) return { ...counts };
      const c = Object.fromEntries(counters.all().map((r) => [r.name, r.value]));
      counts = { rows: c['buffer_rows'] ?? 0, queued: c['work_queue'] ?? 0 };
      return { ...counts };
    },
    /** A counter of the ingest path kept in this database (e.g. `effects_applied_through`). */
    counter: read,
    /** Sets such a counter (inside the caller's transaction). */
    setCounter(name: string, value: number): void {
      setCounter.run(value, name);
    },
  };
}

export type TelemetryBuffer = ReturnType<typeof createBuffer>;
