/**
 * Move-in command line:  move-in <data dir>     (DATABASE_URL: an empty PostgreSQL)
 * Copies an embedded data dir, with the service stopped, into the shared mode's PostgreSQL in one
 * transaction checked by counts and sums (postgres/move-in.ts). The data dir is only read.
 * Exit 0 when moved, 1 when refused or failed (nothing kept in PostgreSQL), 2 on bad arguments.
 */
import { resolve } from 'node:path';
import { openPostgres } from '../postgres/connect.js';
import { moveIn } from '../postgres/move-in.js';
import { runAsMain, type CommandIo } from './entry.js';

type Env = Record<string, string | undefined>;

export const USAGE = `usage: move-in <data dir>
  Copies an embedded data dir (ocean.db, analytics.duckdb) into the empty PostgreSQL named by
  DATABASE_URL, with the service stopped: users, sessions, billing and its ledger, devices and
  their secrets, metadata, events, the work queue, every reading and the replay window. Counts
  and sums are compared before it commits. The data dir is left as it was.
environment:
  DATABASE_URL   postgres://… of an empty database (never printed)
`;

export async function runMoveIn(argv: string[], env: Env, io: CommandIo): Promise<number> {
  const url = env.DATABASE_URL ?? '';
  if (argv.length !== 1 || argv[0]!.startsWith('-') || url === '') {
    io.err(url === '' && argv.length === 1 ? `move-in: DATABASE_URL is not set\n${USAGE}` : USAGE);
    return 2;
  }
  const dir = resolve(argv[0]!);
  const pool = openPostgres(url, { max: 2, statementTimeoutMs: 0 });
  try {
    const report = await moveIn(dir, pool);
    io.err(`move-in: ${dir} is in PostgreSQL (${report.counts.users} users, ${report.counts.devices} devices, ${report.counts.readings} readings); the data dir is unchanged\n`);
    io.out(`${JSON.stringify({ moved: dir, ...report })}\n`);
    return 0;
  } catch (err) {
    io.err(`move-in: refused: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await pool.end();
  }
}

runAsMain(import.meta.url, 'move-in', (argv, env, io) => runMoveIn(argv, env, io));
