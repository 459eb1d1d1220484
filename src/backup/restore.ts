import { constants, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { analyticsFileFacts, openAnalyticsReadOnly } from '../analytics/backup.js';
import { integrityProblems, openReadOnly, operationalFacts, raiseSequences, sequences } from '../operational/backup.js';
import { SCHEMA_VERSION } from '../operational/db.js';
import { BackupInvalidError, DUCKDB_FILE, SQLITE_FILE, readManifest, syncPath, verifyFiles, type Manifest } from './manifest.js';

export interface RestoreResult {
  manifest: Manifest;
  /** Where the data that was in the data directory went (null: there was none). */
  aside: string | null;
  /** Id sequences moved above those of the data replaced. */
  raised: Array<{ table: string; from: number; to: number }>;
}

/** The id positions of the data being replaced, or none when it has no readable ocean.db (lost, or the reason for the restore). */
function replacedSequences(dataDir: string, step: (s: string) => void): Map<string, number> {
  const path = join(dataDir, SQLITE_FILE);
  if (!existsSync(path)) return new Map();
  try {
    const db = openReadOnly(path);
    try {
      return sequences(db);
    } finally {
      db.close();
    }
  } catch (err) {
    step(`the current ${SQLITE_FILE} cannot be read (${(err as Error).message}); new ids continue above the backup's only`);
    return new Map();
  }
}

/** Throws DataDirInUseError when a running service holds the data directory (its DuckDB lock). */
export async function assertDataDirFree(dataDir: string): Promise<void> {
  const path = join(dataDir, DUCKDB_FILE);
  if (!existsSync(path)) return;
  (await openAnalyticsReadOnly(path)).close();
}

/** Throws unless the stores in `dir` open, pass their checks and hold what the manifest says. */
async function verifyStores(dir: string, manifest: Manifest): Promise<void> {
  const db = openReadOnly(join(dir, SQLITE_FILE));
  let facts;
  try {
    const problems = integrityProblems(db);
    if (problems.length > 0) throw new BackupInvalidError(`${SQLITE_FILE} fails PRAGMA integrity_check: ${problems.slice(0, 3).join('; ')}`);
    facts = operationalFacts(db);
  } finally {
    db.close();
  }
  const analytics = await analyticsFileFacts(join(dir, DUCKDB_FILE));
  const { counts, ingest, last_ids: ids, versions } = manifest;
  const pairs: Array<[string, number, number]> = [
    ['schema version', facts.schemaVersion, versions.schema],
    ['users', facts.users, counts.users],
    ['sessions', facts.sessions, counts.sessions],
    ['ledger rows', facts.ledger, counts.ledger],
    ['devices', facts.devices, counts.devices],
    ['buffer rows', facts.bufferRows, counts.buffer_rows],
    ['buffer messages', facts.bufferMessages, counts.buffer_messages],
    ['buffer last id', facts.bufferLastId, ingest.buffer_last_id],
    ['buffer flushed through', facts.flushedThrough, ingest.buffer_flushed_through],
    ['last ledger id', facts.ledgerLastId, ids.ledger],
    ['measurements', analytics.measurements, counts.measurements],
    ['DuckDB high-water mark', analytics.highWater, ingest.duckdb_high_water],
  ];
  for (const [what, actual, expected] of pairs) {
    if (actual !== expected) throw new BackupInvalidError(`the backup holds ${actual} for ${what}, its manifest says ${expected}`);
  }
  if (analytics.highWater > facts.bufferLastId) throw new BackupInvalidError(`DuckDB holds buffer rows up to ${analytics.highWater}, beyond the buffer's last id ${facts.bufferLastId}`);
}

/**
 * Restores the backup in `backupDir` into `dataDir` (the service stopped): the files are copied
 * into a sibling staging directory and checked there (manifest, sizes, SHA-256, integrity_check,
 * counts); the copy's id sequences are raised above those of the data it replaces; then the
 * current data directory is renamed to a timestamped sibling (never deleted) and the staging
 * directory takes its place. The admin token file moves along.
 */
export async function restoreBackup(backupDir: string, dataDir: string, options: { stamp: string; onStep?: (step: string) => void }): Promise<RestoreResult> {
  const step = options.onStep ?? (() => undefined);
  const target = resolve(dataDir);
  step(`reading ${join(backupDir, 'manifest.json')}`);
  const manifest = await readManifest(backupDir);
  if (manifest.versions.schema > SCHEMA_VERSION) {
    throw new BackupInvalidError(`the backup's schema version ${manifest.versions.schema} is newer than this build's (${SCHEMA_VERSION}): restore it with a newer Ocean Core`);
  }
  await assertDataDirFree(target);
  const staging = join(dirname(target), `${basename(target)}.restoring-${options.stamp}`);
  await mkdir(staging);
  let raised: RestoreResult['raised'];
  try {
    for (const { name } of manifest.files) {
      step(`copying ${name}`);
      await copyFile(join(backupDir, name), join(staging, name), constants.COPYFILE_EXCL);
    }
    step('verifying checksums');
    await verifyFiles(staging, manifest);
    step('checking integrity and counts');
    await verifyStores(staging, manifest);
    // Checked: from here the copy is ours to adjust. Ids continue above those of the data replaced.
    raised = raiseSequences(join(staging, SQLITE_FILE), replacedSequences(target, step));
    for (const r of raised) step(`${r.table} ids continue above ${r.to} (the data replaced had given them out; the backup's last was ${r.from})`);
    const token = join(target, 'admin.token');
    if (existsSync(token)) {
      await copyFile(token, join(staging, 'admin.token'), constants.COPYFILE_EXCL);
      await chmod(join(staging, 'admin.token'), 0o600);
    }
    for (const { name } of manifest.files) await syncPath(join(staging, name));
    await syncPath(staging);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  // Checked again just before the swap: a service started meanwhile is not moved out from under.
  await assertDataDirFree(target);
  let aside: string | null = null;
  if (existsSync(target)) {
    aside = join(dirname(target), `${basename(target)}.before-restore-${options.stamp}`);
    step(`moving the current data aside to ${aside}`);
    await rename(target, aside);
  }
  await rename(staging, target);
  await syncPath(dirname(target));
  return { manifest, aside, raised };
}
