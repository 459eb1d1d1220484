/**
 * The README's walkthrough, run as written, so that it cannot drift from the code. The blocks
 * marked `<!-- readme-test: NAME -->` run in bash (`set -euo pipefail`; curl fails on an HTTP
 * error and ends its output with a newline) in a scratch directory laid out like a clone (links to the repository's files; `data/`
 * and `dev.env` are its own), against `npm start` and a redis-server of the test's own. The only
 * edit is the port numbers: 8030 becomes a free port and 6379 the test's Redis.
 *
 * It also checks what a supervisor relies on: SIGTERM to `npm start` stops the server (exit 0,
 * port released), rather than leaving node serving behind npm.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, finished, launch, REPO_ROOT } from '../helpers/child-process.js';
import { waitFor } from '../helpers/frames.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

/** The code blocks marked with this name, in order. */
function blocks(name: string): string[] {
  const marker = new RegExp(`<!-- readme-test: ${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} -->\\n+\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``, 'g');
  const found = [...README.matchAll(marker)].map((m) => m[1]!);
  if (found.length === 0) throw new Error(`README has no block marked readme-test: ${name}`);
  return found;
}

/** A clone's layout without copying it: what `npm start`, `npm run frames` and `npx tsx` read. */
const LINKED = ['package.json', 'package-lock.json', 'node_modules', 'src', 'examples', 'tsconfig.json', 'tsconfig.build.json'];

describe('the README, followed literally', () => {
  let dir: TempDir;
  let redis: RedisServer;
  let port: number;
  let server: ChildProcess | undefined;
  /** The shell's environment: no NANOGRIDATA_* or REDIS_URL from the machine running the tests. */
  let env: Record<string, string>;

  const localise = (script: string) => script.replaceAll('8030', String(port)).replaceAll('6379', String(redis.port));
  const bash = (script: string, timeoutMs = 60_000) =>
    finished(
      launch('bash', ['-c', `set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; echo; }\n${localise(script)}`], { cwd: dir.path, env, keep: Infinity }),
      timeoutMs,
    );
  /** Starts a server command in its own process group; resolves once /health answers. */
  const startServer = async (script: string) => {
    server = launch('bash', ['-c', localise(script)], { cwd: dir.path, env: { ...env, PORT: String(port) }, detached: true }).proc;
    await waitFor(() => fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false), { timeoutMs: 120_000, intervalMs: 250, what: 'the server to answer /health' });
    return server;
  };
  const portClosed = () => fetch(`http://127.0.0.1:${port}/health`).then(() => false, () => true);

  beforeAll(async () => {
    dir = await makeTempDir('ocean-readme-');
    for (const name of LINKED) await symlink(join(REPO_ROOT, name), join(dir.path, name));
    redis = await startRedis();
    port = await freePort();
    env = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(NANOGRIDATA_|REDIS_URL$|PORT$|DATA_DIR$|ADMIN_TOKEN$)/.test(k)) env[k] = v;
  }, 30_000);

  afterAll(async () => {
    // A test that failed half-way leaves its server running: stop its whole process group.
    if (server?.pid !== undefined && server.exitCode === null && server.signalCode === null) {
      try {
        process.kill(-server.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited(server);
    }
    await redis?.stop();
    await dir?.cleanup();
  });

  it('quick start and examples: npm start serves them all; SIGTERM to npm start stops the server', async () => {
    const { UV_THREADPOOL_SIZE: _, ...startEnv } = env;
    const npm = launch('npm', ['start'], { cwd: dir.path, env: { ...startEnv, PORT: String(port) } }).proc;
    server = npm;
    await waitFor(() => fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false), { timeoutMs: 120_000, intervalMs: 250, what: 'npm start to serve' });

    const run = await bash(blocks('quickstart').join('\n'));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('"status":"healthy"');
    expect(run.stdout).toContain('"valid":true');
    expect(run.stdout).toMatch(/"credits":100/);
    expect(run.stdout).toContain('"depth_m":12');
    expect(run.stdout).toMatch(/"comparison":\{"T-1":\{"count":2,/);
    // The parquet export landed in the working directory under the server's file name.
    const ls = await bash('ls');
    expect(ls.stdout).toMatch(/ocean-measurements-\d{8}T\d{6}Z\.parquet/);

    // npm start runs node (its child, through sh's exec) with a libuv pool of 16 threads: set in its
    // environment, since the pool starts before main.js could set it. The pool has started by now
    // (DuckDB queries, file reads); its 16 threads are there beside the others (about 14 with 4).
    const [nodePid] = readFileSync(`/proc/${npm.pid}/task/${npm.pid}/children`, 'utf8').trim().split(/\s+/);
    expect(readFileSync(`/proc/${nodePid}/cmdline`, 'utf8')).toContain('dist/main.js');
    expect(readFileSync(`/proc/${nodePid}/environ`, 'utf8').split('\0')).toContain('UV_THREADPOOL_SIZE=16');
    expect(readdirSync(`/proc/${nodePid}/task`).length).toBeGreaterThan(16);

    // What a supervisor does: SIGTERM to the process it started, which is npm.
    npm.kill('SIGTERM');
    expect(await exited(npm)).toBe(0);
    expect(await portClosed()).toBe(true);
  }, 180_000);

  it('the stream walkthrough: secrets on both sides, frames, JSON, simulator and the TypeScript producer reach analytics', async () => {
    const secrets = await bash(blocks('secrets').join('\n'));
    expect(secrets.code, secrets.stderr).toBe(0);
    const [serve] = blocks('server');
    await startServer(serve!);

    const run = await bash(blocks('stream').join('\n'), 90_000);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    const summary = run.stdout.split('\n').find((l) => l.startsWith('{"target":"redis"'));
    expect(JSON.parse(summary!)).toMatchObject({ errors: 0, profile: 'mixed' });
    const sensorsLine = run.stdout.split('\n').find((l) => l.startsWith('{"count":'));
    const ids = (JSON.parse(sensorsLine!) as { sensors: Array<{ sensor_id: string }> }).sensors.map((s) => s.sensor_id);
    expect(ids).toEqual(expect.arrayContaining(['ESP32-001', 'T-2', 'TS-001']));
    // The mixed profile's four models all got through (their devices are named SIM-<kind>-NNNN).
    expect(new Set(ids.filter((id) => id.startsWith('SIM-')).map((id) => id.split('-')[1])).size).toBe(4);
    expect(run.stdout).toContain('c0ffee');

    // The TypeScript shown is the file that ran.
    expect(blocks('examples/push-frame.ts')[0]).toBe(readFileSync(join(REPO_ROOT, 'examples', 'push-frame.ts'), 'utf8'));

    process.kill(-server!.pid!, 'SIGTERM');
    await exited(server!);
    expect(await portClosed()).toBe(true);
  }, 240_000);
});
