import Database from 'better-sqlite3';
import { startWorker } from '../worker-thread.js';
import type { Db } from './db.js';

/** What a copy of ocean.db holds, for the backup manifest and to check a restore against it. */
export interface OperationalFacts {
  schemaVersion: number;
  sqliteVersion: string;
  users: number;
  sessions: number;
  ledger: number;
  devices: number;
  bufferRows: number;
  bufferMessages: number;
  bufferLastId: number;
  /** The last ingest batch whose side effects SQLite applied (ingest/side-effects.ts). */
  effectsAppliedThrough: number;
  ledgerLastId: number;
}

/** Pages per step of the backup API: all at once (see copyOperationalDb). */
const ALL_PAGES = 0x7fffffff;

/**
 * Copies the database file at `source` into a new file at `target` with SQLite's online backup API,
 * on a read-only connection of its own, all pages in one step: one read transaction, so the copy is
 * the database as committed when the step began, while the service goes on writing (WAL). The copy
 * is left in rollback-journal mode: one self-contained file, which read-only checks open without
 * making -wal and -shm files beside it (the service turns WAL on again when it opens it).
 */
export async function copyOperationalDb(source: string, target: string): Promise<void> {
  const db = openReadOnly(source);
  try {
    await db.backup(target, { progress: () => ALL_PAGES });
  } finally {
    db.close();
  }
  const copy = new Database(target, { fileMustExist: true });
  try {
    copy.pragma('journal_mode = DELETE');
  } finally {
    copy.close();
  }
}

/** Opens a database file read-only, for the backup of a stopped service or to check a copy. */
export function openReadOnly(path: string): Db {
  return new Database(path, { readonly: true, fileMustExist: true });
}

/** Counts and positions of a database (read-only; one read transaction, so they agree). */
export function operationalFacts(db: Db): OperationalFacts {
  return db.transaction(() => {
    const one = (sql: string) => Number((db.prepare(sql).pluck().get() as number | bigint | null | undefined) ?? 0);
    const seq = (table: string) => Number((db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').pluck().get(table) as number | undefined) ?? 0);
    return {
      schemaVersion: db.pragma('user_version', { simple: true }) as number,
      sqliteVersion: String(db.prepare('SELECT sqlite_version()').pluck().get()),
      users: one('SELECT count(*) FROM users'),
      sessions: one('SELECT count(*) FROM sessions'),
      ledger: one('SELECT count(*) FROM billing_ledger'),
      devices: one('SELECT count(*) FROM devices'),
      bufferRows: one('SELECT count(*) FROM telemetry_buffer'),
      bufferMessages: one('SELECT coalesce(sum(messages), 0) FROM telemetry_buffer'),
      bufferLastId: seq('telemetry_buffer'),
      effectsAppliedThrough: one("SELECT value FROM counters WHERE name = 'effects_applied_through'"),
      ledgerLastId: seq('billing_ledger'),
    };
  })();
}

/** SQLite's own check of every page and index; the problems it reports (none: []). */
export function integrityProblems(db: Db): string[] {
  const rows = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
  return rows.map((r) => r.integrity_check).filter((r) => r !== 'ok');
}

/**
 * copyOperationalDb, then operationalFacts of the copy, in a worker thread: the copy's last step
 * (its commit and fsync) and counting a large buffer take a while, and the service's event loop
 * must go on answering meanwhile.
 */
export function copyOperationalDbOffThread(source: string, target: string): Promise<OperationalFacts> {
  const worker = startWorker(import.meta.url, 'copy-worker', { workerData: { source, target } });
  return new Promise<OperationalFacts>((resolve, reject) => {
    worker.once('message', (reply: { ok: true; facts: OperationalFacts } | { ok: false; message: string }) => {
      if (reply.ok) resolve(reply.facts);
      else reject(new Error(reply.message));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the SQLite copy worker exited with code ${code}`)));
  }).finally(() => void worker.terminate());
}

/** The AUTOINCREMENT positions of a database (sqlite_sequence): the highest id each table has given out. */
export function sequences(db: Db): Map<string, number> {
  const rows = db.prepare('SELECT name, seq FROM sqlite_sequence').all() as Array<{ name: string; seq: number }>;
  return new Map(rows.map((r) => [r.name, Number(r.seq)]));
}

/**
 * Makes the tables of the database at `path` give ids above `floor`'s (those of data it replaces),
 * so that no id handed out before (a ledger row, a work-queue reading a client may still name) is
 * given again. Returns the tables whose position moved, with the old and new positions.
 */
export function raiseSequences(path: string, floor: ReadonlyMap<string, number>): Array<{ table: string; from: number; to: number }> {
  const db = new Database(path, { fileMustExist: true });
  try {
    return db.transaction(() => {
      const own = sequences(db);
      const tables = new Set((db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all() as string[]));
      const raised: Array<{ table: string; from: number; to: number }> = [];
      for (const [table, seq] of floor) {
        const from = own.get(table) ?? 0;
        if (!tables.has(table) || seq <= from) continue;
        if (own.has(table)) db.prepare('UPDATE sqlite_sequence SET seq = ? WHERE name = ?').run(seq, table);
        else db.prepare('INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)').run(table, seq);
        raised.push({ table, from, to: seq });
      }
      return raised;
    })();
  } finally {
    db.close();
  }
}
