import type { Readable } from 'node:stream';

/** One measurement as the flusher appends it. */
export interface MeasurementRow {
  /** Id of the SQLite buffer row it came from (several records share one). */
  buffer_id: number;
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

/** Filters every read accepts. Times are Unix seconds; both bounds are inclusive. */
export interface RangeFilter {
  metric?: string | undefined;
  start?: number | undefined;
  end?: number | undefined;
}

export interface Aggregate {
  count: number;
  avg: number | null;
  min: number | null;
  max: number | null;
  /** Sample standard deviation; null with fewer than two readings. */
  stddev: number | null;
  /** ISO-8601 UTC. */
  first_reading: string | null;
  last_reading: string | null;
}

export interface MetricAggregate extends Aggregate {
  metric: string;
  unit: string | null;
}

export interface SensorStats extends Aggregate {
  sensor_id: string;
  metrics: MetricAggregate[];
}

export interface TimeseriesBucket {
  /** Start of the bucket, ISO-8601 UTC. */
  bucket: string;
  metric: string;
  count: number;
  avg: number;
  min: number;
  max: number;
}

export interface Timeseries {
  sensor_id: string;
  interval: string;
  interval_seconds: number;
  buckets: TimeseriesBucket[];
}

export interface Anomaly {
  ts: string;
  metric: string;
  value: number;
  z_score: number;
  mean: number;
  stddev: number;
}

export interface Anomalies {
  sensor_id: string;
  threshold: number;
  anomalies: Anomaly[];
}

export interface SensorAggregate extends Aggregate {
  sensor_id: string;
}

export interface Comparison {
  sensors: SensorAggregate[];
}

export interface SensorSummary {
  sensor_id: string;
  count: number;
  metrics: string[];
  first_reading: string;
  last_reading: string;
}

export interface SensorList {
  count: number;
  sensors: SensorSummary[];
}

export type ExportFormat = 'parquet' | 'csv' | 'json' | 'ndjson';

export interface ExportRequest extends RangeFilter {
  format: ExportFormat;
  /** Tenancy filter: only these sensors; undefined means all. */
  sensorIds?: readonly string[] | undefined;
}

/** A finished export, ready to be sent as a download. */
export interface ExportFile {
  stream: Readable;
  contentType: string;
  filename: string;
  /** Bytes, for Content-Length. */
  size: number;
}

/**
 * What routes need from an analytics store. DuckDB implements it (AnalyticsEngine); another
 * backend (e.g. partitioned Parquet or ClickHouse) would implement the same and nothing above
 * this module would change.
 */
export interface AnalyticsStore {
  sensorStats(sensorId: string, filter?: RangeFilter): Promise<SensorStats>;
  timeseries(sensorId: string, options: RangeFilter & { interval: string }): Promise<Timeseries>;
  anomalies(sensorId: string, options?: RangeFilter & { threshold?: number; limit?: number }): Promise<Anomalies>;
  compare(sensorIds: readonly string[], filter?: RangeFilter): Promise<Comparison>;
  sensors(options?: { sensorIds?: readonly string[] | undefined }): Promise<SensorList>;
  exportMeasurements(request: ExportRequest): Promise<ExportFile>;
}
