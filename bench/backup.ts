/**
 * Online backup under load: a service (child process, `src/main.ts` under tsx) holding 1M readings
 * (--readings=N) in DuckDB, with JSON ingest going on, is backed up through
 * POST /api/ocean/admin/backup. Reported: the backup's duration and size (and per million readings),
 * and p50/p99/max of GET /health and GET /api/ocean/users/:id sampled without a backup, during it,
 * and without one again, in the same run (the machine is shared: compare the phases, not runs).
 *
 *   npm run bench:backup                      # about a minute
 *   npm run bench:backup -- --readings=3000000
 *
 * The readings are generated straight into DuckDB's tables (INSERT … SELECT), as a day of ingest
 * leaves them, in seconds instead of the minutes ingesting them would take; the stream's readings
 * never pass through SQLite, so ocean.db holds the operational data and the JSON work queue.
 */
import { Agent, request } from 'node:http';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg } from 'node:os';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { openService } from '../src/service.js';
import { launchTsx, stop } from '../test/helpers/child-process.js';
import { loadGenerated } from '../test/helpers/measurements.js';
import { freePort } from '../test/helpers/redis-server.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const READINGS = Math.round(Number(arg('readings') ?? 1_000_000));
const PHASE_S = Number(arg('phase') ?? 5);
const SENSORS = 1000;
const BASE_TS = 1_700_000_000;
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';
/** The whole run stops here whatever happens (the service is killed). */
const DEADLINE_MS = 10 * 60 * 1000;
const sensorId = (i: number) => `sensor-${String(i % SENSORS).padStart(4, '0')}`;

/** Writes the readings into DuckDB, a user with a session into SQLite; returns the user's id and token. */
async function populate(dataDir: string): Promise<{ userId: string; token: string }> {
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN, LOG_LEVEL: 'silent' });
  const service = await openService(config, { logger: pino({ level: 'silent' }) });
  try {
    const { store, analytics } = service;
    const user = store.users.create({ username: 'bench', email: 'bench@example.com' });
    const session = store.sessions.create(user.id, 'bench');
    // DuckDB: the readings in the layout's tables (one series per sensor), generated in SQL. The
    // stream's readings no longer pass through SQLite (they are committed to DuckDB directly), so
    // ocean.db holds the operational data only.
    await loadGenerated(analytics, {
      sensors: Array.from({ length: SENSORS }, (_, i) => sensorId(i)),
      count: READINGS,
      ts: `make_timestamp(((${BASE_TS} + i) * 1e6)::BIGINT)`,
      value: '20 + (i % 100) / 10',
      labId: 'lab-1',
      modelId: 16,
      source: 'stream',
    });
    return { userId: user.id, token: session.token };
  } finally {
    await service.close();
  }
}

/** One HTTP call; resolves with the status and the body. */
function call(agent: Agent, port: number, method: string, path: string, token: string, body?: object): Promise<{ status: number; body: string }> {
  const payload = body ? JSON.stringify(body) : undefined;
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, agent, headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

interface Sampler {
  stop(): Promise<{ health: number[]; user: number[]; at: Array<[at: number, ms: number]>; ingested: number; errors: number }>;
}

/** /health and a user lookup, each on its own connection every 5 ms; JSON ingest on a third at ~100/s. */
function sample(port: number, user: { userId: string; token: string }): Sampler {
  let running = true;
  const out = { health: [] as number[], user: [] as number[], at: [] as Array<[at: number, ms: number]>, ingested: 0, errors: 0 };
  const loop = async (fn: () => Promise<{ status: number }>, into: number[] | null, pauseMs: number) => {
    while (running) {
      const t = performance.now();
      const res = await fn();
      if (res.status !== 200) out.errors++;
      else if (into) {
        into.push(performance.now() - t);
        out.at.push([t, performance.now() - t]);
      }
      else out.ingested++;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  };
  const agents = [0, 1, 2].map(() => new Agent({ keepAlive: true, maxSockets: 1 }));
  const loops = [
    loop(() => call(agents[0]!, port, 'GET', '/health', ''), out.health, 5),
    loop(() => call(agents[1]!, port, 'GET', `/api/ocean/users/${user.userId}`, user.token), out.user, 5),
    loop(() => call(agents[2]!, port, 'POST', '/api/ocean/telemetry/ingest', user.token, { sensor_id: 'bench-live', data: { temperature: 21 } }), null, 10),
  ];
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      for (const a of agents) a.destroy();
      return out;
    },
  };
}

