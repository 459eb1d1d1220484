import { DOUBLE, INTEGER, LIST, TIMESTAMP, VARCHAR, DuckDBTimestampValue, listValue, type DuckDBType, type DuckDBValue } from '@duckdb/node-api';
import { MAX_MEASUREMENT } from '../nanogridata/types.js';
import { PARTITION_TABLES, partitionOf } from './partitions.js';
import type { RangeFilter } from './types.js';

/**
 * Bound values of a statement. SQL text comes only from the fixed fragments of this module
 * (one variant per combination of filters present), so every user value is a parameter and
 * each variant is prepared once per connection. Absent filters are left out of the text rather
 * than written as `$n IS NULL OR …`, which keeps the predicates simple enough for DuckDB to
 * push into the scan (zone maps on ts).
 */
export class Params {
  readonly values: DuckDBValue[] = [];
  readonly types: DuckDBType[] = [];

  /** Binds a value and returns its placeholder. */
  add(value: DuckDBValue, type: DuckDBType): string {
    this.values.push(value);
    this.types.push(type);
    return `$${this.values.length}`;
  }

  text(value: string): string {
    return this.add(value, VARCHAR);
  }

  number(value: number): string {
    return this.add(value, DOUBLE);
  }

  time(seconds: number): string {
    return this.add(toTimestamp(seconds), TIMESTAMP);
  }

  textList(values: readonly string[]): string {
    return this.add(listValue([...values]), LIST(VARCHAR));
  }
}

/** Unix seconds → DuckDB TIMESTAMP (UTC, microseconds). */
export function toTimestamp(seconds: number): DuckDBTimestampValue {
  return new DuckDBTimestampValue(BigInt(Math.round(seconds * 1e6)));
}

/** DuckDB TIMESTAMP read back as a JS Date → ISO-8601 UTC. */
export function isoOrNull(value: unknown): string | null {
  return value instanceof Date ? value.toISOString() : null;
}

export type Selection = RangeFilter & {
  sensorId?: string | undefined;
  sensorIds?: readonly string[] | undefined;
  /**
   * Only values within the ingest bound. Ingest refuses larger ones, but files written before
   * the bound may hold them (up to ±inf and NaN), and one such value would turn an aggregate
   * into inf or make DuckDB's stddev fail with "out of range".
   */
  aggregatable?: boolean;
};

/** A measurement's columns, as the view `measurements` has them: readings joined with their series. */
const COLUMNS = 's.sensor_id, r.ts, s.metric, r.value, s.unit, s.lab_id, s.model_id, s.source';

/**
 * The measurements matching a selection, as a parenthesised subquery to select FROM, with the
 * columns of the view `measurements`. The series table is filtered first (sensor, metric), then
 * the readings of those series are read from the partitions the sensors hash to:
 * - one sensor: its partition table only;
 * - a list of sensors: only the partitions those sensors hash to, each branch with its own bound
 *   list, so each series is checked against one or two ids rather than all of them (statements
 *   are planned per query, so a text that varies with the list costs nothing); an empty list
 *   selects nothing;
 * - no sensor: all partitions.
 * Reading conditions sit inside each branch so DuckDB pushes them into the scans (zone maps on
 * ts). The selection is what the request schemas accepted (start ≤ end, finite times), so it is
 * not checked again here.
 */
export function matching(params: Params, selection: Selection): string {
  const onSeries: string[] = [];
  if (selection.metric !== undefined) onSeries.push(`metric = ${params.text(selection.metric)}`);
  const onReadings: string[] = [];
  if (selection.start !== undefined) onReadings.push(`r.ts >= ${params.time(selection.start)}`);
  if (selection.end !== undefined) onReadings.push(`r.ts <= ${params.time(selection.end)}`);
  if (selection.aggregatable) onReadings.push(`abs(r.value) <= ${MAX_MEASUREMENT}`);

  const branch = (partition: number, sensorMatch?: string) => {
    const seriesWhere = [...(sensorMatch ? [sensorMatch] : []), ...onSeries];
    const series = seriesWhere.length > 0 ? `(SELECT * FROM series WHERE ${seriesWhere.join(' AND ')})` : 'series';
    const where = onReadings.length > 0 ? ` WHERE ${onReadings.join(' AND ')}` : '';
    return `SELECT ${COLUMNS} FROM ${PARTITION_TABLES[partition]} r JOIN ${series} s ON r.series = s.series${where}`;
  };

  if (selection.sensorId !== undefined) {
    return `(${branch(partitionOf(selection.sensorId), `sensor_id = ${params.text(selection.sensorId)}`)})`;
  }
  if (selection.sensorIds === undefined) return `(${PARTITION_TABLES.map((_, p) => branch(p)).join(' UNION ALL ')})`;
  const lists = new Map<number, string[]>();
  for (const id of new Set(selection.sensorIds)) {
    const p = partitionOf(id);
    lists.set(p, [...(lists.get(p) ?? []), id]);
  }
  if (lists.size === 0) return `(SELECT ${COLUMNS} FROM ${PARTITION_TABLES[0]} r JOIN series s ON r.series = s.series WHERE false)`;
  const branches = [...lists].map(([p, own]) =>
    // One id: plain equality; more: list_contains (measured faster than `= ANY` or an IN-subquery).
    branch(p, own.length === 1 ? `sensor_id = ${params.text(own[0]!)}` : `list_contains(${params.textList(own)}, sensor_id)`),
  );
  return `(${branches.join(' UNION ALL ')})`;
}

/**
 * The readings `(series, ts, value)` of the given series (ids by partition, read from the series
 * table first) within a range, as a parenthesised subquery: each partition is scanned once with
 * a constant list of ids, and nothing is joined per reading.
 */
export function readingsOf(params: Params, seriesByPartition: ReadonlyMap<number, readonly number[]>, range: RangeFilter & { aggregatable?: boolean }): string {
  const conditions: string[] = [];
  if (range.start !== undefined) conditions.push(`ts >= ${params.time(range.start)}`);
  if (range.end !== undefined) conditions.push(`ts <= ${params.time(range.end)}`);
  if (range.aggregatable) conditions.push(`abs(value) <= ${MAX_MEASUREMENT}`);
  const branches = [...seriesByPartition].map(([p, ids]) => {
    const match = `series IN (${ids.map((id) => params.add(id, INTEGER)).join(', ')})`;
    return `SELECT series, ts, value FROM ${PARTITION_TABLES[p]} WHERE ${[match, ...conditions].join(' AND ')}`;
  });
  return `(${branches.join(' UNION ALL ')})`;
}
