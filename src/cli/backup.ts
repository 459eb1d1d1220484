/**
 * Backup command line:  backup <dir>
 * Asks the running service (OCEAN_URL, else http://HOST:PORT) for an online backup into <dir>, with
 * the admin token (ADMIN_TOKEN, else DATA_DIR/admin.token); when nothing answers there, backs up the
 * files of DATA_DIR directly (the service stopped). Steps on stderr; the manifest on stdout.
 * Exit 0 when the backup is whole (its manifest written), 1 when it failed, 2 on bad arguments.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { runAsMain, type CommandIo } from './entry.js';
import { opsArgs } from './ops-args.js';
import type { OpsConfig } from '../config.js';
import type { Manifest } from '../backup/manifest.js';
import { offlineSources } from '../backup/offline.js';
import { requestBackup, serviceAnswers } from '../backup/service-client.js';
import { takeBackup } from '../backup/take.js';

type Env = Record<string, string | undefined>;

export const USAGE = `usage: backup <dir>
  Writes a consistent backup of DATA_DIR (ocean.db, analytics.duckdb, manifest.json) into <dir>,
  a new or empty directory. With the service running it is asked to do it (POST /api/ocean/admin/backup):
  <dir> is then a path on the service's host. Without a service, the files are read directly.
environment:
  DATA_DIR                the service's data directory (default ./data)
  OCEAN_URL or HOST/PORT  where the running service answers (default http://127.0.0.1:8030)
  ADMIN_TOKEN             the admin token (default: read from DATA_DIR/admin.token)
`;

/** What a shared PostgreSQL store needs instead (DATABASE_URL set: the data is there, not in DATA_DIR). */
export const PG_DUMP_NOTE = `backup: DATABASE_URL is set: the data is in that PostgreSQL, not in DATA_DIR, and is backed up with PostgreSQL's own tools, not by this command:
  pg_dump --format=custom --file=<dir>/ocean.pgdump "$DATABASE_URL"        (consistent while the service runs)
  pg_restore --clean --if-exists --dbname="$DATABASE_URL" <dir>/ocean.pgdump  (with the service stopped)
Nothing was written.
`;

function adminToken(config: OpsConfig): string | undefined {
  if (config.adminToken) return config.adminToken;
  const path = join(config.dataDir, 'admin.token');
  return existsSync(path) ? readFileSync(path, 'utf8').trim() || undefined : undefined;
}

/** Runs the command; returns the exit code. */
export async function runBackup(argv: string[], env: Env, io: CommandIo): Promise<number> {
  const args = opsArgs('backup', USAGE, argv, env, io);
  if (!args) return 2;
  const { dir, config } = args;
  if (config.databaseUrlSet) {
    io.err(PG_DUMP_NOTE);
    return 1;
  }
  try {
    let manifest: Manifest;
    if (await serviceAnswers(config.serviceUrl)) {
      const token = adminToken(config);
      if (!token) throw new Error(`a service answers at ${config.serviceUrl}, but there is no admin token: set ADMIN_TOKEN or DATA_DIR`);
      io.err(`backup: asking the service at ${config.serviceUrl} for an online backup into ${dir}\n`);
      manifest = await requestBackup(config.serviceUrl, token, dir);
    } else {
      io.err(`backup: no service answers at ${config.serviceUrl}; backing up the files of ${resolve(config.dataDir)} into ${dir}\n`);
      manifest = await takeBackup(dir, offlineSources(config.dataDir), (step) => io.err(`backup: ${step}\n`));
    }
    const bytes = manifest.files.reduce((n, f) => n + f.bytes, 0);
    io.err(`backup: done in ${(manifest.duration_ms / 1000).toFixed(1)} s, ${(bytes / 1048576).toFixed(1)} MiB, ${manifest.counts.measurements} measurements\n`);
    io.out(`${JSON.stringify(manifest)}\n`);
    return 0;
  } catch (err) {
    io.err(`backup: failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

runAsMain(import.meta.url, 'backup', runBackup);
