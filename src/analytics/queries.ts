import { DuckDBIntervalValue, INTERVAL } from '@duckdb/node-api';
import { BadRequestError } from '../errors.js';
import type { SqlRunner } from './engine.js';
import { Params, isoOrNull, matching } from './filters.js';
import { parseInterval } from './interval.js';
import type { Row } from './reader-pool.js';
import type {
  Aggregate,
  Anomalies,
  Comparison,
  MetricAggregate,
  RangeFilter,
  SensorList,
  SensorStats,
  Timeseries,
} from './types.js';

export const MAX_COMPARE_SENSORS = 100;
export const MAX_ANOMALY_LIMIT = 10_000;
/** Bucket rows one timeseries answer may hold; past this, ask for a wider interval. */
export const MAX_TIMESERIES_ROWS = 50_000;

const AGGREGATES = `count(*) AS count, avg(value) AS avg, min(value) AS min, max(value) AS max,
  stddev_samp(value) AS stddev, min(ts) AS first_reading, max(ts) AS last_reading`;

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function aggregate(row: Row | undefined): Aggregate {
  const count = row ? Number(row.count) : 0;
  if (!row || count === 0) {
    return { count: 0, avg: null, min: null, max: null, stddev: null, first_reading: null, last_reading: null };
  }
  return {
    count,
    avg: num(row.avg),
    min: num(row.min),
    max: num(row.max),
    stddev: num(row.stddev),
    first_reading: isoOrNull(row.first_reading),
    last_reading: isoOrNull(row.last_reading),
  };
}

/**
 * The sensor's totals from its per-metric groups (Chan's parallel variance), which spares
 * DuckDB a second grouping of the same rows.
 */
function combine(groups: readonly MetricAggregate[]): Aggregate {
  const result = aggregate(undefined);
  if (groups.length === 0) return result;
  let count = 0;
  let sum = 0;
  for (const g of groups) {
    count += g.count;
    sum += g.avg! * g.count;
  }
  const mean = sum / count;
  let m2 = 0;
  for (const g of groups) {
    m2 += (g.stddev ?? 0) ** 2 * (g.count - 1) + g.count * (g.avg! - mean) ** 2;
  }
  return {
    count,
    avg: mean,
    min: Math.min(...groups.map((g) => g.min!)),
    max: Math.max(...groups.map((g) => g.max!)),
    stddev: count > 1 ? Math.sqrt(m2 / (count - 1)) : null,
    first_reading: groups.map((g) => g.first_reading!).reduce((a, b) => (a < b ? a : b)),
    last_reading: groups.map((g) => g.last_reading!).reduce((a, b) => (a > b ? a : b)),
  };
}

function requireSensorId(sensorId: string): void {
  if (typeof sensorId !== 'string' || sensorId.length === 0) throw new BadRequestError('sensor_id must be a non-empty string');
}

/** count/avg/min/max/stddev and first/last reading of one sensor, overall and per metric (and unit). */
export async function sensorStats(db: SqlRunner, sensorId: string, filter: RangeFilter = {}): Promise<SensorStats> {
  requireSensorId(sensorId);
  const p = new Params();
  const source = matching(p, { ...filter, sensorId });
  const rows = await db.all(
    'stats',
    `SELECT metric, unit, ${AGGREGATES} FROM ${source} AS m GROUP BY metric, unit ORDER BY metric, unit`,
    p.values,
    p.types,
  );
  const metrics = rows.map((row) => ({ metric: String(row.metric), unit: (row.unit as string | null) ?? null, ...aggregate(row) }));
  return { sensor_id: sensorId, ...combine(metrics), metrics };
}

/** Per-metric count/avg/min/max in time buckets aligned on the Unix epoch. */
export async function timeseries(db: SqlRunner, sensorId: string, options: RangeFilter & { interval: string }): Promise<Timeseries> {
  requireSensorId(sensorId);
  const seconds = parseInterval(options.interval);
  const p = new Params();
  const source = matching(p, { ...options, sensorId });
  const width = p.add(new DuckDBIntervalValue(0, 0, BigInt(seconds) * 1_000_000n), INTERVAL);
  const limit = p.number(MAX_TIMESERIES_ROWS + 1);
  const rows = await db.all(
    'timeseries',
    `SELECT time_bucket(${width}, ts, TIMESTAMP '1970-01-01 00:00:00') AS bucket, metric,
       count(*) AS count, avg(value) AS avg, min(value) AS min, max(value) AS max
     FROM ${source} AS m
     GROUP BY bucket, metric ORDER BY bucket, metric LIMIT ${limit}`,
    p.values,
    p.types,
  );
  if (rows.length > MAX_TIMESERIES_ROWS) {
    throw new BadRequestError(`more than ${MAX_TIMESERIES_ROWS} buckets: use a wider interval, a metric or a shorter time range`, 'too_many_buckets');
  }
  return {
    sensor_id: sensorId,
    interval: options.interval,
    interval_seconds: seconds,
    buckets: rows.map((row) => ({
      bucket: isoOrNull(row.bucket)!,
      metric: String(row.metric),
      count: Number(row.count),
      avg: Number(row.avg),
      min: Number(row.min),
      max: Number(row.max),
    })),
  };
}

