/**
 * Restore command line:  restore <dir>
 * With the service stopped: checks the backup in <dir> (manifest, sizes, SHA-256, integrity_check,
 * counts), moves DATA_DIR aside to a timestamped sibling (never deleted) and installs the backup in
 * its place. Exit 0 when restored, 1 when refused or failed (nothing changed), 2 on bad arguments.
 */
import { resolve } from 'node:path';
import { runAsMain, type CommandIo } from './entry.js';
import { opsArgs } from './ops-args.js';
import { restoreBackup } from '../backup/restore.js';

type Env = Record<string, string | undefined>;

export const USAGE = `usage: restore <dir>
  Installs the backup in <dir> as DATA_DIR, with the service stopped. The data that was in
  DATA_DIR is moved to DATA_DIR.before-restore-<time> beside it, never deleted.
environment:
  DATA_DIR   the service's data directory (default ./data)
`;

/** Runs the command; returns the exit code. `stamp` names the directories it makes (a time, by default now). */
export async function runRestore(argv: string[], env: Env, io: CommandIo, stamp = new Date().toISOString().replace(/[:.]/g, '-')): Promise<number> {
  const args = opsArgs('restore', USAGE, argv, env, io);
  if (!args) return 2;
  const { dir, config } = args;
  try {
    const { manifest, aside } = await restoreBackup(dir, config.dataDir, { stamp, onStep: (step) => io.err(`restore: ${step}\n`) });
    io.err(`restore: ${dir} (taken ${manifest.created_at}) is now ${resolve(config.dataDir)}${aside ? `; the data that was there is in ${aside}` : ''}; start the service\n`);
    io.out(`${JSON.stringify({ restored: dir, data_dir: resolve(config.dataDir), aside, manifest })}\n`);
    return 0;
  } catch (err) {
    io.err(`restore: refused: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

runAsMain(import.meta.url, 'restore', (argv, env, io) => runRestore(argv, env, io));
