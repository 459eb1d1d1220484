import { z } from 'zod';
import { defaulted, integer, isoTime, number, optional, sensorId, textId, timestampInput } from '../fields.js';
import { parseInterval } from './interval.js';

/**
 * Analytics requests and answers, declared once: the HTTP routes validate with these, and the
 * query code takes and returns their z.infer types (see types.ts). What passed these schemas is
 * not checked again below them.
 */

export const MAX_COMPARE_SENSORS = 100;
export const MAX_ANOMALY_LIMIT = 10_000;

export const sensorParams = z.object({ sensor_id: sensorId });

/** start ≤ end, for any object whose bounds are `start`/`end` (or `start_time`/`end_time`). */
function orderedRange<T extends z.ZodType>(schema: T, startKey = 'start', endKey = 'end') {
  return schema.superRefine((value, ctx) => {
    const v = value as Record<string, unknown>;
    const start = v[startKey];
    const end = v[endKey];
    if (typeof start === 'number' && typeof end === 'number' && start > end) {
      ctx.addIssue({ code: 'custom', path: [startKey], message: `${startKey} must not be after ${endKey}` });
    }
  });
}

/** Filters of the GET endpoints; times are Unix seconds or ISO 8601, both bounds inclusive. */
const rangeFields = {
  metric: optional(textId).describe('Only this metric'),
  start: optional(timestampInput).describe('From this time (inclusive): Unix seconds or ISO 8601'),
  end: optional(timestampInput).describe('Up to this time (inclusive): Unix seconds or ISO 8601'),
};
const rangeObject = z.object(rangeFields);

/** The filter every read accepts: metric, and times as Unix seconds. */
export type RangeFilter = Partial<z.output<typeof rangeObject>>;

export const statsQuery = orderedRange(rangeObject);

export const intervalText = z
  .string()
  .superRefine((text, ctx) => {
    const result = parseInterval(text);
    if (!result.ok) ctx.addIssue({ code: 'custom', message: result.reason });
  })
  .describe('Bucket width as DuckDB writes intervals: 30s, 5m, 1h, 1d, 1w, 5 minutes, 1 hour, 1 week, 1 hour 30 minutes');

export const DEFAULT_INTERVAL = '5m';

export const timeseriesQuery = orderedRange(
  z.object({ ...rangeFields, interval: defaulted(intervalText, DEFAULT_INTERVAL).describe(`Bucket width, default ${DEFAULT_INTERVAL}`) }),
);

export const anomaliesQuery = orderedRange(
  z.object({
    ...rangeFields,
    threshold: defaulted(number().pipe(z.number().positive()), 2.0).describe('|z-score| above which a reading is reported; > 0, default 2.0'),
    limit: defaulted(integer().pipe(z.number().min(1).max(MAX_ANOMALY_LIMIT)), 100).describe(`1 to ${MAX_ANOMALY_LIMIT}, default 100`),
  }),
);

export const compareBody = orderedRange(
  z.object({
    sensor_ids: z.array(sensorId).max(MAX_COMPARE_SENSORS),
    start_time: optional(timestampInput),
    end_time: optional(timestampInput),
    metric: optional(textId).describe('Only this metric'),
    // The original's request model had these two; it ignored them, and so do we.
    sensor_id: z.unknown().optional().describe('Accepted and ignored'),
    aggregation: z.unknown().optional().describe('Accepted and ignored'),
  }),
  'start_time',
  'end_time',
);

export const exportFormat = z.enum(['parquet', 'csv', 'json', 'ndjson']);
export type ExportFormat = z.output<typeof exportFormat>;

export const exportQuery = orderedRange(
  z.object({
    ...rangeFields,
    format: defaulted(exportFormat, 'parquet').describe(
      'parquet (application/vnd.apache.parquet), csv (text/csv), json (one JSON array), ndjson (one object per line)',
    ),
    sensor_id: optional(z.union([sensorId, z.array(sensorId).max(1000)]))
      .transform((v) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]))
      .describe('Only these sensors (repeat the parameter for several); default: every sensor the caller may read'),
  }),
);

