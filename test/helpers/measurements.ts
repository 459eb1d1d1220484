import type { CommitRequest, CommitResult } from '../../src/analytics/commit-types.js';
import { PARTITION_TABLES, partitionOf } from '../../src/analytics/partitions.js';
import type { Row } from '../../src/analytics/reader-pool.js';
import { mulberry32 } from '../../src/nanogridata/simulated-sensors.js';
import type { IngestSource } from '../../src/operational/buffer.js';
import { RecordBatchBuilder } from '../../src/operational/record-batch.js';

/** One measurement with its strings, as tests build them (buffer_id: test/compat's rows carry one; the store has no such column). */
export interface MeasurementRow {
  buffer_id?: number;
  /** Unix seconds, may be fractional (kept to the microsecond). */
  ts: number;
  sensor_id: string;
  metric: string;
  value: number;
  unit: string;
  lab_id: string | null;
  model_id: number | null;
  source: string;
}

/** What commits: the engine and the client alike. */
export interface Committer {
  commit(request: CommitRequest): Promise<CommitResult>;
}

/**
 * Commits rows the way the ingest path does: packed records (RecordBatchBuilder), one segment
 * per run of rows with the same source, in one commit with whatever else `request` carries.
 */
export function commitRows(store: Committer, rows: readonly MeasurementRow[], request: Omit<CommitRequest, 'segments'> = {}): Promise<CommitResult> {
  return store.commit({ ...request, segments: segmentsOf(rows) });
}

/** The rows as packed records, one segment per run of rows with the same source. */
export function segmentsOf(rows: readonly MeasurementRow[]): Array<{ source: IngestSource; records: Uint8Array }> {
  const segments: Array<{ source: IngestSource; records: Uint8Array }> = [];
  let builder: RecordBatchBuilder | undefined;
  let source: string | undefined;
  const close = () => {
    // The packed buffer spans its own ArrayBuffer: the client moves it to the worker without a copy.
    if (builder) segments.push({ source: source as IngestSource, records: builder.toBuffer() });
  };
  for (const r of rows) {
    if (!builder || r.source !== source) {
      close();
      builder = new RecordBatchBuilder(rows.length);
      source = r.source;
    }
    builder.add(r, r.lab_id, r.model_id);
  }
  close();
  return segments;
}

/** Measurements stored, counted with SQL on the view (optionally one sensor's). */
export async function countMeasurements(db: { all(op: string, sql: string, values?: never[]): Promise<Row[]> }, sensorId?: string): Promise<number> {
  const rows =
    sensorId === undefined
      ? await db.all('count', 'SELECT count(*)::INTEGER AS n FROM measurements')
      : await db.all('count', 'SELECT count(*)::INTEGER AS n FROM measurements WHERE sensor_id = $1', [sensorId as never]);
  return Number(rows[0]?.n ?? 0);
}

export const BASE_TS = 1_700_000_000;

/**
 * `count` readings spread evenly over `spanS` seconds, sensors and metrics taken in turn,
 * values around 20 with a rare spike (so anomalies exist). Timestamps have fractional seconds.
 */
export function generateRows(options: {
  count: number;
  sensors?: string[];
  metrics?: Array<{ metric: string; unit: string }>;
  spanS?: number;
  seed?: number;
}): MeasurementRow[] {
  const sensors = options.sensors ?? ['sensor-a', 'sensor-b', 'sensor-c'];
  const metrics = options.metrics ?? [
    { metric: 'temperature', unit: 'C' },
    { metric: 'humidity', unit: '%' },
  ];
  const span = options.spanS ?? 2 * 86400;
  const random = mulberry32(options.seed ?? 1);
  const rows: MeasurementRow[] = [];
  for (let i = 0; i < options.count; i++) {
    const m = metrics[Math.floor(i / sensors.length) % metrics.length]!;
    const spike = random() < 0.01 ? 15 : 0;
    rows.push({
      ts: BASE_TS + (i * span) / options.count + 0.25,
      sensor_id: sensors[i % sensors.length]!,
      metric: m.metric,
      value: Math.round((20 + random() * 4 + spike) * 1000) / 1000,
      unit: m.unit,
      lab_id: i % 2 === 0 ? 'lab-1' : null,
      model_id: i % 3 === 0 ? null : 16,
      source: 'test',
    });
  }
  return rows;
}

export interface Expected {
  count: number;
  sum: number;
  avg: number | null;
  min: number | null;
  max: number | null;
  stddev: number | null;
  first: number | null;
  last: number | null;
}

/** Aggregates computed in plain JS, independently of DuckDB. */
export function expectedAggregate(rows: readonly MeasurementRow[]): Expected {
  const n = rows.length;
  if (n === 0) return { count: 0, sum: 0, avg: null, min: null, max: null, stddev: null, first: null, last: null };
  const values = rows.map((r) => r.value);
  const sum = values.reduce((a, b) => a + b, 0);
  const avg = sum / n;
  const ss = values.reduce((a, v) => a + (v - avg) ** 2, 0);
  return {
    count: n,
    sum,
    avg,
    min: Math.min(...values),
    max: Math.max(...values),
    stddev: n > 1 ? Math.sqrt(ss / (n - 1)) : null,
    first: Math.min(...rows.map((r) => r.ts)),
    last: Math.max(...rows.map((r) => r.ts)),
  };
}

/** ISO string of unix seconds at millisecond precision, as the API reports times. */
export const iso = (seconds: number) => new Date(Math.floor(Math.round(seconds * 1e6) / 1000)).toISOString();

/**
 * Series ids given by loadGenerated: far above those the engine hands out, which it does not
 * know about until it reopens (so commit nothing with the same strings afterwards).
 */
const GENERATED_SERIES = 1_000_000_000;

/**
 * `count` readings generated inside DuckDB straight into the layout's tables (millions in a
 * second or two, where tests only need volume): sensor `sensors[i % n]`, one series each, time
 * and value as SQL expressions of the row number `i`.
 */
export async function loadGenerated(
  db: { exec(op: string, sql: string): Promise<void> },
  options: { sensors: readonly string[]; count: number; ts: string; value: string; metric?: string; unit?: string; labId?: string | null; modelId?: number | null; source?: string },
): Promise<void> {
  const quote = (s: string | null | undefined) => (s == null ? 'NULL' : `'${s.replaceAll("'", "''")}'`);
  const n = options.sensors.length;
  const base = GENERATED_SERIES + Math.floor(Math.random() * 1_000_000) * 1000;
  await db.exec(
    'load',
    `INSERT INTO series SELECT ${base} + k, ([${options.sensors.map(quote).join(', ')}])[k + 1], ${quote(options.metric ?? 'temperature')}, ${quote(options.unit ?? 'C')},
       ${quote(options.labId ?? null)}, ${options.modelId ?? 'NULL'}, ${quote(options.source ?? 'test')} FROM range(${n}) t(k)`,
  );
  const byPartition = new Map<number, number[]>();
  options.sensors.forEach((s, k) => byPartition.set(partitionOf(s), [...(byPartition.get(partitionOf(s)) ?? []), k]));
  for (const [p, ks] of byPartition) {
    await db.exec(
      'load',
      `INSERT INTO ${PARTITION_TABLES[p]} SELECT ${base} + (i % ${n}), ${options.ts}, ${options.value} FROM range(${options.count}) t(i) WHERE list_contains([${ks.join(',')}], (i % ${n})::INTEGER)`,
    );
  }
}

/** Numbers rounded to 9 significant digits: DuckDB and PostgreSQL sum floating point in their own order. */
export function rounded(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value), (_, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(9)) : v));
}
