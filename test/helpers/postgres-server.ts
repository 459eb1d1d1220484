import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { openPostgres, type Pg } from '../../src/postgres/connect.js';
import { migratePostgres } from '../../src/postgres/migrations.js';
import { stop } from './child-process.js';
import { freePort } from './redis-server.js';
import { makeTempDir } from './temp-dir.js';

export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  /** A URL to a new, empty database on this server (each test can have its own). */
  createDatabase(): Promise<string>;
  /** Stops (fast shutdown: committed work is kept) and starts again on the same port and directory. */
  restart(): Promise<void>;
  /** Stops it (fast shutdown), until up(). */
  down(): Promise<void>;
  /** Starts it again after down(), on the same port and directory. */
  up(): Promise<void>;
  /** Stops the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<major>/bin. */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const majors = readdirSync(root).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
    for (const major of majors) if (existsSync(join(root, major, 'bin', 'postgres'))) return join(root, major, 'bin');
  }
  throw new Error('PostgreSQL server binaries not found (Debian: apt-get install postgresql; .ci/run installs it)');
}

/**
 * Whether the PostgreSQL tests should be skipped: the server binaries are missing (Debian's
 * postgresql package). As with the other optional tools, one line says so outside CI; with CI=true
 * (.ci/run installs the package) the missing package fails the file instead.
 */
export function skipWithoutPostgres(): boolean {
  try {
    binDir();
    return false;
  } catch (err) {
    if (process.env.CI === 'true') throw new Error(`${(err as Error).message}; CI requires it`, { cause: err });
    console.warn(`skipping the shared-mode (PostgreSQL) tests: ${(err as Error).message}`);
    return true;
  }
}

/** initdb and postgres refuse to run as root: as root, they run as the `postgres` user. */
function runAs(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

async function waitForConnect(url: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`postgres at ${url} did not answer: ${String(err)}`, { cause: err });
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

/**
 * A private PostgreSQL for one test file: a fresh cluster (initdb, trust auth) in a temp directory,
 * listening on 127.0.0.1 on a free port, never the machine's own on 5432. fsync is off: a test
 * cluster need not survive a power cut, and a fast shutdown (restart()) still keeps every commit.
 */
export async function startPostgres(): Promise<PostgresServer> {
  const temp = await makeTempDir('ocean-pg-');
  const bin = binDir();
  const owner = runAs();
  if (owner) chownSync(temp.path, owner.uid, owner.gid);
  const data = join(temp.path, 'data');
  execFileSync(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync'], {
    stdio: 'pipe',
    ...owner,
  });
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const args = ['-D', data, '-p', String(port), '-k', temp.path, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'];
  let child: ChildProcess | undefined;
  let log = '';
  let databases = 0;
  let stopped: Promise<void> | undefined;

  const launch = async () => {
    const proc = spawn(join(bin, 'postgres'), args, { stdio: ['ignore', 'pipe', 'pipe'], ...owner });
    for (const stream of [proc.stdout, proc.stderr]) stream.setEncoding('utf8').on('data', (chunk: string) => (log = (log + chunk).slice(-10_000)));
    child = proc;
    try {
      await waitForConnect(url);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${log}`, { cause: err });
    }
  };
  // SIGINT is PostgreSQL's fast shutdown: sessions are ended, every committed transaction is kept.
  const halt = async () => {
    if (!child) return;
    const c = child;
    child = undefined;
    await stop(c, { signal: 'SIGINT' });
  };

  await launch();
  return {
    url,
    port,
    async createDatabase() {
      const name = `ocean_test_${++databases}`;
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async restart() {
      await halt();
      await launch();
    },
    down: halt,
    up: launch,
    stop() {
      stopped ??= (async () => {
        await halt();
        await temp.cleanup();
      })();
      return stopped;
    },
  };
}

/**
 * For a test file: one private server, started before its tests, and `database(n)`: a new migrated
 * database with n pools on it (n instances of the shared mode), ended after each test.
 */
export function usePostgres(): { database(instances?: number): Promise<Pg[]>; server(): PostgresServer } {
  let server: PostgresServer | undefined;
  const pools: Pg[] = [];
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.end()));
  });
  afterAll(() => server?.stop());
  return {
    async database(instances = 1) {
      const url = await server!.createDatabase();
      const made = Array.from({ length: instances }, () => openPostgres(url, { max: 4 }));
      pools.push(...made);
      await migratePostgres(made[0]!);
      return made;
    },
    server: () => server!,
  };
}
