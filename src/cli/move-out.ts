/**
 * Move-out command line:  move-out <new data dir>     (DATABASE_URL: the shared mode's PostgreSQL)
 * Copies the shared PostgreSQL back into a new embedded data dir (postgres/move-out.ts), checked by
 * counts and sums. PostgreSQL is only read. Exit 0 when moved, 1 when refused or failed (the new
 * data dir removed), 2 on bad arguments.
 */
import { resolve } from 'node:path';
import { openPostgres } from '../postgres/connect.js';
import { moveOut } from '../postgres/move-out.js';
import { runAsMain, type CommandIo } from './entry.js';

type Env = Record<string, string | undefined>;

export const USAGE = `usage: move-out <new data dir>
  Copies everything in the PostgreSQL named by DATABASE_URL into a new embedded data dir (ocean.db,
  analytics.duckdb), from one consistent snapshot, then compares counts and sums. Stop the
  instances first. The directory must not exist or be empty; PostgreSQL is left as it was.
environment:
  DATABASE_URL   postgres://… (never printed)
`;

export async function runMoveOut(argv: string[], env: Env, io: CommandIo): Promise<number> {
  const url = env.DATABASE_URL ?? '';
  if (argv.length !== 1 || argv[0]!.startsWith('-') || url === '') {
    io.err(url === '' && argv.length === 1 ? `move-out: DATABASE_URL is not set\n${USAGE}` : USAGE);
    return 2;
  }
  const dir = resolve(argv[0]!);
  const pool = openPostgres(url, { max: 2, statementTimeoutMs: 0 });
  try {
    const report = await moveOut(pool, dir);
    io.err(`move-out: ${dir} holds the shared store now (${report.counts.users} users, ${report.counts.devices} devices, ${report.counts.readings} readings); start the service with DATA_DIR=${dir}\n`);
    io.out(`${JSON.stringify({ moved_to: dir, ...report })}\n`);
    return 0;
  } catch (err) {
    io.err(`move-out: refused: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await pool.end();
  }
}

runAsMain(import.meta.url, 'move-out', (argv, env, io) => runMoveOut(argv, env, io));