/** The original's aggregate keys; ours (first/last reading) beside them. */
const aggregate = {
  count: z.number().int(),
  avg_value: z.number().nullable(),
  min_value: z.number().nullable(),
  max_value: z.number().nullable(),
  stddev_value: z.number().nullable().describe('Sample standard deviation; null with fewer than two readings'),
  first_reading: isoTime.nullable(),
  last_reading: isoTime.nullable(),
};
export const aggregateSchema = z.object(aggregate);
export type Aggregate = z.infer<typeof aggregateSchema>;

export const metricAggregateSchema = z.object({ metric: z.string(), unit: z.string().nullable(), ...aggregate });
export type MetricAggregate = z.infer<typeof metricAggregateSchema>;

export const statsResponse = z
  .object({
    ...aggregate,
    sensor_id: z.string(),
    metrics: z.array(metricAggregateSchema).describe('The same per metric (and unit)'),
  })
  .describe('SensorStats: every value of the sensor pooled, as the original, and per metric beside');
export type SensorStats = z.infer<typeof statsResponse>;

const bucketFields = {
  bucket: isoTime.describe('Bucket start; buckets are aligned on the Unix epoch'),
  avg_value: z.number(),
  min_value: z.number(),
  max_value: z.number(),
  count: z.number().int(),
};

export const timeseriesResponse = z
  .object({
    sensor_id: z.string(),
    interval: z.string(),
    data: z.array(z.object(bucketFields)).describe('Oldest bucket first; every value of the sensor in the bucket pooled (one metric with ?metric=)'),
    interval_seconds: z.number().int(),
    by_metric: z.array(z.object({ ...bucketFields, metric: z.string() })).describe('The same per metric: by bucket, then metric'),
  })
  .describe('Timeseries');
export type Timeseries = z.infer<typeof timeseriesResponse>;

export const anomalySchema = z.object({
  timestamp: isoTime,
  value: z.number(),
  z_score: z.number(),
  metric: z.string(),
  mean: z.number().describe("The metric's mean over the filter"),
  stddev: z.number().describe("The metric's sample standard deviation over the filter"),
});

export const anomaliesResponse = z
  .object({
    sensor_id: z.string(),
    threshold: z.number(),
    anomalies: z.array(anomalySchema).describe('Newest first; z-scores against the reading’s own metric'),
    count: z.number().int(),
  })
  .describe('Anomalies');
export type Anomalies = z.infer<typeof anomaliesResponse>;

const sensorAggregateSchema = z.object({ sensor_id: z.string(), ...aggregate });

export const compareResponse = z
  .object({
    comparison: z
      .record(z.string(), aggregateSchema)
      .describe('Sensor id → its aggregates, in descending avg_value (sensors without data last)'),
    sensors: z.array(sensorAggregateSchema).describe('The same as a list, in the order asked'),
  })
  .describe('Comparison');
export type Comparison = z.infer<typeof compareResponse>;

/** Most sensors per page of the sensor list (and its default). */
export const SENSORS_PAGE_MAX = 1000;

export const sensorsQuery = z.object({
  limit: defaulted(integer().pipe(z.number().min(1).max(SENSORS_PAGE_MAX)), SENSORS_PAGE_MAX).describe(`1 to ${SENSORS_PAGE_MAX}, default ${SENSORS_PAGE_MAX}`),
  after: optional(textId).describe('Continue after this sensor id (from next_after)'),
});

export const sensorsResponse = z
  .object({
    count: z.number().int().describe('Sensors in this page'),
    sensors: z.array(
      z.object({
        sensor_id: z.string(),
        count: z.number().int(),
        metrics: z.array(z.string()),
        first_reading: isoTime,
        last_reading: isoTime,
      }),
    ),
    next_after: z.string().nullable().describe('Pass as `after` for the next page; null at the end'),
  })
  .describe('SensorList');
export type SensorList = z.infer<typeof sensorsResponse>;

/** The file: a byte stream, documented as OpenAPI's binary string. */
export const exportResponse = z.any().meta({ type: 'string', format: 'binary', description: 'The file, as an attachment' });