const pct = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
};
const line = (name: string, s: Awaited<ReturnType<Sampler['stop']>>, seconds: number) => {
  const f = (v: number[]) => `${pct(v, 0.5).toFixed(1).padStart(6)} ${pct(v, 0.99).toFixed(1).padStart(6)} ${Math.max(...v).toFixed(1).padStart(7)} ${String(v.length).padStart(6)}`;
  console.log(`${name.padEnd(22)} ${seconds.toFixed(1).padStart(6)} s | /health ${f(s.health)} | users/:id ${f(s.user)} | ingested ${s.ingested}, non-200 ${s.errors}`);
};

const { path: root, cleanup } = await makeTempDir('ocean-bench-backup-');
const dataDir = join(root, 'data');
const deadline = setTimeout(() => {
  console.error(`bench:backup: still running after ${DEADLINE_MS / 60000} minutes; stopping`);
  process.exit(1);
}, DEADLINE_MS);
let child: ReturnType<typeof launchTsx> | undefined;
try {
  let t = performance.now();
  const user = await populate(dataDir);
  console.log(`${READINGS.toLocaleString('en')} readings written into DuckDB in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const port = await freePort();
  child = launchTsx('src/main.ts', [], { env: { DATA_DIR: dataDir, PORT: String(port), ADMIN_TOKEN, LOG_LEVEL: 'info', REDIS_URL: undefined } });
  for (;;) {
    const up = await call(new Agent(), port, 'GET', '/health', '').catch(() => undefined);
    if (up?.status === 200) break;
    if (child.proc.exitCode !== null) throw new Error(`the service exited: ${child.stderr()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} cores; service: node --import tsx src/main.ts; latencies in ms: p50 p99 max samples`);

  let during: Awaited<ReturnType<Sampler['stop']>> | undefined;
  let backupStart = 0;
  const phase = async (name: string, work?: () => Promise<void>) => {
    const sampler = sample(port, user);
    t = performance.now();
    if (work) await work();
    else await new Promise((r) => setTimeout(r, PHASE_S * 1000));
    const seconds = (performance.now() - t) / 1000;
    const result = await sampler.stop();
    if (work) during = result;
    line(name, result, seconds);
  };
  let manifest: { duration_ms: number; files: Array<{ name: string; bytes: number }>; counts: { measurements: number; buffer_messages: number } } | undefined;
  await phase('without backup');
  await phase('during backup', async () => {
    backupStart = performance.now();
    const res = await call(new Agent(), port, 'POST', '/api/ocean/admin/backup', ADMIN_TOKEN, { dir: join(root, 'backup') });
    if (res.status !== 200) throw new Error(`backup answered ${res.status}: ${res.body}`);
    manifest = JSON.parse(res.body) as typeof manifest;
  });
  await phase('without backup, again');

  const m = manifest!;
  const steps = child.stdout().split('\n').filter((l) => l.includes('"backup step"')).map((l) => JSON.parse(l) as { step: string; atMs: number });
  // Latencies of both routes by the step of the backup they were sent in (the bench's clock, ~ the service's).
  const bounds = [...steps.map((s) => s.atMs), m.duration_ms];
  const bySteps = steps.map((s, i) => {
    const ms = during!.at.filter(([at]) => at - backupStart >= bounds[i]! && at - backupStart < bounds[i + 1]!).map(([, v]) => v);
    if (ms.length === 0) return `${s.step} from ${s.atMs} ms: no sample`;
    return `${s.step} from ${s.atMs} ms: p99 ${pct(ms, 0.99).toFixed(1)}, max ${Math.max(...ms).toFixed(1)} (${ms.length})`;
  });
  console.log(`during the backup's steps: ${bySteps.join('; ')}`);
  const bytes = m.files.reduce((n, f) => n + f.bytes, 0);
  const millions = READINGS / 1e6;
  const live = (name: string) => statSync(join(dataDir, name)).size;
  console.log(
    `backup: ${(m.duration_ms / 1000).toFixed(2)} s, ${(bytes / 1048576).toFixed(1)} MiB (${m.files.map((f) => `${f.name} ${(f.bytes / 1048576).toFixed(1)}`).join(', ')}); ` +
      `per million readings: ${(m.duration_ms / 1000 / millions).toFixed(2)} s, ${(bytes / 1048576 / millions).toFixed(1)} MiB; ` +
      `live files: ocean.db ${(live('ocean.db') / 1048576).toFixed(1)} MiB, analytics.duckdb ${(live('analytics.duckdb') / 1048576).toFixed(1)} MiB; ` +
      `measurements ${m.counts.measurements.toLocaleString('en')}, buffer messages ${m.counts.buffer_messages.toLocaleString('en')}`,
  );
} finally {
  await stop(child?.proc);
  clearTimeout(deadline);
  await cleanup();
}
