/**
 * HTTP benchmark (`npm run bench:http`): one Ocean Core server in a child process (temp data dir,
 * 127.0.0.1, an ephemeral port) with the DEFAULT configuration (LOG_LEVEL=info, the logger of
 * main.ts writing to a file in the data dir) and a constant-JSON route added,
 * driven by autocannon from this process. The baseline is a bare Fastify (default options, no
 * logger) in the same process; the same constant route inside the service is reported beside it. Cases: GET /api/ocean/users/:id (the user's own
 * session), POST /api/ocean/sessions/validate, POST /api/ocean/telemetry/ingest, GET /health.
 * Each case runs `--rounds` times (default 2), alternating with the baseline, because the load
 * generator shares the machine's cores; the report compares medians.
 *
 * Then a fixed-rate run: `--rate` req/s (default 1000) of the lookup/validate/ingest mix for
 * `--duration` seconds, reporting the server process's CPU time (process.cpuUsage of the child:
 * every thread, DuckDB's included) as a share of one core.
 *
 * Options: --duration S (default 10), --connections N (default 50), --rounds N (default 2),
 * --rate N (default 1000), --cases a,b (only these cases, by name), --cpu-prof DIR (write the server's CPU profile there),
 * --sqlite-exclusive (experiment: the server's SQLite connection in locking_mode=EXCLUSIVE),
 * --no-flusher (experiment: do not start the buffer → DuckDB flusher, to separate its cost).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { makeTempDir } from '../test/helpers/temp-dir.js';

interface Ready {
  port: number;
  /** A bare Fastify (no logger, no hooks) in the same process: the baseline. */
  barePort: number;
  userId: string;
  token: string;
}

/** The server side: the whole service as main.ts composes it, plus the baseline route. */
async function serve(): Promise<void> {
  const { loadConfig } = await import('../src/config.js');
  const { createLogger } = await import('../src/logger.js');
  const { openService } = await import('../src/service.js');
  const { path: dataDir, cleanup: removeDataDir } = await makeTempDir('ocean-bench-http-');
  // The default configuration (LOG_LEVEL=info) and main.ts's logger; only its destination is a file.
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: 'bench-admin-token-0123456789' });
  const logFile = join(dataDir, 'service.log');
  const logger = createLogger(config.logLevel, pino.destination({ dest: logFile, sync: true }));
  const service = await openService(config, { logger });
  if (process.argv.includes('--sqlite-exclusive')) {
    // Experiment: hold the SQLite file lock for the connection's lifetime (no per-read shm locking).
    service.store.db.pragma('locking_mode = EXCLUSIVE');
  }
  // The baseline: a bare Fastify with default options in the same process, and the same constant
  // route inside the service (which pays the service's hooks: request logging, metrics).
  const constant = async () => ({ status: 'ok', service: 'ocean-core', n: 1 });
  const bare = Fastify();
  bare.get('/bench/constant', constant);
  await bare.listen({ host: '127.0.0.1', port: 0 });
  service.app.get('/bench/constant', constant);
  // The flusher (buffer → DuckDB) is part of the service; --no-flusher isolates the HTTP + SQLite cost.
  if (!process.argv.includes('--no-flusher')) await service.start();
  await service.app.listen({ host: '127.0.0.1', port: 0 });
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

