/**
 * Analytics latency through real HTTP: p50/p99 of stats, a one-day 5-minute timeseries,
 * anomalies and a 10-sensor compare, over 1M and 10M measurements of 1,000 sensors, beside a
 * baseline (/health: SQLite SELECT 1 + DuckDB SELECT 1 through the same server) in the same run.
 *
 *   npm run bench:analytics                                 # 1M rows (about 30 s)
 *   npm run bench:analytics -- --sizes=1000000,10000000     # and 10M
 *   npm run bench:analytics -- --samples=500
 *   npm run bench:analytics -- --threads=1      # DUCKDB_THREADS for the run
 *   npm run bench:analytics -- --commit-max=2000000         # sizes up to this load through commit (default 1M)
 *
 * Sizes up to --commit-max are loaded as the ingest path loads them: packed records, one commit
 * per 20,000, through the analytics worker. Larger ones are generated inside DuckDB straight into
 * the series and readings tables (the same rows, in seconds). Each size also reports the bytes
 * per reading on disk, beside those of the same rows in layout 1 (strings in every row).
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
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { PARTITION_TABLES, partitionOf } from '../src/analytics/partitions.js';
import { loadConfig } from '../src/config.js';
import type { IngestSource } from '../src/operational/buffer.js';
import { RecordBatchBuilder } from '../src/operational/record-batch.js';
import { openService, type Service } from '../src/service.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const SIZES = (arg('sizes') ?? '1000000').split(',').map((s) => Math.round(Number(s)));
const SAMPLES = Number(arg('samples') ?? 200);
const COMMIT_MAX = Number(arg('commit-max') ?? 1_000_000);
const PER_COMMIT = 20_000;
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

/** Reading i of `count`: arrival order (time order, sensors interleaved), as SQL expressions of i and as JS. */
const SQL_SENSOR = `'sensor-' || lpad((i % ${SENSORS})::VARCHAR, 4, '0')`;
const sqlMetric = (field: 'metric' | 'unit' | 'base') =>
  `[${METRICS.map((m) => (field === 'base' ? String(m.base) : `'${m[field]}'`)).join(', ')}][((i // ${SENSORS}) % ${METRICS.length}) + 1]`;
const sqlTs = (count: number) => `make_timestamp(((${BASE_TS} + i * ${DAYS * 86400} / ${count}) * 1e6)::BIGINT)`;
const SQL_VALUE = `round(${sqlMetric('base')} + random() * 5 + CASE WHEN random() < 0.005 THEN 30 ELSE 0 END, 2)`;

/** Through commit, as the ingest path does: packed records, PER_COMMIT per transaction. */
async function loadByCommit(service: Service, count: number): Promise<void> {
  for (let from = 0; from < count; from += PER_COMMIT) {
    const builder = new RecordBatchBuilder(PER_COMMIT);
    for (let i = from; i < Math.min(count, from + PER_COMMIT); i++) {
      const m = METRICS[Math.floor(i / SENSORS) % METRICS.length]!;
      const value = Math.round((m.base + Math.random() * 5 + (Math.random() < 0.005 ? 30 : 0)) * 100) / 100;
      builder.add({ sensor_id: SENSOR_IDS[i % SENSORS]!, metric: m.metric, unit: m.unit, ts: BASE_TS + (i * DAYS * 86400) / count, value }, 'lab-1', 16);
    }
    await service.analytics.commit({ segments: [{ source: 'bench' as IngestSource, records: builder.toBuffer() }], queueThrough: from / PER_COMMIT + 1 });
  }
}

/** Generated inside DuckDB straight into the series and readings tables: the same rows, in seconds. */
async function loadBySql(service: Service, count: number): Promise<void> {
  // One series per (sensor, metric): ids far above those commits hand out (nothing is committed after).
  await service.analytics.exec(
    'bench-load',
    `INSERT INTO series SELECT 1000000 + i, ${SQL_SENSOR}, ${sqlMetric('metric')}, ${sqlMetric('unit')}, 'lab-1', 16, 'bench' FROM range(${SENSORS * METRICS.length}) t(i)`,
  );
  const partOf = SENSOR_IDS.map(partitionOf);
  for (let p = 0; p < PARTITION_TABLES.length; p++) {
    const mine = partOf.flatMap((q, i) => (q === p ? [i] : []));
    if (mine.length === 0) continue;
    await service.analytics.exec(
      'bench-load',
      `INSERT INTO ${PARTITION_TABLES[p]}
       SELECT 1000000 + (i % ${SENSORS * METRICS.length}), ${sqlTs(count)}, ${SQL_VALUE}
       FROM range(${count}) t(i) WHERE list_contains([${mine.join(',')}], (i % ${SENSORS})::INTEGER)`,
    );
  }
}

