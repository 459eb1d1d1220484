import type { Db } from '../db.js';
import { RecordBatchBuilder } from '../record-batch.js';

interface OldRow {
  id: number;
  source: string;
  sensor_id: string;
  ts: number;
  lab_id: string | null;
  model_id: number | null;
  raw: Buffer | null;
  records: string;
  processed: number;
  created_at: number;
}

/**
 * Migration 3 ("ingest that holds"): the buffer holds one row per JSON reading (with the text the
 * client sent, for the work queue) or per batch of frames, records packed by column instead of
 * JSON; replay memory, its pending frames, the stream outbox and the quarantine get tables.
 * Existing rows keep their ids (DuckDB's high-water mark refers to them) and their records.
 */
export function migrateIngestBuffer(db: Db): void {
  db.exec(`
    CREATE TABLE telemetry_buffer_v2 (
      id            INTEGER PRIMARY KEY AUTOINCREMENT,
      source        TEXT NOT NULL,
      sensor_id     TEXT,               -- a reading's sensor; NULL for a row of frames
      ts            REAL,               -- a reading's time
      data          TEXT,               -- a reading's data, exactly as the client sent it
      messages      INTEGER NOT NULL,   -- frames or readings in the row
      record_count  INTEGER NOT NULL,
      records       BLOB NOT NULL,      -- packed records (operational/record-batch.ts)
      activity      TEXT,               -- frames: JSON [[device_id, frames, records, lab_id, model_id], ...]
      queued        INTEGER NOT NULL DEFAULT 0,  -- 1: a reading in the work queue (not yet marked processed)
      created_at    INTEGER NOT NULL
    );
  `);
  const insert = db.prepare(
    `INSERT INTO telemetry_buffer_v2(id, source, sensor_id, ts, data, messages, record_count, records, activity, queued, created_at)
     VALUES (?, ?, ?, ?, ?, 1, ?, ?, NULL, ?, ?)`,
  );
  let queued = 0;
  for (const row of db.prepare<[], OldRow>('SELECT * FROM telemetry_buffer ORDER BY id').all()) {
    const records = JSON.parse(row.records) as Array<{ sensor_id: string; metric: string; unit: string; ts: number; value: number }>;
    const batch = new RecordBatchBuilder(records.length);
    for (const r of records) batch.add(r, row.lab_id, row.model_id);
    // A JSON reading (no model) kept its data as JSON text in raw; a frame kept its bytes, not needed any more.
    const reading = row.model_id === null;
    const inQueue = reading && row.processed === 0 ? 1 : 0;
    queued += inQueue;
    insert.run(row.id, row.source, row.sensor_id, reading ? row.ts : null, reading ? (row.raw?.toString('utf8') ?? '{}') : null, records.length, batch.toBuffer(), inQueue, row.created_at);
  }
  const seq = db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'telemetry_buffer'").get()?.seq ?? 0;
  db.exec(`
    DROP TABLE telemetry_buffer;
    ALTER TABLE telemetry_buffer_v2 RENAME TO telemetry_buffer;
    CREATE INDEX telemetry_buffer_queue ON telemetry_buffer(id) WHERE queued = 1;

    -- Frames accepted whose fingerprints the replay store (Redis) does not have yet.
    CREATE TABLE replay_pending (
      id     INTEGER PRIMARY KEY AUTOINCREMENT,
      items  BLOB NOT NULL
    );
    -- Replay memory of a service without Redis.
    CREATE TABLE replay_memory (
      slice        INTEGER NOT NULL,
      fingerprint  BLOB NOT NULL,
      PRIMARY KEY (slice, fingerprint)
    ) WITHOUT ROWID;
    -- Stream entries stored but not yet acknowledged, and dead letters not yet written to Redis.
    CREATE TABLE stream_outbox (
      id            INTEGER PRIMARY KEY AUTOINCREMENT,
      stream        TEXT NOT NULL,
      entry_ids     TEXT NOT NULL,
      dead_letters  TEXT NOT NULL,
      created_at    INTEGER NOT NULL
    );
    -- Records DuckDB refused, kept with the error.
    CREATE TABLE quarantine (
      buffer_id   INTEGER NOT NULL,
      record      INTEGER NOT NULL,
      content     TEXT NOT NULL,
      error       TEXT NOT NULL,
      created_at  INTEGER NOT NULL,
      PRIMARY KEY (buffer_id, record)
    );
    -- How a device got its owner: 'admin' (registered), 'claim' (a user's first JSON ingest or
    -- profile), 'frame' (none: it sent signed frames first). Owners from before this migration
    -- keep their devices: they count as registered.
    ALTER TABLE devices ADD COLUMN origin TEXT NOT NULL DEFAULT 'frame';
    UPDATE devices SET origin = 'admin' WHERE owner_id IS NOT NULL OR secret IS NOT NULL;
  `);
  // The id sequence continues where it was, even above the highest row still kept.
  db.prepare("DELETE FROM sqlite_sequence WHERE name = 'telemetry_buffer'").run();
  db.prepare("INSERT INTO sqlite_sequence(name, seq) VALUES ('telemetry_buffer', max(?, coalesce((SELECT max(id) FROM telemetry_buffer), 0)))").run(seq);
  const maxId = db.prepare<[], { id: number | null }>('SELECT max(id) AS id FROM telemetry_buffer').get()?.id ?? 0;
  db.prepare("INSERT INTO counters(name, value) VALUES ('work_queue', ?), ('activity_applied_through', ?)").run(queued, maxId);
}
