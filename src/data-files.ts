import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';

/**
 * The data files (ocean.db holds device secrets and session hashes; admin.token the admin token) are
 * the service user's alone: files 0600, and the data directory 0700 when the service creates it.
 * main.ts also sets the umask to 077, so the files the engines create later on their own (DuckDB's
 * WAL, recreated after each checkpoint) are born private too.
 */
export function ensureDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Creates `path` empty with mode 0600 if it does not exist (SQLite then keeps that mode for its -wal and -shm). */
export function createPrivateFile(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  makePrivate(path);
}

/** Mode 0600 for those of `paths` that exist (files an earlier release created 0644 included). */
export function makePrivate(...paths: string[]): void {
  for (const path of paths) {
    try {
      chmodSync(path, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
