import { AGGREGATES, aggregate, anomaliesOf, combine, comparisonOf, MAX_TIMESERIES_ROWS, sensorListOf, timeseriesOf } from '../analytics/queries.js';
import type { Selection } from '../analytics/filters.js';
import { intervalSeconds } from '../analytics/interval.js';
import type { Aggregate, AnalyticsStore, Anomalies, Comparison, RangeFilter, SensorList, SensorsPage, SensorStats, Timeseries } from '../analytics/types.js';
import { MAX_MEASUREMENT } from '../nanogridata/types.js';
import type { Pg } from './connect.js';
import { pgExporter, type PgExportOptions } from './export.js';

/**
 * The analytics reads on the shared PostgreSQL, answering as the embedded DuckDB store does
 * (analytics/queries.ts: the same aggregates, orders and limits; the answers are compared in the
 * tests). Text is ordered with COLLATE "C" (byte order, as DuckDB), whatever the database's locale.
 * Every value is a bound parameter; the SQL text comes only from the fragments here.
 */

class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

const C = 'COLLATE "C"';

/** The matching measurements as a subquery with the columns of the view `measurements`; the series are filtered first. */
function matching(p: Params, selection: Selection): string {
  const onSeries: string[] = [];
  if (selection.sensorId !== undefined) onSeries.push(`sensor_id = ${p.add(selection.sensorId)}`);
  if (selection.sensorIds !== undefined) onSeries.push(`sensor_id = ANY(${p.add([...new Set(selection.sensorIds)])}::text[])`);
  if (selection.metric !== undefined) onSeries.push(`metric = ${p.add(selection.metric)}`);
  const onReadings = readingConditions(p, selection);
  const series = onSeries.length > 0 ? `(SELECT * FROM series WHERE ${onSeries.join(' AND ')})` : 'series';
  const where = onReadings.length > 0 ? ` WHERE ${onReadings.join(' AND ')}` : '';
  return `(SELECT s.sensor_id, r.ts, s.metric, r.value, s.unit, s.lab_id, s.model_id, s.source FROM readings r JOIN ${series} s ON r.series = s.series${where})`;
}

function readingConditions(p: Params, range: RangeFilter & { aggregatable?: boolean }): string[] {
  const conditions: string[] = [];
  if (range.start !== undefined) conditions.push(`r.ts >= to_timestamp(${p.add(range.start)})`);
  if (range.end !== undefined) conditions.push(`r.ts <= to_timestamp(${p.add(range.end)})`);
  if (range.aggregatable) conditions.push(`abs(r.value) <= ${MAX_MEASUREMENT}`);
  return conditions;
}

export async function sensorStats(pool: Pg, sensorId: string, filter: RangeFilter = {}): Promise<SensorStats> {
  const p = new Params();
  const source = matching(p, { ...filter, sensorId, aggregatable: true });
  const { rows } = await pool.query(`SELECT metric, unit, ${AGGREGATES} FROM ${source} AS m GROUP BY metric, unit ORDER BY metric ${C}, unit ${C}`, p.values);
  const metrics = rows.map((row) => ({ metric: String(row.metric), unit: (row.unit as string | null) ?? null, ...aggregate(row) }));
  return { ...combine(metrics), sensor_id: sensorId, metrics };
}

export async function timeseries(pool: Pg, sensorId: string, options: RangeFilter & { interval: string }): Promise<Timeseries> {
  const seconds = intervalSeconds(options.interval);
  const p = new Params();
  const source = matching(p, { ...options, sensorId, aggregatable: true });
  const width = p.add(seconds);
  const limit = p.add(MAX_TIMESERIES_ROWS + 1);
  const { rows } = await pool.query(
    `SELECT bucket, metric, grouping(metric) AS pooled, count(*) AS count, avg(value) AS avg, min(value) AS min, max(value) AS max
     FROM (SELECT date_bin(make_interval(secs => ${width}), ts, timestamptz '1970-01-01 00:00:00+00') AS bucket, metric, value FROM ${source} AS m) AS b
     GROUP BY GROUPING SETS ((bucket), (bucket, metric))
     ORDER BY bucket, pooled DESC, metric ${C} LIMIT ${limit}`,
    p.values,
  );
  return timeseriesOf(rows, sensorId, options.interval, seconds);
}

