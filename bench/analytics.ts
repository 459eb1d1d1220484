/**
 * Analytics latency through real HTTP: p50/p99 of stats, a one-day 5-minute timeseries,
 * anomalies and a 10-sensor compare, over 1M and 10M measurements of 1,000 sensors, beside a
 * baseline (/health: SQLite SELECT 1 + DuckDB SELECT 1 through the same server) in the same run.
 *
 *   npm run bench:analytics                                 # 1M rows (about 30 s)
 *   npm run bench:analytics -- --sizes=1000000,10000000     # and 10M: loading 10M rows through
 *                                                           # the appender takes 1-3 minutes here
 *   npm run bench:analytics -- --samples=500
 *   npm run bench:analytics -- --threads=1      # DUCKDB_THREADS for the run
 *
 * Requests are sequential (latency, not throughput) over one keep-alive connection; sensors
 * and days are random. "CPU/req" is the process CPU time per request (server, client and
 * DuckDB threads together), steadier than wall time when the machine is shared; "engine p50"
 * is the same query called in-process, without HTTP.
 */
import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { pino } from 'pino';
import { PARTITION_TABLES, partitionOf } from '../src/analytics/partitions.js';
import { loadConfig } from '../src/config.js';
import { openService, type Service } from '../src/service.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const SIZES = (arg('sizes') ?? '1000000').split(',').map((s) => Math.round(Number(s)));
const SAMPLES = Number(arg('samples') ?? 200);
/** DUCKDB_THREADS for the run; default: the service's default. */
const THREADS = arg('threads');
const WARMUP = 20;
const SENSORS = 1000;
const DAYS = 7;
const BASE_TS = 1_700_000_000;
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';
const METRICS = [
  { metric: 'temperature', unit: 'C', base: 20 },
  { metric: 'humidity', unit: '%', base: 55 },
  { metric: 'pressure', unit: 'hPa', base: 1013 },
];

const SENSOR_IDS = Array.from({ length: SENSORS }, (_, i) => `sensor-${String(i).padStart(4, '0')}`);
const randomSensor = () => SENSOR_IDS[Math.floor(Math.random() * SENSORS)]!;

/**
 * Readings in arrival order (time order, sensors interleaved), generated inside DuckDB straight
 * into each sensor's partition: the same rows as appending them through the flusher, in seconds
 * (appending 100k row objects at a time ran the analytics worker out of heap).
 */