interface CaseResult {
  rps: number;
  /** Server CPU time per answered request: robust to a busy machine, unlike req/s. */
  cpuUsPerReq: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function drive(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '50' },
      rounds: { type: 'string', default: '2' },
      rate: { type: 'string', default: '1000' },
      'cpu-prof': { type: 'string' },
      cases: { type: 'string' },
      'sqlite-exclusive': { type: 'boolean', default: false },
      'no-flusher': { type: 'boolean', default: false },
    },
  });
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  const rounds = Number(values.rounds);
  const rate = Number(values.rate);
  const prof = values['cpu-prof'];

  const child: ChildProcess = fork(new URL(import.meta.url).pathname, ['--serve', ...(values['sqlite-exclusive'] ? ['--sqlite-exclusive'] : []), ...(values['no-flusher'] ? ['--no-flusher'] : [])], {
    execArgv: ['--import', 'tsx', ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  process.on('exit', () => child.kill());
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once('message', (m) => resolve(m as Ready));
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const base = `http://127.0.0.1:${ready.port}`;
  const bearer = { authorization: `Bearer ${ready.token}` };
  const json = { 'content-type': 'application/json' };

  const all: Record<string, autocannon.Options> = {
    baseline: { url: `http://127.0.0.1:${ready.barePort}/bench/constant` },
    'service constant route': { url: `${base}/bench/constant` },
    'GET users/:id': { url: `${base}/api/ocean/users/${ready.userId}`, headers: bearer },
    'POST sessions/validate': {
      url: `${base}/api/ocean/sessions/validate`,
      method: 'POST',
      headers: json,
      body: JSON.stringify({ token: ready.token }),
    },
    'POST telemetry/ingest': {
      url: `${base}/api/ocean/telemetry/ingest`,
      method: 'POST',
      headers: { ...bearer, ...json },
      body: JSON.stringify({ sensor_id: 'bench-s1', data: { temperature: 21.5, humidity: 40.2, pressure: 101325 } }),
    },
    'GET /health': { url: `${base}/health` },
  };
  const keep = values.cases ? new Set(['baseline', ...values.cases.split(',')]) : undefined;
  const cases = Object.fromEntries(Object.entries(all).filter(([name]) => !keep || keep.has(name)));
  const mix = ['GET users/:id', 'POST sessions/validate', 'POST telemetry/ingest'];

  const server = () =>
    new Promise<{ cpuUs: number; logBytes: number }>((resolve) => {
      child.once('message', (m) => resolve(m as { cpuUs: number; logBytes: number }));
      child.send('cpu');
    });
  let logBytes = 0;
  let logRequests = 0;
  const run = async (name: string): Promise<CaseResult> => {
    const before = await server();
    const r = await autocannon({ ...cases[name]!, connections, duration });
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

  console.log(
    `bench:http — LOG_LEVEL=info (default config), ${connections} connections, ${duration} s per run, ${rounds} rounds, server pid ${child.pid}` +
      (values['sqlite-exclusive'] ? ', SQLite locking_mode=EXCLUSIVE' : '') +
      (values['no-flusher'] ? ', flusher not started' : ''),
  );
  await autocannon({ ...cases['baseline']!, connections, duration: 2 }); // warm-up
  for (const name of Object.keys(cases).slice(1)) await autocannon({ ...cases[name]!, connections, duration: 1 });

  const results = new Map<string, CaseResult[]>();
  const record = async (name: string) => {
    const r = await run(name);
    results.set(name, [...(results.get(name) ?? []), r]);
  };
  for (let round = 0; round < rounds; round++) {
    for (const name of Object.keys(cases).slice(1)) {
      await record('baseline');
      await record(name);
    }
  }
  await record('baseline');

  // Fixed rate: the mix split evenly over three autocannon instances, CPU of the server child over wall time.
  const before = await server();
  const started = process.hrtime.bigint();
  const fixed = await Promise.all(
    mix.map((name) => autocannon({ ...all[name]!, connections: 4, duration, overallRate: Math.round(rate / mix.length) })),
  );
  const wallUs = Number(process.hrtime.bigint() - started) / 1000;
  const after = await server();
  const fixedRps = fixed.reduce((n, r) => n + r.requests.total, 0) / (wallUs / 1e6);
  const fixedCpu = ((after.cpuUs - before.cpuUs) / wallUs) * 100;
  const fixedBad = fixed.reduce((n, r) => n + r.non2xx + r.errors, 0);
  const fixedP99 = Math.max(...fixed.map((r) => r.latency.p99));

  child.send('stop');
  await new Promise((resolve) => child.once('exit', resolve));

  const targets: Record<string, number> = { 'GET users/:id': 0.8, 'POST sessions/validate': 0.7, 'POST telemetry/ingest': 0.5, 'GET /health': 0.5 };
  const baseRps = median(results.get('baseline')!.map((r) => r.rps));
  const baseCpu = median(results.get('baseline')!.map((r) => r.cpuUsPerReq));
  console.log('\nmedians (ratio = req/s ÷ baseline req/s; cpu ratio = baseline CPU/req ÷ case CPU/req)');
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
  console.log(
    `\nfixed rate: ${fixedRps.toFixed(0)} req/s of the mix (${mix.join(', ')}) for ${duration} s: ` +
      `server CPU ${fixedCpu.toFixed(1)} % of one core (target ≤10 % ${fixedCpu <= 10 ? 'ok' : 'MISSED'}), p99 ${fixedP99} ms, non-2xx ${fixedBad}`,
  );
  console.log(`request log: ${(logBytes / Math.max(1, logRequests)).toFixed(0)} bytes per service request at LOG_LEVEL=info`);
  const failures = [...results.values()].flat().reduce((n, r) => n + r.non2xx + r.errors, 0) + fixedBad;
  if (failures) console.log(`\n${failures} non-2xx answers or errors: the figures above are not valid`);
}

if (process.argv.includes('--serve')) await serve();
else await drive();
