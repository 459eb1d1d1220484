/**
 * Analytics reads on PostgreSQL beside the embedded DuckDB store, in one run
 * (`npx tsx bench/pg-analytics.ts [--sizes=1000000,10000000] [--samples=200]`): the same rows in
 * both (1,000 sensors, one metric, 7 days, in time order with sensors interleaved), generated in
 * SQL; then p50/p99 of stats, a one-day 5-minute timeseries, anomalies and a 10-sensor compare,
 * called in-process on random sensors, sequentially; and p50 of the same requests through the
 * shared mode's app (openSharedService on that database: routing, auth, admission, validation and
 * serialisation, by Fastify's inject, without the network). A private PostgreSQL is started.
 */
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createPgAnalytics } from '../src/postgres/analytics.js';
import { openSharedService } from '../src/shared-service.js';
import { openPostgres } from '../src/postgres/connect.js';
import { migratePostgres } from '../src/postgres/migrations.js';
import type { AnalyticsStore } from '../src/analytics/types.js';
import { loadGenerated } from '../test/helpers/measurements.js';
import { startPostgres } from '../test/helpers/postgres-server.js';
import { openTempAnalytics } from '../test/helpers/temp-analytics.js';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const SIZES = (arg('sizes') ?? '1000000').split(',').map(Number);
const SAMPLES = Number(arg('samples') ?? 200);
const SENSORS = 1000;
const DAYS = 7;
const BASE_TS = 1_700_000_000;
const SENSOR_IDS = Array.from({ length: SENSORS }, (_, i) => `sensor-${String(i).padStart(4, '0')}`);
const randomSensor = () => SENSOR_IDS[Math.floor(Math.random() * SENSORS)]!;
const randomDay = () => BASE_TS + Math.floor(Math.random() * (DAYS - 1)) * 86400;

type Reads = Pick<AnalyticsStore, 'sensorStats' | 'timeseries' | 'anomalies' | 'compare'>;
/** Each case in-process, and as the request a client sends for it. */
const CASES: Array<[string, (r: Reads) => Promise<unknown>, () => { method: 'GET' | 'POST'; url: string; payload?: object }]> = [
  ['stats', (r) => r.sensorStats(randomSensor()), () => ({ method: 'GET', url: `/api/ocean/analytics/sensor/${randomSensor()}/stats` })],
  [
    'timeseries 1 day, 5m',
    (r) => {
      const start = randomDay();
      return r.timeseries(randomSensor(), { interval: '5m', start, end: start + 86400 });
    },
    () => {
      const start = randomDay();
      return { method: 'GET', url: `/api/ocean/analytics/sensor/${randomSensor()}/timeseries?interval=5m&start=${start}&end=${start + 86400}` };
    },
  ],
  ['anomalies (z > 2, limit 100)', (r) => r.anomalies(randomSensor()), () => ({ method: 'GET', url: `/api/ocean/analytics/sensor/${randomSensor()}/anomalies` })],
  [
    'compare 10 sensors',
    (r) => r.compare(Array.from({ length: 10 }, randomSensor)),
    () => ({ method: 'POST', url: '/api/ocean/analytics/compare', payload: { sensor_ids: Array.from({ length: 10 }, randomSensor) } }),
  ],
];
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';

async function percentiles(fn: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 20; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(SAMPLES * 0.5)]!, p99: times[Math.floor(SAMPLES * 0.99)]! };
}

const server = await startPostgres();
try {
  for (const rows of SIZES) {
    const url = await server.createDatabase();
    const pool = openPostgres(url, { max: 4, statementTimeoutMs: 600_000 });
    const duck = await openTempAnalytics();
    try {
      await migratePostgres(pool);
      let t = performance.now();
      await pool.query(`INSERT INTO series(series, sensor_id, metric, unit, lab_id, model_id, source)
        SELECT k + 1, 'sensor-' || lpad(k::text, 4, '0'), 'temperature', 'C', 'lab-1', 16, 'bench' FROM generate_series(0, ${SENSORS - 1}) k`);
      // The index is dropped for the load and built after (as a bulk load would); readings arrive in time order.
      await pool.query('DROP INDEX readings_series_ts');
      await pool.query(`INSERT INTO readings(series, ts, value)
        SELECT (i % ${SENSORS}) + 1, to_timestamp(${BASE_TS} + i::double precision * ${DAYS * 86400} / ${rows}),
               round((20 + random() * 5 + CASE WHEN random() < 0.005 THEN 30 ELSE 0 END)::numeric, 2)
        FROM generate_series(0, ${rows - 1}) i`);
      await pool.query('CREATE INDEX readings_series_ts ON readings(series, ts) INCLUDE (value)');
      await pool.query('VACUUM ANALYZE readings');
      const pgLoad = (performance.now() - t) / 1000;
      const size = (await pool.query("SELECT pg_total_relation_size('readings') AS b")).rows[0].b as number;
      t = performance.now();
      await loadGenerated(duck.engine, {
        sensors: SENSOR_IDS,
        count: rows,
        ts: `make_timestamp(((${BASE_TS} + i * ${DAYS * 86400} / ${rows}) * 1e6)::BIGINT)`,
        value: 'round(20 + random() * 5 + CASE WHEN random() < 0.005 THEN 30 ELSE 0 END, 2)',
        labId: 'lab-1',
        modelId: 16,
      });
      const duckLoad = (performance.now() - t) / 1000;
      console.log(
        `\n${rows.toLocaleString('en')} readings, ${SENSORS} sensors, ${DAYS} days: PostgreSQL loaded in ${pgLoad.toFixed(1)} s ` +
          `(${(size / rows).toFixed(1)} bytes/reading with the index), DuckDB in ${duckLoad.toFixed(1)} s`,
      );
      console.log(
        `${'query'.padEnd(30)} ${'PG p50'.padStart(8)} ${'PG p99'.padStart(8)} ${'Duck p50'.padStart(9)} ${'Duck p99'.padStart(9)} ${'PG/Duck'.padStart(8)} ${'app p50'.padStart(8)}   (ms, ${SAMPLES} samples)`,
      );
      const pg = createPgAnalytics(pool, { maxExports: 2, timeoutMs: 30_000 });
      const service = await openSharedService(loadConfig({ DATABASE_URL: url, ADMIN_TOKEN, LOG_LEVEL: 'silent' }), { logger: pino({ level: 'silent' }) });
      await service.start();
      try {
        for (const [name, ask, request] of CASES) {
          const onPg = await percentiles(() => ask(pg));
          const onDuck = await percentiles(() => ask(duck.engine));
          const onApp = await percentiles(async () => {
            const res = await service.app.inject({ ...request(), headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
            if (res.statusCode !== 200) throw new Error(`${name}: ${res.statusCode} ${res.body}`);
          });
          console.log(
            `${name.padEnd(30)} ${onPg.p50.toFixed(2).padStart(8)} ${onPg.p99.toFixed(2).padStart(8)} ${onDuck.p50.toFixed(2).padStart(9)} ${onDuck.p99.toFixed(2).padStart(9)} ${(onPg.p50 / onDuck.p50).toFixed(2).padStart(8)} ${onApp.p50.toFixed(2).padStart(8)}`,
          );
        }
      } finally {
        await service.close();
      }
    } finally {
      await pool.end();
      await duck.cleanup();
    }
  }
} finally {
  await server.stop();
}
