/**
 * Export benchmark (`npm run bench:export`, which builds first): the service as production runs
 * it, `node dist/main.js` with the default configuration (LOG_LEVEL=info, its log to a file), over
 * `--rows` measurements (default 10M, 1,000 sensors, generated inside DuckDB in seconds by a
 * separate loader process, so the server starts without the load's memory). `--tsx` runs the
 * server from the sources instead (about 70 MB more RSS: the TypeScript loader).
 *
 * 1. Each format alone: time to the first byte, total time, bytes, the server's peak RSS
 *    (VmRSS sampled every 20 ms) and the most temp disk seen (ocean-export-* in the temp dir and
 *    DuckDB's spill directory), with the client reading as fast as it can.
 * 2. Two exports at once plus analytics queries back to back, while /health is polled every
 *    50 ms: /health's worst and p99 latency and whether every answer was 200.
 *
 *   npm run bench:export
 *   npm run bench:export -- --rows 1000000
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { freePort } from '../test/helpers/redis-server.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

interface Ready {
  port: number;
  dataDir: string;
}
const ADMIN = 'bench-admin-token-0123456789abcdef';
const SENSORS = 1000;

async function open(dataDir: string) {
  const { loadConfig } = await import('../src/config.js');
  const { createLogger } = await import('../src/logger.js');
  const { openService } = await import('../src/service.js');
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: ADMIN });
  const logger = createLogger(config.logLevel, pino.destination({ dest: join(dataDir, 'service.log'), sync: true }));
  const service = await openService(config, { logger });
  await service.start();
  return service;
}

/** Loads the rows in a process of its own, so that the server starts without the load's memory. */
async function loadRows(rows: number, dataDir: string): Promise<void> {
  const { PARTITION_TABLES, partitionOf } = await import('../src/analytics/partitions.js');
  const service = await open(dataDir);
  // Each sensor's rows into its own partition, as the flusher would put them; a week of time order.
  const started = performance.now();
  const partOf = Array.from({ length: SENSORS }, (_, i) => partitionOf(`sensor-${String(i).padStart(4, '0')}`));
  for (let p = 0; p < PARTITION_TABLES.length; p++) {
    const mine = partOf.flatMap((q, i) => (q === p ? [i] : []));
    if (mine.length === 0) continue;
    await service.analytics.exec(
      'bench-load',
      `INSERT INTO ${PARTITION_TABLES[p]} SELECT i, TIMESTAMP '2024-01-01' + to_microseconds(i * 60480::BIGINT), 'sensor-' || lpad((i % ${SENSORS})::VARCHAR, 4, '0'),
         'temperature', 20 + (i % 97) * 0.05, 'C', 'lab-1', 16, 'bench'
       FROM range(${rows}) t(i) WHERE list_contains([${mine.join(',')}], (i % ${SENSORS})::INTEGER)`,
    );
  }
  console.log(`loaded ${rows.toLocaleString()} rows in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await service.close();
  process.exit(0);
}

async function serve(dataDir: string): Promise<void> {
  const service = await open(dataDir);
  await service.app.listen({ host: '127.0.0.1', port: 0 });
  const address = service.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  process.send!({ port: address.port, dataDir } satisfies Ready);
  process.on('message', (msg) => {
    if (msg !== 'stop') return;
    void service
      .close()
      .then(() => rm(dataDir, { recursive: true, force: true }))
      .then(() => process.exit(0));
  });
}

/** A GET read to the end as fast as possible: status, ms to the first body byte, total ms, bytes. */
function get(port: number, path: string): Promise<{ status: number; firstByteMs: number; totalMs: number; bytes: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { authorization: `Bearer ${ADMIN}` } }, (res) => {
      let first = 0;
      let bytes = 0;
      res.on('data', (b: Buffer) => {
        if (!first) first = performance.now() - t0;
        bytes += b.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, firstByteMs: first, totalMs: performance.now() - t0, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const rssMb = (pid: number) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
};

/** Bytes under a directory (recursively); 0 when it is gone. */
function bytesUnder(path: string): number {
  let total = 0;
  try {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const p = join(path, entry.name);
      total += entry.isDirectory() ? bytesUnder(p) : entry.isFile() ? statSync(p).size : 0;
    }
  } catch {
    // removed meanwhile
  }
  return total;
}

const tempBytes = (dataDir: string) =>
  readdirSync(tmpdir())
    .filter((n) => n.startsWith('ocean-export-'))
    .reduce((n, d) => n + bytesUnder(join(tmpdir(), d)), 0) + bytesUnder(join(dataDir, 'analytics.duckdb.tmp'));

/** Samples the server's RSS and temp disk while fn runs. */
async function sampled<T>(pid: number, dataDir: string, fn: () => Promise<T>): Promise<{ value: T; peakRssMb: number; peakTempMb: number }> {
  let peakRssMb = rssMb(pid);
  let peakTemp = 0;
  const timer = setInterval(() => {
    peakRssMb = Math.max(peakRssMb, rssMb(pid));
    peakTemp = Math.max(peakTemp, tempBytes(dataDir));
  }, 20);
  try {
    const value = await fn();
    return { value, peakRssMb, peakTempMb: peakTemp / 1048576 };
  } finally {
    clearInterval(timer);
  }
}

const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? 0;

async function drive(): Promise<void> {
  const { values } = parseArgs({ options: { rows: { type: 'string', default: '10000000' }, tsx: { type: 'boolean', default: false } } });
  const rows = Number(values.rows);
  const { path: dataDir, cleanup: removeDataDir } = await makeTempDir('ocean-bench-export-');
  const loader = fork(new URL(import.meta.url).pathname, ['--load', String(rows), dataDir], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise((resolve) => loader.once('exit', resolve));
  let child: ChildProcess;
  let ready: Ready;
  if (values.tsx) {
    child = fork(new URL(import.meta.url).pathname, ['--serve', dataDir], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    ready = await new Promise<Ready>((resolve, reject) => {
      child.once('message', (m) => resolve(m as Ready));
      child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
  } else {
    const port = await freePort();
    const log = openSync(join(dataDir, 'service.log'), 'a');
    const main = new URL('../dist/main.js', import.meta.url).pathname;
    // EXPORTS_PER_USER 2: the two exports at once below are both the admin's.
    child = spawn(process.execPath, [main], {
      env: { ...process.env, DATA_DIR: dataDir, ADMIN_TOKEN: ADMIN, PORT: String(port), HOST: '127.0.0.1', EXPORTS_PER_USER: '2' },
      stdio: ['ignore', log, log],
    });
    ready = { port, dataDir };
    for (let i = 0; ; i++) {
      const up = await get(port, '/health').then((r) => r.status === 200, () => false);
      if (up) break;
      if (i > 600 || child.exitCode !== null) throw new Error('the service did not start (see service.log)');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  process.on('exit', () => child.kill());
  const pid = child.pid!;
  console.log(`bench:export — ${rows.toLocaleString()} rows, server pid ${pid}, RSS at start ${rssMb(pid).toFixed(0)} MB`);
  console.log('  format     status  first byte ms  total s     MB  peak RSS MB  peak temp MB  target');
  const results: boolean[] = [];
  for (const format of ['parquet', 'csv', 'json', 'ndjson']) {
    const { value: r, peakRssMb, peakTempMb } = await sampled(pid, ready.dataDir, () => get(ready.port, `/api/ocean/analytics/export?format=${format}`));
    const ok = r.status === 200 && r.firstByteMs <= 1000 && peakRssMb <= 300;
    results.push(ok);
    console.log(
      `  ${format.padEnd(9)} ${String(r.status).padStart(7)} ${r.firstByteMs.toFixed(0).padStart(14)} ${(r.totalMs / 1000).toFixed(1).padStart(8)} ${(r.bytes / 1048576).toFixed(0).padStart(6)} ` +
        `${peakRssMb.toFixed(0).padStart(12)} ${peakTempMb.toFixed(1).padStart(13)}  first byte ≤1 s, RSS ≤300 MB ${ok ? 'ok' : 'MISSED'}`,
    );
  }

  // Two exports and analytics queries flat out; /health polled meanwhile.
  let busy = true;
  const health: number[] = [];
  const healthStatus = new Map<number, number>();
  const analyticsMs: number[] = [];
  const load = sampled(pid, ready.dataDir, async () => {
    const exports = Promise.all(['csv', 'parquet'].map((f) => get(ready.port, `/api/ocean/analytics/export?format=${f}`)));
    const queries = (async () => {
      for (let i = 0; busy; i++) {
        const sensor = `sensor-${String(i % SENSORS).padStart(4, '0')}`;
        const path = i % 2 ? `/api/ocean/analytics/sensor/${sensor}/stats` : `/api/ocean/analytics/sensor/${sensor}/timeseries?interval=5m`;
        const r = await get(ready.port, path);
        analyticsMs.push(r.totalMs);
      }
    })();
    const polling = (async () => {
      while (busy) {
        const r = await get(ready.port, '/health');
        health.push(r.totalMs);
        healthStatus.set(r.status, (healthStatus.get(r.status) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const done = await exports;
    busy = false;
    await Promise.all([queries, polling]);
    return done;
  });
  const { value: both, peakRssMb } = await load;
  const worst = Math.max(...health);
  const healthOk = worst < 50 && [...healthStatus.keys()].every((s) => s === 200);
  console.log(
    `\n2 exports at once (${both.map((r) => `${r.status} in ${(r.totalMs / 1000).toFixed(1)} s, first byte ${r.firstByteMs.toFixed(0)} ms`).join('; ')}), ` +
      `${analyticsMs.length} analytics queries (p50 ${pct(analyticsMs, 0.5).toFixed(1)} ms, p99 ${pct(analyticsMs, 0.99).toFixed(1)} ms), peak RSS ${peakRssMb.toFixed(0)} MB`,
  );
  console.log(
    `/health meanwhile: ${health.length} polls, p50 ${pct(health, 0.5).toFixed(1)} ms, p99 ${pct(health, 0.99).toFixed(1)} ms, worst ${worst.toFixed(1)} ms, ` +
      `statuses ${JSON.stringify(Object.fromEntries(healthStatus))} (target <50 ms, all 200: ${healthOk ? 'ok' : 'MISSED'})`,
  );
  if (values.tsx) child.send('stop');
  else child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  await removeDataDir();
}

const at = (flag: string) => process.argv.indexOf(flag);
if (at('--load') >= 0) await loadRows(Number(process.argv[at('--load') + 1]), process.argv[at('--load') + 2]!);
else if (at('--serve') >= 0) await serve(process.argv[at('--serve') + 1]!);
else await drive();