/** Bytes in the blocks a database uses (a file keeps the blocks a checkpoint freed, for reuse). */
const USED_BYTES = 'SELECT (used_blocks * block_size)::BIGINT AS used FROM pragma_database_size() WHERE database_name = current_database()';

/** Bytes per reading of the same rows in layout 1 (each measurement with its strings), checkpointed: in the file, in used blocks. */
async function legacyBytesPerReading(dir: string, count: number): Promise<{ file: number; used: number }> {
  const path = join(dir, 'layout1.duckdb');
  const instance = await DuckDBInstance.create(path);
  const c = await instance.connect();
  try {
    const partOf = SENSOR_IDS.map(partitionOf);
    for (let p = 0; p < PARTITION_TABLES.length; p++) {
      const table = `measurements_p${String(p).padStart(2, '0')}`;
      await c.run(
        `CREATE TABLE ${table} (buffer_id BIGINT NOT NULL, ts TIMESTAMP NOT NULL, sensor_id VARCHAR NOT NULL, metric VARCHAR NOT NULL,
           value DOUBLE NOT NULL, unit VARCHAR NOT NULL, lab_id VARCHAR, model_id SMALLINT, source VARCHAR NOT NULL)`,
      );
      const mine = partOf.flatMap((q, i) => (q === p ? [i] : []));
      if (mine.length === 0) continue;
      await c.run(
        `INSERT INTO ${table}
         SELECT i // 4 + 1, ${sqlTs(count)}, ${SQL_SENSOR}, ${sqlMetric('metric')}, ${SQL_VALUE}, ${sqlMetric('unit')}, 'lab-1', 16, 'bench'
         FROM range(${count}) t(i) WHERE list_contains([${mine.join(',')}], (i % ${SENSORS})::INTEGER)`,
      );
    }
    await c.run('CHECKPOINT');
    const used = Number((await c.runAndReadAll(USED_BYTES)).getRowObjectsJS()[0]!.used);
    return { file: statSync(path).size / count, used: used / count };
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

async function load(service: Service, count: number): Promise<{ seconds: number; how: string }> {
  const started = performance.now();
  if (count <= COMMIT_MAX) await loadByCommit(service, count);
  else await loadBySql(service, count);
  await service.analytics.exec('bench-checkpoint', 'CHECKPOINT');
  return { seconds: (performance.now() - started) / 1000, how: count <= COMMIT_MAX ? `through commit, ${PER_COMMIT.toLocaleString('en')} per commit` : 'generated in SQL' };
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
  { name: 'baseline /health (SELECT 1)', http: (port) => http(port, 'GET', '/health'), engine: (s) => s.analytics.healthPing() },
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
    const loaded = await load(service, rows);
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (service.app.server.address() as AddressInfo).port;
    const bytes = service.analytics.sizeBytes();
    console.log(
      `\n${rows.toLocaleString('en')} measurements, ${SENSORS} sensors, ${DAYS} days: loaded ${loaded.how} in ${loaded.seconds.toFixed(1)} s ` +
        `(${Math.round(rows / loaded.seconds).toLocaleString('en')} rows/s), DuckDB ${(bytes / 1048576).toFixed(0)} MB, ` +
        `threads ${config.duckdb.threads}, memory_limit ${config.duckdb.memoryLimit}`,
    );
    const used = Number((await service.analytics.all('bench-size', USED_BYTES))[0]!.used);
    const legacy = await legacyBytesPerReading(dataDir, rows);
    console.log(
      `bytes per reading: file ${(bytes / rows).toFixed(2)}, used blocks ${(used / rows).toFixed(2)} ` +
        `(layout 1, the same rows generated in SQL: file ${legacy.file.toFixed(2)}, used blocks ${legacy.used.toFixed(2)})`,
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
