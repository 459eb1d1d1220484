import type { MeasurementRow } from '../../src/analytics/engine.js';
import { mulberry32 } from '../../src/nanogridata/simulated-sensors.js';

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
  firstBufferId?: number;
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
      buffer_id: (options.firstBufferId ?? 1) + Math.floor(i / 4),
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
