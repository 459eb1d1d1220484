import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import { createPrivateFile, ensureDataDir, makePrivate } from '../data-files.js';
import { migrateIngestBuffer } from './migrations/ingest-buffer.js';

export type Db = Database.Database;

/**
 * Numbered migrations; `PRAGMA user_version` records how many have run. SQL text, or a function
 * where rows must be rewritten by code. Append only: never edit a migration that has shipped.
 * Times are Unix epoch seconds (REAL where sub-second matters, INTEGER otherwise).
 * A migration may call ocean_uuid() (a random UUID v4, registered by openOperationalDb).
 * Migrations run with foreign keys off (SQLite's procedure for rebuilding a referenced table);
 * each is checked with foreign_key_check before it commits.
 */
const MIGRATIONS: Array<string | ((db: Db) => void)> = [
  /* 1: operational schema */ `
  CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    username    TEXT NOT NULL UNIQUE,
    email       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at  INTEGER NOT NULL
  );

  -- One row per user, created in the same transaction as the user.
  CREATE TABLE billing (
    user_id     INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    plan        TEXT NOT NULL DEFAULT 'free',
    credits     INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0),
    usage       INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
  );

  -- Append-only: every credit change, with the balance it produced.
  CREATE TABLE billing_ledger (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    delta         INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    reason        TEXT,
    created_at    INTEGER NOT NULL
  );
  CREATE INDEX billing_ledger_user ON billing_ledger(user_id, id);
  CREATE TRIGGER billing_ledger_no_update BEFORE UPDATE ON billing_ledger
    BEGIN SELECT RAISE(ABORT, 'billing_ledger is append-only'); END;
  CREATE TRIGGER billing_ledger_no_delete BEFORE DELETE ON billing_ledger
    BEGIN SELECT RAISE(ABORT, 'billing_ledger is append-only'); END;

  -- Only the SHA-256 of a session token is stored, never the token.
  CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
  );
  CREATE INDEX sessions_user ON sessions(user_id);

  -- Key-value metadata; namespace 'kv' for /metadata, 'profile' for /profiles.
  CREATE TABLE metadata (
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    sensor_id   TEXT,
    ts          REAL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
  ) WITHOUT ROWID;

  -- A device is a sensor: its id is the analytics sensor_id. The owner reads its data.
  CREATE TABLE devices (
    device_id    TEXT PRIMARY KEY,
    owner_id     INTEGER REFERENCES users(id) ON DELETE SET NULL,
    model_id     INTEGER,
    secret       BLOB,
    lab_id       TEXT,
    created_at   INTEGER NOT NULL,
    last_seen    REAL,
    frames       INTEGER NOT NULL DEFAULT 0,
    records      INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE INDEX devices_owner ON devices(owner_id);

  -- Non-telemetry frames (EVENT, CONFIG, COMMAND, CALIBRATION) as sent.
  CREATE TABLE device_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id    TEXT NOT NULL UNIQUE,
    device_id    TEXT NOT NULL,
    payload_type INTEGER NOT NULL,
    ts           INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
  );
  CREATE INDEX device_events_device ON device_events(device_id, id);

  -- Durable buffer between ingest and DuckDB. source_id makes a redelivery a no-op. No index on
  -- processed: every row up to counters.flushed_through is processed, so reads of unprocessed rows
  -- are rowid range scans above it, and inserts stay cheap.
  CREATE TABLE telemetry_buffer (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id    TEXT NOT NULL UNIQUE,
    source       TEXT NOT NULL,
    sensor_id    TEXT NOT NULL,
    ts           REAL NOT NULL,
    lab_id       TEXT,
    model_id     INTEGER,
    raw          BLOB,
    records      TEXT NOT NULL,
    record_count INTEGER NOT NULL,
    processed    INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
  );

  -- Cheap counters so /health and /metrics never COUNT(*) a growing table. Kept by buffer.ts in the
  -- same transactions that change the rows (one update per batch, not a trigger per row).
  CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO counters(name, value) VALUES ('buffer_rows', 0), ('buffer_unprocessed', 0), ('flushed_through', 0);
  `,

  /*
   * 2: user ids become UUID text (as the original's), and the columns its answers need. Every
   * table that names a user is rebuilt keeping every row: each user gets a fresh UUID, its old
   * integer id stays in users.legacy_id (to map references kept outside Ocean Core), and
   * billing, billing_ledger, sessions and devices.owner_id are mapped through it. Ledger ids
   * are kept (AUTOINCREMENT continues above them).
   */ `
  CREATE TABLE users_v2 (
    id          TEXT PRIMARY KEY,
    legacy_id   INTEGER UNIQUE,
    username    TEXT NOT NULL UNIQUE,
    email       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    status      TEXT NOT NULL DEFAULT 'active',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
  );
  INSERT INTO users_v2(id, legacy_id, username, email, created_at, updated_at)
    SELECT ocean_uuid(), id, username, email, created_at, created_at FROM users ORDER BY id;

  CREATE TABLE billing_v2 (
    id          TEXT NOT NULL UNIQUE,
    user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    plan        TEXT NOT NULL DEFAULT 'free',
    credits     INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0),
    usage       INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
  );
  -- A billing row was created with its user: that is its creation time.
  INSERT INTO billing_v2(id, user_id, plan, credits, usage, created_at, updated_at)
    SELECT ocean_uuid(), u.id, b.plan, b.credits, b.usage, u.created_at, b.updated_at
    FROM billing b JOIN users_v2 u ON u.legacy_id = b.user_id;

  CREATE TABLE billing_ledger_v2 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    delta         INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    reason        TEXT,
    created_at    INTEGER NOT NULL
  );
  INSERT INTO billing_ledger_v2(id, user_id, delta, balance_after, reason, created_at)
    SELECT l.id, u.id, l.delta, l.balance_after, l.reason, l.created_at
    FROM billing_ledger l JOIN users_v2 u ON u.legacy_id = l.user_id ORDER BY l.id;

  CREATE TABLE sessions_v2 (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash    BLOB NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    -- Moved forward by validation, at most once a minute per session.
    last_activity INTEGER NOT NULL
  );
  INSERT INTO sessions_v2(id, user_id, token_hash, created_at, expires_at, revoked_at, last_activity)
    SELECT s.id, u.id, s.token_hash, s.created_at, s.expires_at, s.revoked_at, s.created_at
    FROM sessions s JOIN users_v2 u ON u.legacy_id = s.user_id;

  CREATE TABLE devices_v2 (
    device_id    TEXT PRIMARY KEY,
    owner_id     TEXT REFERENCES users(id) ON DELETE SET NULL,
    model_id     INTEGER,
    secret       BLOB,
    lab_id       TEXT,
    created_at   INTEGER NOT NULL,
    last_seen    REAL,
    frames       INTEGER NOT NULL DEFAULT 0,
    records      INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  INSERT INTO devices_v2(device_id, owner_id, model_id, secret, lab_id, created_at, last_seen, frames, records)
    SELECT d.device_id, u.id, d.model_id, d.secret, d.lab_id, d.created_at, d.last_seen, d.frames, d.records
    FROM devices d LEFT JOIN users_v2 u ON u.legacy_id = d.owner_id;

  DROP TABLE devices;
  DROP TABLE sessions;
  DROP TABLE billing_ledger;
  DROP TABLE billing;
  DROP TABLE users;
  ALTER TABLE users_v2 RENAME TO users;
  ALTER TABLE billing_v2 RENAME TO billing;
  ALTER TABLE billing_ledger_v2 RENAME TO billing_ledger;
  ALTER TABLE sessions_v2 RENAME TO sessions;
  ALTER TABLE devices_v2 RENAME TO devices;

  CREATE INDEX billing_ledger_user ON billing_ledger(user_id, id);
  CREATE TRIGGER billing_ledger_no_update BEFORE UPDATE ON billing_ledger
    BEGIN SELECT RAISE(ABORT, 'billing_ledger is append-only'); END;
  CREATE TRIGGER billing_ledger_no_delete BEFORE DELETE ON billing_ledger
    BEGIN SELECT RAISE(ABORT, 'billing_ledger is append-only'); END;
  CREATE INDEX sessions_user ON sessions(user_id);
  CREATE INDEX devices_owner ON devices(owner_id);
  `,
  /* 3: ingest that holds */ migrateIngestBuffer,
  /*
   * 4: Idempotency-Key of credit changes: the first answer, kept with the change it made (written in
   * the ledger row's transaction). `scope` is the caller and the route; `fingerprint` the request
   * the key was first used for. Rows older than IDEMPOTENCY_KEY_TTL_S are ignored, then purged.
   */ `
  CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
  ) WITHOUT ROWID;
  CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
  `,
  /* 5: claim conflicts */ `
  -- A sensor a user claimed by JSON for which frames arrived: held for an admin, not stored.
  CREATE TABLE device_conflicts (
    device_id  TEXT PRIMARY KEY,
    claimed_by TEXT NOT NULL,
    frames     INTEGER NOT NULL,
    first_at   INTEGER NOT NULL,
    last_at    INTEGER NOT NULL
  );
  -- A claimed sensor the admin gave to another party: its readings up to through_id (the
  -- claimant's) leave its history; the ingest deletes them from DuckDB, then the row.
  CREATE TABLE history_purges (
    id         INTEGER PRIMARY KEY,
    device_id  TEXT NOT NULL,
    through_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  /*
   * 6: the one-commit ingest path. Frames go from the stream straight into DuckDB with their
   * replay fingerprints: the replay tables and the stream outbox go (an outbox row left by a crash
   * of the earlier release is an entry stored and not acknowledged: redelivered, it is stored
   * again — see the README's upgrade note). The quarantine stays, read-only: the new path has
   * nothing DuckDB can refuse for its data (numbers checked at the edge), but what an earlier
   * release quarantined is kept for the admin. telemetry_buffer keeps the JSON readings (the work
   * queue); a stream entry's reading remembers its entry id, so a redelivery is the same row.
   * history_purges.through_id is the queue id at registration (the claimant's readings up to it).
   */ `
  DROP TABLE replay_pending;
  DROP TABLE replay_memory;
  DROP TABLE stream_outbox;
  ALTER TABLE telemetry_buffer ADD COLUMN entry_id TEXT;
  CREATE UNIQUE INDEX telemetry_buffer_entry ON telemetry_buffer(entry_id) WHERE entry_id IS NOT NULL;
  DELETE FROM counters WHERE name IN ('buffer_unprocessed', 'flushed_through');
  INSERT INTO counters(name, value) VALUES ('effects_applied_through', 0) ON CONFLICT(name) DO NOTHING;
  `,
];

/** The schema version (`PRAGMA user_version`) this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Opens (creating if needed, mode 0600) the operational SQLite database and brings its schema up to date.
 * One connection per process, so the pragmas below hold for every statement the service runs.
 */
export function openOperationalDb(path: string): Db {
  ensureDataDir(dirname(path));
  createPrivateFile(path);
  makePrivate(`${path}-wal`, `${path}-shm`);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  db.function('ocean_uuid', { deterministic: false }, () => randomUUID());
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`database schema version ${current} is newer than this build (${MIGRATIONS.length})`);
  }
  if (current === MIGRATIONS.length) return;
  // Outside any transaction: SQLite ignores this pragma inside one.
  db.pragma('foreign_keys = OFF');
  try {
    for (let version = current; version < MIGRATIONS.length; version++) {
      db.transaction(() => {
        const migration = MIGRATIONS[version]!;
        if (typeof migration === 'string') db.exec(migration);
        else migration(db);
        const broken = db.pragma('foreign_key_check') as unknown[];
        if (broken.length > 0) throw new Error(`migration ${version + 1} left ${broken.length} broken references: ${JSON.stringify(broken.slice(0, 5))}`);
        db.pragma(`user_version = ${version + 1}`);
      })();
    }
  } finally {
    db.pragma('foreign_keys = ON');
  }
}

/** Current Unix time in whole seconds. */
export const nowS = (): number => Math.floor(Date.now() / 1000);