/**
 * Readings whose z-score against their metric's mean and sample stddev (over the same filter)
 * exceeds the threshold, largest |z| first.
 */
export async function anomalies(
  db: SqlRunner,
  sensorId: string,
  options: RangeFilter & { threshold?: number; limit?: number } = {},
): Promise<Anomalies> {
  requireSensorId(sensorId);
  const threshold = options.threshold ?? 2.0;
  const limit = options.limit ?? 100;
  if (!Number.isFinite(threshold) || threshold <= 0) throw new BadRequestError('threshold must be a number greater than 0');
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_ANOMALY_LIMIT) {
    throw new BadRequestError(`limit must be an integer from 1 to ${MAX_ANOMALY_LIMIT}`);
  }
  const p = new Params();
  const source = matching(p, { ...options, sensorId });
  const t = p.number(threshold);
  const n = p.number(limit);
  // MATERIALIZED: the sensor's readings are scanned once, not once per reference.
  const rows = await db.all(
    'anomalies',
    `WITH readings AS MATERIALIZED (SELECT ts, metric, value FROM ${source} AS m),
       stats AS (SELECT metric, avg(value) AS mean, stddev_samp(value) AS sd FROM readings GROUP BY metric)
     SELECT r.ts, r.metric, r.value, (r.value - s.mean) / s.sd AS z_score, s.mean, s.sd
     FROM readings r JOIN stats s ON r.metric = s.metric
     WHERE s.sd > 0 AND abs(r.value - s.mean) > ${t} * s.sd
     ORDER BY abs(z_score) DESC, r.ts, r.metric
     LIMIT ${n}`,
    p.values,
    p.types,
  );
  return {
    sensor_id: sensorId,
    threshold,
    anomalies: rows.map((row) => ({
      ts: isoOrNull(row.ts)!,
      metric: String(row.metric),
      value: Number(row.value),
      z_score: Number(row.z_score),
      mean: Number(row.mean),
      stddev: Number(row.sd),
    })),
  };
}

/** Aggregates of several sensors side by side, in the order asked; one scan for all of them. */
export async function compare(db: SqlRunner, sensorIds: readonly string[], filter: RangeFilter = {}): Promise<Comparison> {
  const ids = [...new Set(sensorIds)];
  if (ids.length < 1 || ids.length > MAX_COMPARE_SENSORS) {
    throw new BadRequestError(`compare takes 1 to ${MAX_COMPARE_SENSORS} sensor ids`);
  }
  ids.forEach(requireSensorId);
  const p = new Params();
  const source = matching(p, { ...filter, sensorIds: ids });
  const rows = await db.all('compare', `SELECT sensor_id, ${AGGREGATES} FROM ${source} AS m GROUP BY sensor_id`, p.values, p.types);
  const bySensor = new Map(rows.map((row) => [String(row.sensor_id), row]));
  return { sensors: ids.map((id) => ({ sensor_id: id, ...aggregate(bySensor.get(id)) })) };
}

/** Sensors with data, their reading counts, metrics and first/last reading. `sensorIds` limits the list (tenancy). */
export async function sensors(db: SqlRunner, options: { sensorIds?: readonly string[] | undefined } = {}): Promise<SensorList> {
  if (options.sensorIds !== undefined && options.sensorIds.length === 0) return { count: 0, sensors: [] };
  const p = new Params();
  const source = matching(p, options.sensorIds ? { sensorIds: options.sensorIds } : {});
  const rows = await db.all(
    'sensors',
    `SELECT sensor_id, count(*) AS count, list(DISTINCT metric ORDER BY metric) AS metrics,
       min(ts) AS first_reading, max(ts) AS last_reading
     FROM ${source} AS m GROUP BY sensor_id ORDER BY sensor_id`,
    p.values,
    p.types,
  );
  const list = rows.map((row) => ({
    sensor_id: String(row.sensor_id),
    count: Number(row.count),
    metrics: (row.metrics as string[]).map(String),
    first_reading: isoOrNull(row.first_reading)!,
    last_reading: isoOrNull(row.last_reading)!,
  }));
  return { count: list.length, sensors: list };
}

/** Number of stored measurements matching a filter (tests, status). */
export async function countMeasurements(
  db: SqlRunner,
  filter: RangeFilter & { sensorId?: string; sensorIds?: readonly string[] } = {},
): Promise<number> {
  const p = new Params();
  const source = matching(p, filter);
  const rows = await db.all('count', `SELECT count(*) AS count FROM ${source} AS m`, p.values, p.types);
  return Number(rows[0]?.count ?? 0);
}
