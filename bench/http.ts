/**
 * HTTP benchmark (`npm run bench:http`): one Ocean Core server (the build in dist/, which the npm
 * script makes first) in a child process (temp data dir, 127.0.0.1, an ephemeral port) with the
 * DEFAULT configuration (LOG_LEVEL=info, the logger of main.ts writing to a file in the data dir)
 * and, as deployed, a Redis stream consumer connected to a private redis-server (a free port, never
 * 6379; `--no-redis` leaves REDIS_URL unset), plus a constant-JSON route.
 *
 * Steady load first: requests at evenly spaced times (steady-load.ts), `--steady-duration` seconds
 * per run (default 15), the server process's CPU (/proc/<pid>/stat: every thread, DuckDB's and the
 * decode worker's included) as a share of one core and per request. Kinds: `steady-idle` (nothing
 * arrives), `steady-lookup` (`--rate` GET users/:id a second, default 1000), `steady-readings`
 * (rate/3 POST telemetry/ingest), `steady-mix` (rate of lookup, validate, JSON ingest in turn).
 * The floor, in the same run: a bare Fastify (default options, no logger) in a process of its own
 * answering constant JSON at `--rate`. The kinds run in turn, `--steady-rounds` rounds (default 3),
 * each after 2 s without load; the report compares medians.
 *
 * Then flat out (autocannon, `--connections` 50, `--duration` s): user lookup, session validate,
 * JSON ingest, `/health`; the baseline is a bare Fastify in the server process (the same constant
 * route inside the service is reported beside it). Each case runs `--rounds` times (default 2),
 * alternating with the baseline, because the load generator shares the machine's cores.
 *
 * Options: --duration S (default 5), --connections N (default 50), --rounds N (default 2),
 * --rate N (default 1000), --steady-duration S (default 15), --steady-rounds N (default 3),
 * --cases a,b (only these: steady-idle, steady-lookup, steady-readings, steady-mix, constant,
 * lookup, validate, ingest, health, or the groups `steady` and `flat`), --no-redis,
 * --cpu-prof DIR (the server's CPU profiles, every thread, and `windows.json`: when each steady run
 * began and ended on the profiles' clock, for bench/profile-top.ts),
 * --sqlite-exclusive (experiment: the server's SQLite connection in locking_mode=EXCLUSIVE),
 * --no-flusher (experiment: do not start the buffer → DuckDB flusher, to separate its cost).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { startRedis, type RedisServer } from '../test/helpers/redis-server.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';
import { processCpuUs, steadyLoad, type SteadyResult, type Target } from './steady-load.js';

interface Ready {
  port: number;
  /** A bare Fastify (no logger, no hooks) in the same process: the flat-out baseline. */
  barePort: number;
  userId: string;
  token: string;
}

const constant = async () => ({ status: 'ok', service: 'ocean-core', n: 1 });

/** The server side: the whole service as main.ts composes it, plus the baseline route. */
async function serve(redisUrl: string | undefined): Promise<void> {
  // The compiled service, as production runs it (`npm run bench:http` builds it first): from the
  // TypeScript sources every worker thread would bring tsx's loader and its threads along.
  const built = (name: string) => new URL(`../dist/${name}.js`, import.meta.url).href;
  const { loadConfig } = (await import(built('config'))) as typeof import('../src/config.js');
  const { createLogger } = (await import(built('logger'))) as typeof import('../src/logger.js');
  const { openService } = (await import(built('service'))) as typeof import('../src/service.js');
  const { path: dataDir, cleanup: removeDataDir } = await makeTempDir('ocean-bench-http-');
  // The default configuration (LOG_LEVEL=info) and main.ts's logger; only its destination is a file.
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: 'bench-admin-token-0123456789', ...(redisUrl ? { REDIS_URL: redisUrl } : {}) });
  const logFile = join(dataDir, 'service.log');
  const logger = createLogger(config.logLevel, pino.destination({ dest: logFile, sync: true }));
  const service = await openService(config, { logger });
  if (process.argv.includes('--sqlite-exclusive')) {
    // Experiment: hold the SQLite file lock for the connection's lifetime (no per-read shm locking).
    service.store.db.pragma('locking_mode = EXCLUSIVE');
  }
  // The baseline: a bare Fastify with default options in the same process, and the same constant
  // route inside the service (which pays the service's hooks: request logging, metrics).
  const bare = Fastify();
  bare.get('/bench/constant', constant);
  await bare.listen({ host: '127.0.0.1', port: 0 });
  service.app.get('/bench/constant', constant);
  // The flusher (buffer → DuckDB) is part of the service; --no-flusher isolates the HTTP + SQLite cost.
  if (!process.argv.includes('--no-flusher')) await service.start();
  await service.app.listen({ host: '127.0.0.1', port: 0 });
  // Idle means "the consumer connected and nothing arriving": wait for the connection.
  for (let i = 0; service.consumer && !service.consumer.status().connected; i++) {
    if (i > 200) throw new Error('the stream consumer did not connect');
    await sleep(50);
  }
  const address = service.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const user = service.store.users.create({ username: 'bench', email: 'bench@example.com' });
  const session = service.store.sessions.create(user.id, 'bench');
  process.send!({ port: address.port, barePort: (bare.server.address() as AddressInfo).port, userId: user.id, token: session.token } satisfies Ready);
  process.on('message', (msg) => {
    if (msg === 'cpu') {
      const { user, system } = process.cpuUsage();
      void stat(logFile).then(
        (s) => process.send!({ cpuUs: user + system, logBytes: s.size }),
        () => process.send!({ cpuUs: user + system, logBytes: 0 }),
      );
      return;
    }
    if (msg !== 'stop') return;
    void bare
      .close()
      .then(() => service.close())
      .then(removeDataDir)
      .then(() => process.exit(0));
  });
}

