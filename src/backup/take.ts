import { readFileSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Logger } from 'pino';
import type { AnalyticsFacts } from '../analytics/backup.js';
import { BadRequestError, ConflictError } from '../errors.js';
import type { OperationalFacts } from '../operational/backup.js';
import { DUCKDB_FILE, SQLITE_FILE, describeFile, syncPath, writeManifest, type Manifest } from './manifest.js';

/** How a backup reaches the two stores: through the running service, or through the files of a stopped one. */
export interface BackupSources {
  mode: Manifest['mode'];
  /** Copies DuckDB into a new file at `path`; what the copy holds. */
  analytics(path: string): Promise<AnalyticsFacts>;
  /** Copies SQLite into a new file at `path`; what the copy holds. */
  operational(path: string): Promise<OperationalFacts>;
  /** Runs the two copies (offline: with the stopped service's files open for them); optional. */
  around?<T>(fn: () => Promise<T>): Promise<T>;
}

/** The version in package.json (next to src/ and dist/ alike). */
export function appVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

export class BackupDirError extends ConflictError {
  constructor(message: string) {
    super(message, 'backup_dir_not_usable');
  }
}

/** Creates the backup directory; refuses one that holds anything (a backup never overwrites). */
async function prepareDir(dir: string): Promise<void> {
  if (!isAbsolute(dir)) throw new BadRequestError(`the backup directory must be an absolute path, got ${JSON.stringify(dir)}`, 'bad_backup_dir');
  let entries: string[];
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    entries = await readdir(dir);
  } catch (err) {
    // A path under a file, or one the service user may not create: the caller's to fix, not a 500.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR' || code === 'EEXIST' || code === 'EROFS' || code === 'ENOENT') {
      throw new BackupDirError(`cannot create or read the backup directory ${dir} (${code}) as the service's user`);
    }
    throw err;
  }
  if (entries.length > 0) throw new BackupDirError(`${dir} is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}); a backup goes into a new or empty directory`);
}

/**
 * Takes a backup into `dir`: DuckDB first, then SQLite, while ingest goes on. The SQLite copy is
 * the later one, so it holds every work-queue reading above DuckDB's queue_through mark (the
 * committer carries them into DuckDB again after a restore, exactly once), and frames acknowledged
 * after the DuckDB copy are not in the backup (a point in time, as any online copy). Then both
 * files are synced, measured and checksummed, and the manifest is written last, under a
 * temporary name renamed into place: a backup cut short has none.
 */
export async function takeBackup(dir: string, sources: BackupSources, onStep: (step: string) => void = () => undefined): Promise<Manifest> {
  const started = performance.now();
  await prepareDir(dir);
  const sqlitePath = join(dir, SQLITE_FILE);
  const duckdbPath = join(dir, DUCKDB_FILE);
  const copies = async () => {
    onStep(`copying ${DUCKDB_FILE}`);
    const analytics = await sources.analytics(duckdbPath);
    onStep(`copying ${SQLITE_FILE}`);
    return { analytics, operational: await sources.operational(sqlitePath) };
  };
  const { analytics, operational } = sources.around ? await sources.around(copies) : await copies();
  onStep('syncing and checksumming the copies');
  if (operational.bufferLastId < analytics.queueThrough) {
    throw new Error(`the copies disagree: DuckDB holds buffer rows up to ${analytics.queueThrough}, the buffer copy ends at ${operational.bufferLastId}`);
  }
  await syncPath(sqlitePath);
  await syncPath(duckdbPath);
  const files = [await describeFile(dir, SQLITE_FILE), await describeFile(dir, DUCKDB_FILE)];
  const manifest: Manifest = {
    format: 'ocean-core-backup',
    format_version: 1,
    created_at: new Date().toISOString(),
    mode: sources.mode,
    versions: { app: appVersion(), schema: operational.schemaVersion, sqlite: operational.sqliteVersion, duckdb: analytics.duckdbVersion },
    counts: {
      users: operational.users,
      sessions: operational.sessions,
      ledger: operational.ledger,
      devices: operational.devices,
      buffer_rows: operational.bufferRows,
      buffer_messages: operational.bufferMessages,
      measurements: analytics.measurements,
    },
    ingest: {
      buffer_last_id: operational.bufferLastId,
      effects_applied_through: operational.effectsAppliedThrough,
      duckdb_high_water: analytics.queueThrough,
      duckdb_batch: analytics.batch,
      stream_position: analytics.position,
    },
    last_ids: { ledger: operational.ledgerLastId, buffer: operational.bufferLastId },
    files,
    duration_ms: Math.round(performance.now() - started),
  };
  onStep('writing the manifest');
  await writeManifest(dir, manifest);
  return manifest;
}

/** takeBackup, one at a time (a second call while one runs is refused with 409); each step logged with the time it began. */
export function singleBackup(sources: BackupSources, logger: Logger): (dir: string) => Promise<Manifest> {
  const log = logger.child({ component: 'backup' });
  let running = false;
  return async (dir) => {
    if (running) throw new ConflictError('a backup is already running', 'backup_running');
    running = true;
    const started = performance.now();
    try {
      return await takeBackup(dir, sources, (step) => log.info({ dir, step, atMs: Math.round(performance.now() - started) }, 'backup step'));
    } finally {
      running = false;
    }
  };
}
