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
  flushedThrough: number;
  ledgerLastId: number;
}

/**
 * Copies the live database into `target` with SQLite's online backup API, a few pages per step
 * between turns of the event loop. Writes made meanwhile through the same connection (all of the
 * service's) are carried into the copy, so it is the database as it stands when the copy ends.
 * The copy is left in rollback-journal mode: one self-contained file, which read-only checks open
 * without making -wal and -shm files beside it (the service turns WAL on again when it opens it).
 */
export async function backupOperationalDb(db: Db, target: string): Promise<void> {
  await db.backup(target);
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
      flushedThrough: one("SELECT value FROM counters WHERE name = 'flushed_through'"),
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
 * operationalFacts of the file at `path`, in a worker thread: counting a large buffer takes a
 * while, and the service's event loop must go on answering meanwhile.
 */
export function operationalFactsOffThread(path: string): Promise<OperationalFacts> {
  const worker = startWorker(import.meta.url, 'facts-worker', { workerData: { path } });
  return new Promise<OperationalFacts>((resolve, reject) => {
    worker.once('message', (reply: { ok: true; facts: OperationalFacts } | { ok: false; message: string }) => {
      if (reply.ok) resolve(reply.facts);
      else reject(new Error(reply.message));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the facts worker exited with code ${code}`)));
  }).finally(() => void worker.terminate());
}