export async function anomalies(pool: Pg, sensorId: string, options: RangeFilter & { threshold?: number; limit?: number } = {}): Promise<Anomalies> {
  const threshold = options.threshold ?? 2.0;
  const limit = options.limit ?? 100;
  const p = new Params();
  const source = matching(p, { ...options, sensorId, aggregatable: true });
  const t = p.add(threshold);
  const n = p.add(limit);
  const { rows } = await pool.query(
    `WITH readings AS MATERIALIZED (SELECT ts, metric, value FROM ${source} AS m),
       stats AS (SELECT metric, avg(value) AS mean, stddev_samp(value) AS sd FROM readings GROUP BY metric)
     SELECT r.ts, r.metric, r.value, (r.value - s.mean) / s.sd AS z_score, s.mean, s.sd
     FROM readings r JOIN stats s ON r.metric = s.metric
     WHERE s.sd > 0 AND abs(r.value - s.mean) > ${t}::double precision * s.sd
     ORDER BY r.ts DESC, r.metric ${C}
     LIMIT ${n}::bigint`,
    p.values,
  );
  return anomaliesOf(rows, sensorId, threshold);
}

/**
 * Aggregates of several sensors, as the embedded store answers: their series are read first, then
 * only those series' readings (index ranges), grouped by series and combined per sensor here.
 */
export async function compare(pool: Pg, sensorIds: readonly string[], filter: RangeFilter = {}): Promise<Comparison> {
  const ids = [...new Set(sensorIds)];
  if (ids.length === 0) return { comparison: {}, sensors: [] };
  const q = new Params();
  const metric = filter.metric !== undefined ? ` AND metric = ${q.add(filter.metric)}` : '';
  const series = await pool.query<{ series: number; sensor_id: string }>(`SELECT series, sensor_id FROM series WHERE sensor_id = ANY(${q.add(ids)}::text[])${metric}`, q.values);
  const sensorOf = new Map(series.rows.map((r) => [r.series, r.sensor_id]));
  const groups = new Map<string, Aggregate[]>();
  if (sensorOf.size > 0) {
    const p = new Params();
    const conditions = [`r.series = ANY(${p.add([...sensorOf.keys()])}::integer[])`, ...readingConditions(p, { ...filter, aggregatable: true })];
    const { rows } = await pool.query(`SELECT r.series, ${AGGREGATES} FROM readings r WHERE ${conditions.join(' AND ')} GROUP BY r.series`, p.values);
    for (const row of rows) {
      const sensor = sensorOf.get(Number(row.series))!;
      groups.set(sensor, [...(groups.get(sensor) ?? []), aggregate(row)]);
    }
  }
  return comparisonOf(ids, groups);
}

export async function sensors(pool: Pg, options: SensorsPage = {}): Promise<SensorList> {
  if (options.sensorIds !== undefined && options.sensorIds.length === 0) return { count: 0, sensors: [], next_after: null };
  const p = new Params();
  const source = matching(p, options.sensorIds ? { sensorIds: options.sensorIds } : {});
  const after = options.after !== undefined ? `WHERE sensor_id ${C} > ${p.add(options.after)}` : '';
  const limit = options.limit !== undefined ? `LIMIT ${p.add(options.limit + 1)}` : '';
  const { rows } = await pool.query(
    `SELECT sensor_id, count(*) AS count, array_agg(DISTINCT metric ${C} ORDER BY metric ${C}) AS metrics,
       min(ts) AS first_reading, max(ts) AS last_reading
     FROM ${source} AS m ${after} GROUP BY sensor_id ORDER BY sensor_id ${C} ${limit}`,
    p.values,
  );
  return sensorListOf(rows, options.limit);
}

/** The analytics store of the shared mode: the reads above and exports (export.ts) over one pool. */
export function createPgAnalytics(pool: Pg, exports: PgExportOptions): AnalyticsStore {
  return {
    sensorStats: (sensorId, filter) => sensorStats(pool, sensorId, filter),
    timeseries: (sensorId, options) => timeseries(pool, sensorId, options),
    anomalies: (sensorId, options) => anomalies(pool, sensorId, options),
    compare: (sensorIds, filter) => compare(pool, sensorIds, filter),
    sensors: (options) => sensors(pool, options),
    ...pgExporter(pool, exports),
  };
}
