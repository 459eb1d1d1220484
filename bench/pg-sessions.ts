/**
 * Session validation, embedded vs the shared mode (`npm run bench:pg-sessions`): two Ocean Core
 * processes as built (dist/main.js), one on SQLite in a temp DATA_DIR, one on a private PostgreSQL
 * (DATABASE_URL), each with a user and a session made through the API. autocannon sends
 * POST /api/ocean/sessions/validate flat out to each in turn (`--rounds`, default 3, `--duration`
 * seconds each, default 5, `--connections`, default 50); the report compares the medians. The
 * embedded store answers a validation from its in-process cache; the shared one reads PostgreSQL on
 * every request (no cache: a revocation through another instance holds at once).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { stop } from '../test/helpers/child-process.js';
import { waitFor } from '../test/helpers/frames.js';
import { startPostgres } from '../test/helpers/postgres-server.js';
import { freePort } from '../test/helpers/redis-server.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
  },
});
const ADMIN = { authorization: 'Bearer bench-admin-token-0123456789abcdef' };

/** A service process on a free port; its base URL once /health answers. */
async function startInstance(env: Record<string, string>, children: ChildProcess[]): Promise<string> {
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/main.js'], {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port), ADMIN_TOKEN: ADMIN.authorization.slice(7), LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(() => fetch(`${base}/health`).then((r) => r.ok, () => false), { what: 'the instance serving', timeoutMs: 60_000, intervalMs: 100 });
  return base;
}

/** A user and a session made through the API; the validate request's body. */
async function sessionBody(base: string): Promise<string> {
  const post = async (path: string, body: object) =>
    (await fetch(`${base}/api/ocean${path}`, { method: 'POST', headers: { ...ADMIN, 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<Record<string, string>>;
  const user = await post('/users', { username: 'bench', email: 'bench@example.com' });
  const session = await post('/sessions/create', { user_id: user.id!, username: 'bench' });
  return JSON.stringify({ token: session.token });
}

const children: ChildProcess[] = [];
const pgServer = await startPostgres();
const dirs = [await makeTempDir('ocean-bench-'), await makeTempDir('ocean-bench-')];
try {
  const targets = [
    { name: 'embedded (SQLite, cached)', base: await startInstance({ DATA_DIR: dirs[0]!.path }, children) },
    { name: 'shared mode (PostgreSQL, uncached)', base: await startInstance({ DATA_DIR: dirs[1]!.path, DATABASE_URL: await pgServer.createDatabase() }, children) },
  ];
  const bodies = await Promise.all(targets.map((t) => sessionBody(t.base)));
  const rps = targets.map(() => [] as number[]);
  const duration = Number(values.duration);
  console.log(`POST /api/ocean/sessions/validate, ${values.connections} connections, ${values.rounds} rounds of ${duration} s each, alternating`);
  for (let round = -1; round < Number(values.rounds); round++) {
    for (const [i, t] of targets.entries()) {
      const result = await autocannon({
        url: `${t.base}/api/ocean/sessions/validate`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: bodies[i]!,
        connections: Number(values.connections),
        // Round -1 warms both up (JIT, connections) and is not counted.
        duration: round < 0 ? 2 : duration,
      });
      if (result.non2xx > 0 || result.errors > 0) throw new Error(`${t.name}: ${result.non2xx} non-2xx, ${result.errors} errors`);
      if (round >= 0) {
        rps[i]!.push(result.requests.average);
        console.log(`  round ${round + 1}  ${t.name.padEnd(36)} ${result.requests.average.toFixed(0).padStart(7)} req/s  p50 ${result.latency.p50} ms  p99 ${result.latency.p99} ms`);
      }
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const [embedded, shared] = rps.map(median) as [number, number];
  console.log(`median: embedded ${embedded.toFixed(0)} req/s, shared ${shared.toFixed(0)} req/s: ${(shared / embedded).toFixed(2)} × embedded`);
} finally {
  await Promise.all(children.map((c) => stop(c)));
  await pgServer.stop();
  for (const d of dirs) await d.cleanup();
}
