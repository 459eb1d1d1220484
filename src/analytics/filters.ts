import { DOUBLE, LIST, TIMESTAMP, VARCHAR, DuckDBTimestampValue, listValue, type DuckDBType, type DuckDBValue } from '@duckdb/node-api';
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

/**
 * The measurements matching a selection, as a parenthesised subquery to select FROM:
 * - one sensor: its partition table only;
 * - a list of sensors: only the partitions those sensors hash to, each branch with its own bound
 *   list, so each row is checked against one or two ids rather than all of them (statements are
 *   planned per query, so a text that varies with the list costs nothing; a bound gate on every
 *   partition, as before, still scanned them all); an empty list selects nothing;
 * - no sensor: all partitions.
 * Conditions sit inside each branch so DuckDB pushes them into the scans. The selection is what
 * the request schemas accepted (start ≤ end, finite times), so it is not checked again here.
 */
export function matching(params: Params, selection: Selection): string {
  const conditions: string[] = [];
  if (selection.sensorId !== undefined) conditions.push(`sensor_id = ${params.text(selection.sensorId)}`);
  if (selection.metric !== undefined) conditions.push(`metric = ${params.text(selection.metric)}`);
  if (selection.start !== undefined) conditions.push(`ts >= ${params.time(selection.start)}`);
  if (selection.end !== undefined) conditions.push(`ts <= ${params.time(selection.end)}`);
  if (selection.aggregatable) conditions.push(`abs(value) <= ${MAX_MEASUREMENT}`);

  if (selection.sensorId !== undefined) {
    return `(SELECT * FROM ${PARTITION_TABLES[partitionOf(selection.sensorId)]} WHERE ${conditions.join(' AND ')})`;
  }
  if (selection.sensorIds === undefined) {
    return `(${PARTITION_TABLES.map((table) => `SELECT * FROM ${table}${conditions.length > 0 ? ` WHERE ${conditions.join(' AND ')}` : ''}`).join(' UNION ALL ')})`;
  }
  const lists = new Map<number, string[]>();
  for (const id of new Set(selection.sensorIds)) {
    const p = partitionOf(id);
    lists.set(p, [...(lists.get(p) ?? []), id]);
  }
  if (lists.size === 0) return `(SELECT * FROM ${PARTITION_TABLES[0]} WHERE false)`;
  const branches = [...lists].map(([i, own]) => {
    // One id: plain equality; more: list_contains (measured faster than `= ANY` or an IN-subquery).
    const match = own.length === 1 ? `sensor_id = ${params.text(own[0]!)}` : `list_contains(${params.textList(own)}, sensor_id)`;
    return `SELECT * FROM ${PARTITION_TABLES[i]} WHERE ${[match, ...conditions].join(' AND ')}`;
  });
  return `(${branches.join(' UNION ALL ')})`;
}
