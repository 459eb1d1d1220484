import type { Readable } from 'node:stream';
import type { Anomalies, Comparison, ExportFormat, RangeFilter, SensorList, SensorStats, Timeseries } from './schemas.js';

/** The answer and filter shapes are declared once, as zod schemas, in schemas.ts. */
export type {
  Aggregate,
  Anomalies,
  Comparison,
  ExportFormat,
  MetricAggregate,
  RangeFilter,
  SensorList,
  SensorStats,
  Timeseries,
} from './schemas.js';

export interface ExportRequest extends RangeFilter {
  format: ExportFormat;
  /** Tenancy filter: only these sensors; undefined means all. */
  sensorIds?: readonly string[] | undefined;
}

/** What a sensor list asks: which sensors may appear (tenancy; undefined = all), and the page. */
export interface SensorsPage {
  sensorIds?: readonly string[] | undefined;
  /** Only sensors after this id. */
  after?: string | undefined;
  /** At most this many. */
  limit?: number | undefined;
}

/** A finished export, ready to be sent as a download. */
export interface ExportFile {
  stream: Readable;
  contentType: string;
  filename: string;
  /** Bytes, for Content-Length, when known before sending (a streamed export is not: chunked). */
  size?: number;
  /** Settles once the stream has closed and the COPY behind it ended: the export's slot is free. */
  finished: Promise<void>;
}

/**
 * What routes need from an analytics store. DuckDB implements it (AnalyticsEngine); another
 * backend (e.g. partitioned Parquet or ClickHouse) would implement the same and nothing above
 * this module would change. Inputs are what the request schemas let through.
 */
export interface AnalyticsStore {
  sensorStats(sensorId: string, filter?: RangeFilter): Promise<SensorStats>;
  /** `interval` as the timeseries schema accepted it (see interval.ts). */
  timeseries(sensorId: string, options: RangeFilter & { interval: string }): Promise<Timeseries>;
  anomalies(sensorId: string, options?: RangeFilter & { threshold?: number; limit?: number }): Promise<Anomalies>;
  compare(sensorIds: readonly string[], filter?: RangeFilter): Promise<Comparison>;
  sensors(options?: SensorsPage): Promise<SensorList>;
  exportMeasurements(request: ExportRequest): Promise<ExportFile>;
}