/** The steady floor: a bare Fastify (default options, no logger) alone in its process. */
async function serveBare(): Promise<void> {
  const bare = Fastify();
  bare.get('/bench/constant', constant);
  await bare.listen({ host: '127.0.0.1', port: 0 });
  process.send!({ port: (bare.server.address() as AddressInfo).port });
  process.on('message', (msg) => {
    if (msg === 'stop') void bare.close().then(() => process.exit(0));
  });
}

interface CaseResult {
  rps: number;
  /** Server CPU time per answered request: robust to a busy machine, unlike req/s. */
  cpuUsPerReq: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

interface SteadyRun extends SteadyResult {
  /** CPU of the measured process over wall time, in % of one core. */
  share: number;
  /** CPU µs per answered request (NaN when idle). */
  usPerReq: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const FLAT_CASES: Record<string, string> = {
  constant: 'service constant route',
  lookup: 'GET users/:id',
  validate: 'POST sessions/validate',
  ingest: 'POST telemetry/ingest',
  health: 'GET /health',
};
const STEADY_CASES = ['steady-idle', 'steady-lookup', 'steady-readings', 'steady-mix'] as const;

async function drive(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '5' },
      connections: { type: 'string', default: '50' },
      rounds: { type: 'string', default: '2' },
      rate: { type: 'string', default: '1000' },
      'steady-duration': { type: 'string', default: '15' },
      'steady-rounds': { type: 'string', default: '3' },
      'cpu-prof': { type: 'string' },
      cases: { type: 'string' },
      'no-redis': { type: 'boolean', default: false },
      'sqlite-exclusive': { type: 'boolean', default: false },
      'no-flusher': { type: 'boolean', default: false },
    },
  });
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  const rounds = Number(values.rounds);
  const rate = Number(values.rate);
  const steadyDuration = Number(values['steady-duration']);
  const steadyRounds = Number(values['steady-rounds']);
  const prof = values['cpu-prof'];
  if (prof) await mkdir(prof, { recursive: true });
  const wanted = values.cases?.split(',').flatMap((c) => (c === 'steady' ? [...STEADY_CASES] : c === 'flat' ? Object.keys(FLAT_CASES) : [c]));
  const unknown = wanted?.filter((c) => !(c in FLAT_CASES) && !(STEADY_CASES as readonly string[]).includes(c) && !Object.values(FLAT_CASES).includes(c));
  if (unknown?.length) throw new Error(`unknown case ${unknown.join(', ')}: use ${[...STEADY_CASES, ...Object.keys(FLAT_CASES)].join(', ')}, steady or flat`);
  const steadyKinds = STEADY_CASES.filter((c) => !wanted || wanted.includes(c));
  const flatNames = Object.entries(FLAT_CASES)
    .filter(([short, name]) => !wanted || wanted.includes(short) || wanted.includes(name))
    .map(([, name]) => name);

  const redis: RedisServer | undefined = values['no-redis'] ? undefined : await startRedis();
  const children: ChildProcess[] = [];
  const start = async <T>(args: string[], execArgv: string[]): Promise<{ child: ChildProcess; ready: T }> => {
    const child = fork(new URL(import.meta.url).pathname, args, { execArgv: ['--import', 'tsx', ...execArgv], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(child);
    const ready = await new Promise<T>((resolve, reject) => {
      child.once('message', (m) => resolve(m as T));
      child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
    return { child, ready };
  };
  process.on('exit', () => children.forEach((c) => c.kill()));
  const serverArgs = [
    '--serve',
    ...(redis ? ['--redis-url', redis.url] : []),
    ...(values['sqlite-exclusive'] ? ['--sqlite-exclusive'] : []),
    ...(values['no-flusher'] ? ['--no-flusher'] : []),
  ];
  const { child, ready } = await start<Ready>(serverArgs, prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []);
  const bareChild = steadyKinds.length > 0 ? await start<{ port: number }>(['--bare'], []) : undefined;

  const bearer = { authorization: `Bearer ${ready.token}` };
  const json = { 'content-type': 'application/json' };
  const readingBody = JSON.stringify({ sensor_id: 'bench-s1', data: { temperature: 21.5, humidity: 40.2, pressure: 101325 } });
  const validateBody = JSON.stringify({ token: ready.token });

  console.log(
    `bench:http — LOG_LEVEL=info (default config), ${redis ? 'Redis consumer connected (private redis-server)' : 'no Redis'}, server pid ${child.pid}` +
      (values['sqlite-exclusive'] ? ', SQLite locking_mode=EXCLUSIVE' : '') +
      (values['no-flusher'] ? ', flusher not started' : ''),
  );

  let steadyFailures = 0;
  if (bareChild) {
    const lookup: Target = { port: ready.port, method: 'GET', path: `/api/ocean/users/${ready.userId}`, headers: bearer };
    const validate: Target = { port: ready.port, method: 'POST', path: '/api/ocean/sessions/validate', headers: json, body: validateBody };
    const reading: Target = { port: ready.port, method: 'POST', path: '/api/ocean/telemetry/ingest', headers: { ...bearer, ...json }, body: readingBody };
    const floor: Target = { port: bareChild.ready.port, method: 'GET', path: '/bench/constant', headers: {} };
    const kinds: Record<string, { label: string; targets: Target[]; rate: number; pid: number }> = {
      'steady-bare': { label: 'bare Fastify, constant JSON', targets: [floor], rate, pid: bareChild.child.pid! },
      'steady-idle': { label: 'idle', targets: [], rate: 0, pid: child.pid! },
      'steady-lookup': { label: 'GET users/:id', targets: [lookup], rate, pid: child.pid! },
      'steady-readings': { label: 'POST telemetry/ingest', targets: [reading], rate: Math.round(rate / 3), pid: child.pid! },
      'steady-mix': { label: 'mix: lookup, validate, ingest', targets: [lookup, validate, reading], rate, pid: child.pid! },
    };
    const order = ['steady-bare', ...steadyKinds];
    console.log(`\nsteady load: ${steadyRounds} rounds of ${order.join(', ')}, ${steadyDuration} s each after 2 s without load`);
    for (const name of order) if (kinds[name]!.rate > 0) await steadyLoad(kinds[name]!.targets, kinds[name]!.rate, 2); // warm-up
    const windows: Array<{ kind: string; round: number; startUs: number; endUs: number }> = [];
    const steady = new Map<string, SteadyRun[]>();
    for (let round = 0; round < steadyRounds; round++) {
      for (const name of order) {
        const kind = kinds[name]!;
        await sleep(2000);
        const cpuBefore = processCpuUs(kind.pid);
        const t0 = process.hrtime.bigint();
        const r = kind.rate > 0 ? await steadyLoad(kind.targets, kind.rate, steadyDuration) : (await sleep(steadyDuration * 1000), { answered: 0, non2xx: 0, errors: 0, p50: 0, p99: 0 });
        const t1 = process.hrtime.bigint();
        const cpuUs = processCpuUs(kind.pid) - cpuBefore;
        const wallUs = Number(t1 - t0) / 1000;
        windows.push({ kind: name, round, startUs: Number(t0 / 1000n), endUs: Number(t1 / 1000n) });
        const run: SteadyRun = { ...r, share: (cpuUs / wallUs) * 100, usPerReq: r.answered > 0 ? cpuUs / r.answered : NaN };
        steady.set(name, [...(steady.get(name) ?? []), run]);
        steadyFailures += r.non2xx + r.errors;
        console.log(
          `  ${kind.label.padEnd(30)} ${String(kind.rate).padStart(5)}/s  CPU ${run.share.toFixed(2).padStart(5)} % of a core` +
            (r.answered ? `  ${run.usPerReq.toFixed(0).padStart(4)} µs/req  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms` : '') +
            (r.non2xx || r.errors ? `  non-2xx ${r.non2xx} errors ${r.errors}` : ''),
        );
      }
    }
    if (prof) await writeFile(join(prof, 'windows.json'), JSON.stringify(windows, null, 2));
    reportSteady(kinds, steady);
  }

  if (flatNames.length > 0) await flat(child, ready, flatNames, { duration, connections, rounds, bearer, json, readingBody, validateBody });

  child.send('stop');
  bareChild?.child.send('stop');
  await Promise.all([child, bareChild?.child].map((c) => c && new Promise((resolve) => (c.exitCode !== null ? resolve(null) : c.once('exit', resolve)))));
  await redis?.stop();
  if (steadyFailures) console.log(`\n${steadyFailures} non-2xx answers or errors under steady load: those figures are not valid`);
}

/** The steady medians against the floor, with the issue's targets. */
function reportSteady(kinds: Record<string, { label: string; rate: number }>, steady: Map<string, SteadyRun[]>): void {
  const med = (name: string, f: (r: SteadyRun) => number) => median(steady.get(name)?.map(f) ?? [NaN]);
  const floorShare = med('steady-bare', (r) => r.share);
  const floorUs = med('steady-bare', (r) => r.usPerReq);
  const idle = steady.has('steady-idle') ? med('steady-idle', (r) => r.share) : undefined;
  console.log('\nsteady medians (× bare: CPU per request ÷ the bare floor\'s; above idle: (share − idle share) ÷ rate)');
  console.log('  kind                               rate  % of a core  µs/req  × bare  µs/req above idle  p99 ms  target');
  for (const [name, runs] of steady) {
    const kind = kinds[name]!;
    const share = med(name, (r) => r.share);
    const us = med(name, (r) => r.usPerReq);
    const above = idle !== undefined && kind.rate > 0 && name !== 'steady-bare' ? ((share - idle) / 100 / kind.rate) * 1e6 : NaN;
    const ratio = us / floorUs;
    const target =
      name === 'steady-idle' ? ['≤ 1 %', share <= 1]
      : name === 'steady-lookup' ? ['≤ 1.5× bare', ratio <= 1.5]
      : name === 'steady-readings' ? ['≤ 150 µs above idle', above <= 150]
      : name === 'steady-mix' ? ['≤ 10 % and ≤ 2× bare', share <= 10 && share <= 2 * floorShare]
      : undefined;
    console.log(
      `  ${kind.label.padEnd(32)} ${String(kind.rate).padStart(5)} ${share.toFixed(2).padStart(11)} ${Number.isNaN(us) ? '     —' : us.toFixed(0).padStart(7)} ` +
        `${Number.isNaN(us) ? '     —' : ratio.toFixed(2).padStart(7)} ${Number.isNaN(above) ? '                 —' : above.toFixed(0).padStart(18)} ` +
        `${kind.rate ? median(runs.map((r) => r.p99)).toFixed(2).padStart(7) : '      —'}  ${target ? `${target[0]} ${target[1] ? 'ok' : 'MISSED'}` : ''}`,
    );
  }
}

interface FlatOptions {
  duration: number;
  connections: number;
  rounds: number;
  bearer: Record<string, string>;
  json: Record<string, string>;
  readingBody: string;
  validateBody: string;
}

/** Flat out: autocannon, alternating each case with the bare baseline in the server process. */
async function flat(child: ChildProcess, ready: Ready, names: string[], o: FlatOptions): Promise<void> {
  const { duration, connections, rounds, bearer, json } = o;
  const base = `http://127.0.0.1:${ready.port}`;
  const all: Record<string, autocannon.Options> = {
    baseline: { url: `http://127.0.0.1:${ready.barePort}/bench/constant` },
    'service constant route': { url: `${base}/bench/constant` },
    'GET users/:id': { url: `${base}/api/ocean/users/${ready.userId}`, headers: bearer },
    'POST sessions/validate': { url: `${base}/api/ocean/sessions/validate`, method: 'POST', headers: json, body: o.validateBody },
    'POST telemetry/ingest': { url: `${base}/api/ocean/telemetry/ingest`, method: 'POST', headers: { ...bearer, ...json }, body: o.readingBody },
    'GET /health': { url: `${base}/health` },
  };
  const server = () =>
    new Promise<{ cpuUs: number; logBytes: number }>((resolve) => {
      child.once('message', (m) => resolve(m as { cpuUs: number; logBytes: number }));
      child.send('cpu');
    });
  let logBytes = 0;
  let logRequests = 0;
  const run = async (name: string): Promise<CaseResult> => {
    const before = await server();
    const r = await autocannon({ ...all[name]!, connections, duration });
    const after = await server();
    if (name !== 'baseline') {
      logBytes += after.logBytes - before.logBytes;
      logRequests += r.requests.total;
    }
    const cpuUsPerReq = (after.cpuUs - before.cpuUs) / Math.max(1, r.requests.total);
    const result = { rps: r.requests.average, cpuUsPerReq, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
    console.log(
      `  ${name.padEnd(24)} ${result.rps.toFixed(0).padStart(7)} req/s  p50 ${result.p50} ms  p99 ${result.p99} ms  server CPU ${cpuUsPerReq.toFixed(0)} µs/req` +
        (result.non2xx || result.errors ? `  non-2xx ${result.non2xx} errors ${result.errors}` : ''),
    );
    return result;
  };

  console.log(`\nflat out: ${connections} connections, ${duration} s per run, ${rounds} rounds`);
  await autocannon({ ...all['baseline']!, connections, duration: 2 }); // warm-up
  for (const name of names) await autocannon({ ...all[name]!, connections, duration: 1 });

  const results = new Map<string, CaseResult[]>();
  const record = async (name: string) => {
    const r = await run(name);
    results.set(name, [...(results.get(name) ?? []), r]);
  };
  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      await record('baseline');
      await record(name);
    }
  }
  await record('baseline');

  // Issue 22's flat-out targets against bare Fastify in the same run.
  const targets: Record<string, number> = { 'GET users/:id': 0.6, 'POST sessions/validate': 0.6, 'POST telemetry/ingest': 0.4, 'GET /health': 0.7 };
  const baseRps = median(results.get('baseline')!.map((r) => r.rps));
  const baseCpu = median(results.get('baseline')!.map((r) => r.cpuUsPerReq));
  console.log('\nflat-out medians (ratio = req/s ÷ baseline req/s; cpu ratio = baseline CPU/req ÷ case CPU/req)');
  console.log('  case                       req/s   p50 ms  p99 ms  ratio  µs/req  cpu ratio  non-2xx  target');
  for (const [name, rs] of results) {
    const rps = median(rs.map((r) => r.rps));
    const p99 = median(rs.map((r) => r.p99));
    const cpu = median(rs.map((r) => r.cpuUsPerReq));
    const bad = rs.reduce((n, r) => n + r.non2xx + r.errors, 0);
    const target = targets[name];
    const ratio = rps / baseRps;
    const ok = target === undefined ? '' : ratio >= target && p99 <= 5 && bad === 0 ? 'ok' : 'MISSED';
    console.log(
      `  ${name.padEnd(24)} ${rps.toFixed(0).padStart(7)} ${median(rs.map((r) => r.p50)).toFixed(1).padStart(8)} ${p99.toFixed(1).padStart(7)} ` +
        `${ratio.toFixed(2).padStart(6)} ${cpu.toFixed(0).padStart(7)} ${(baseCpu / cpu).toFixed(2).padStart(10)} ${String(bad).padStart(8)}  ${target === undefined ? '' : `≥${target}× p99≤5 ${ok}`}`,
    );
  }
  console.log(`request log: ${(logBytes / Math.max(1, logRequests)).toFixed(0)} bytes per service request at LOG_LEVEL=info`);
  const failures = [...results.values()].flat().reduce((n, r) => n + r.non2xx + r.errors, 0);
  if (failures) console.log(`\n${failures} non-2xx answers or errors: the figures above are not valid`);
}

if (process.argv.includes('--serve')) {
  const at = process.argv.indexOf('--redis-url');
  await serve(at > 0 ? process.argv[at + 1] : undefined);
} else if (process.argv.includes('--bare')) await serveBare();
else await drive();
