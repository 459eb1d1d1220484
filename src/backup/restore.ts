import { constants, existsSync } from 'node:fs';
import { access, chmod, copyFile, mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
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
    ['last ledger id', facts.ledgerLastId, ids.ledger],
    ['measurements', analytics.measurements, counts.measurements],
    ['DuckDB queue-through mark', analytics.queueThrough, ingest.duckdb_high_water],
  ];
  if (ingest.duckdb_batch !== undefined) pairs.push(['DuckDB ingest batch', analytics.batch, ingest.duckdb_batch]);
  if (ingest.effects_applied_through !== undefined) pairs.push(['side effects applied through', facts.effectsAppliedThrough, ingest.effects_applied_through]);
  for (const [what, actual, expected] of pairs) {
    if (actual !== expected) throw new BackupInvalidError(`the backup holds ${actual} for ${what}, its manifest says ${expected}`);
  }
  if (analytics.queueThrough > facts.bufferLastId) throw new BackupInvalidError(`DuckDB holds buffer rows up to ${analytics.queueThrough}, beyond the buffer's last id ${facts.bufferLastId}`);
}

/** Where a restore stages the copy and puts the data it replaces. */
export interface RestorePlaces {
  staging: string;
  aside: string;
  /** Inside DATA_DIR (a mount point, or a parent the service user cannot write): entries move one by one. */
  inside: boolean;
}

/**
 * Beside DATA_DIR (`<DATA_DIR>.restoring-<stamp>`, `<DATA_DIR>.before-restore-<stamp>`, swapped by two
 * renames), or inside it (`.restoring-<stamp>`, `before-restore-<stamp>`) when DATA_DIR cannot be
 * renamed: a mount point (the compose stack's volume) or in a directory that cannot be written.
 */
export async function restorePlaces(target: string, stamp: string): Promise<RestorePlaces> {
  let inside = false;
  if (existsSync(target)) {
    const parent = dirname(target);
    const mountPoint = (await stat(target)).dev !== (await stat(parent)).dev;
    const parentWritable = await access(parent, constants.W_OK).then(() => true, () => false);
    inside = mountPoint || !parentWritable;
  }
  return inside
    ? { staging: join(target, `.restoring-${stamp}`), aside: join(target, `before-restore-${stamp}`), inside }
    : { staging: join(dirname(target), `${basename(target)}.restoring-${stamp}`), aside: join(dirname(target), `${basename(target)}.before-restore-${stamp}`), inside };
}

/** The service's files in a data dir (with their WAL and lock companions): what a restore inside it moves aside. */
const DATA_FILES = new Set([SQLITE_FILE, `${SQLITE_FILE}-wal`, `${SQLITE_FILE}-shm`, `${SQLITE_FILE}-journal`, DUCKDB_FILE, `${DUCKDB_FILE}.wal`, 'admin.token']);

/**
 * Installs the staged copy: renames DATA_DIR aside and the staging directory into its place, or,
 * inside DATA_DIR, moves the service's files into the aside directory and the staged ones up. Returns
 * where the data replaced went (null: there was none).
 */
export async function swapIn(target: string, places: RestorePlaces): Promise<string | null> {
  if (places.inside) {
    await mkdir(places.aside);
    // Only the service's files: other entries (earlier asides, a backups directory) stay where they are.
    for (const name of await readdir(target)) {
      if (DATA_FILES.has(name)) await rename(join(target, name), join(places.aside, name));
    }
    for (const name of await readdir(places.staging)) await rename(join(places.staging, name), join(target, name));
    await rmdir(places.staging);
    await syncPath(target);
    return places.aside;
  }
  let aside: string | null = null;
  if (existsSync(target)) {
    await rename(target, places.aside);
    aside = places.aside;
  }
  await rename(places.staging, target);
  await syncPath(dirname(target));
  return aside;
}

/**
 * Restores the backup in `backupDir` into `dataDir` (the service stopped): the files are copied
 * into a staging directory (restorePlaces) and checked there (manifest, sizes, SHA-256,
 * integrity_check, counts); the copy's id sequences are raised above those of the data it
 * replaces; then the current data goes aside, timestamped (never deleted), and the staged copy
 * takes its place (swapIn). The admin token file is carried over.
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
  await mkdir(dirname(target), { recursive: true });
  const places = await restorePlaces(target, options.stamp);
  const { staging } = places;
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
  step(existsSync(target) ? `moving the current data aside to ${places.aside}` : `installing into ${target}`);
  const aside = await swapIn(target, places);
  return { manifest, aside, raised };
}