async function load(service: Service, count: number): Promise<number> {
  const span = DAYS * 86400;
  const started = performance.now();
  const partOf = SENSOR_IDS.map(partitionOf);
  const metric = (field: 'metric' | 'unit' | 'base') => `[${METRICS.map((m) => (field === 'base' ? String(m.base) : `'${m[field]}'`)).join(', ')}][((i // ${SENSORS}) % ${METRICS.length}) + 1]`;
  for (let p = 0; p < PARTITION_TABLES.length; p++) {
    const mine = partOf.flatMap((q, i) => (q === p ? [i] : []));
    if (mine.length === 0) continue;
    await service.analytics.exec(
      'bench-load',
      `INSERT INTO ${PARTITION_TABLES[p]}
       SELECT i + 1, make_timestamp(((${BASE_TS} + i * ${span} / ${count}) * 1e6)::BIGINT), 'sensor-' || lpad((i % ${SENSORS})::VARCHAR, 4, '0'),
         ${metric('metric')}, round(${metric('base')} + random() * 5 + CASE WHEN random() < 0.005 THEN 30 ELSE 0 END, 2), ${metric('unit')},
         'lab-1', 16, 'bench'
       FROM range(${count}) t(i) WHERE list_contains([${mine.join(',')}], (i % ${SENSORS})::INTEGER)`,
    );
  }
  return (performance.now() - started) / 1000;
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function http(port: number, method: string, path: string, body?: object): Promise<number> {
  const payload = body ? JSON.stringify(body) : undefined;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent,
        headers: {
          authorization: `Bearer ${ADMIN_TOKEN}`,
          ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(res.statusCode) : reject(new Error(`${method} ${path}: ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Wall-clock percentiles, and the process CPU time per call (server, client and DuckDB threads). */
async function measure(fn: () => Promise<unknown>): Promise<{ p50: number; p99: number; cpu: number }> {
  for (let i = 0; i < WARMUP; i++) await fn();
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < SAMPLES; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  const cpu = process.cpuUsage(cpu0);
  times.sort((a, b) => a - b);
  const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
  return { p50: q(0.5), p99: q(0.99), cpu: (cpu.user + cpu.system) / 1000 / SAMPLES };
}

interface Case {
  name: string;
  http: (port: number) => Promise<unknown>;
  engine?: (service: Service) => Promise<unknown>;
}

const randomDay = () => BASE_TS + Math.floor(Math.random() * (DAYS - 1)) * 86400;
const A = '/api/ocean/analytics';
const CASES: Case[] = [
  { name: 'baseline /health (SELECT 1)', http: (port) => http(port, 'GET', '/health'), engine: (s) => s.analytics.ping() },
  {
    name: 'stats',
    http: (port) => http(port, 'GET', `${A}/sensor/${randomSensor()}/stats`),
    engine: (s) => s.analytics.sensorStats(randomSensor()),
  },
  {
    name: 'timeseries 1 day, 5m',
    http: (port) => {
      const start = randomDay();
      return http(port, 'GET', `${A}/sensor/${randomSensor()}/timeseries?interval=5m&start=${start}&end=${start + 86400}`);
    },
    engine: (s) => {
      const start = randomDay();
      return s.analytics.timeseries(randomSensor(), { interval: '5m', start, end: start + 86400 });
    },
  },
  {
    name: 'anomalies (z > 2, limit 100)',
    http: (port) => http(port, 'GET', `${A}/sensor/${randomSensor()}/anomalies`),
    engine: (s) => s.analytics.anomalies(randomSensor()),
  },
  {
    name: 'compare 10 sensors',
    http: (port) => http(port, 'POST', `${A}/compare`, { sensor_ids: Array.from({ length: 10 }, randomSensor) }),
    engine: (s) => s.analytics.compare(Array.from({ length: 10 }, randomSensor)),
  },
];

async function runSize(rows: number): Promise<void> {
  const { path: dataDir, cleanup: removeDataDir } = await makeTempDir('ocean-bench-analytics-');
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN, LOG_LEVEL: 'silent', PORT: '0', ...(THREADS ? { DUCKDB_THREADS: THREADS } : {}) });
  const service = await openService(config, { logger: pino({ level: 'silent' }) });
  try {
    const loadS = await load(service, rows);
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (service.app.server.address() as AddressInfo).port;
    console.log(
      `\n${rows.toLocaleString('en')} measurements, ${SENSORS} sensors, ${DAYS} days: appended in ${loadS.toFixed(1)} s ` +
        `(${Math.round(rows / loadS).toLocaleString('en')} rows/s), DuckDB ${(service.analytics.sizeBytes() / 1048576).toFixed(0)} MB, ` +
        `threads ${config.duckdb.threads}, memory_limit ${config.duckdb.memoryLimit}`,
    );
    console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} cores`);
    console.log(
      `${'query'.padEnd(30)} ${'HTTP p50'.padStart(9)} ${'HTTP p99'.padStart(9)} ${'CPU/req'.padStart(8)} ${'engine p50'.padStart(11)}   (ms, ${SAMPLES} samples each)`,
    );
    for (const c of CASES) {
      const viaHttp = await measure(() => c.http(port));
      const direct = c.engine ? await measure(() => c.engine!(service)) : undefined;
      console.log(
        `${c.name.padEnd(30)} ${viaHttp.p50.toFixed(2).padStart(9)} ${viaHttp.p99.toFixed(2).padStart(9)} ${viaHttp.cpu.toFixed(2).padStart(8)} ${(direct?.p50.toFixed(2) ?? '-').padStart(11)}`,
      );
    }
    console.log(`RSS ${(process.memoryUsage().rss / 1048576).toFixed(0)} MB`);
  } finally {
    await service.close();
    await removeDataDir();
  }
}

for (const size of SIZES) await runSize(size);
agent.destroy();
