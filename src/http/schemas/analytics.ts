import { z } from 'zod';
import { EXPORT_FORMATS } from '../../analytics/export.js';
import { INTERVAL_PATTERN } from '../../analytics/interval.js';
import { MAX_ANOMALY_LIMIT, MAX_COMPARE_SENSORS } from '../../analytics/queries.js';
import { isoTime, textId, timestampInput } from './common.js';

export const sensorParams = z.object({ sensor_id: textId });

/** Filters of the GET endpoints; times are Unix seconds or ISO 8601, both bounds inclusive. */
const rangeQuery = {
  metric: textId.optional().describe('Only this metric'),
  start: timestampInput.optional().describe('From this time (inclusive): Unix seconds or ISO 8601'),
  end: timestampInput.optional().describe('Up to this time (inclusive): Unix seconds or ISO 8601'),
};

export const statsQuery = z.object(rangeQuery);

export const timeseriesQuery = z.object({
  ...rangeQuery,
  interval: z
    .string()
    .max(16)
    .regex(INTERVAL_PATTERN, 'must be a positive integer and s, m, h or d, e.g. 30s, 5m, 1h, 1d')
    .default('1h')
    .describe('Bucket width: a positive integer and s, m, h or d'),
});

export const anomaliesQuery = z.object({
  ...rangeQuery,
  threshold: z.coerce.number().finite().positive().default(2.0).describe('|z-score| above which a reading is reported; > 0'),
  limit: z.coerce.number().int().min(1).max(MAX_ANOMALY_LIMIT).default(100),
});

export const compareBody = z.object({
  sensor_ids: z.array(textId).min(1).max(MAX_COMPARE_SENSORS),
  start_time: timestampInput.optional(),
  end_time: timestampInput.optional(),
  metric: textId.optional(),
});

export const exportQuery = z.object({
  ...rangeQuery,
  format: z.enum(EXPORT_FORMATS).default('parquet').describe(
    'parquet (application/vnd.apache.parquet), csv (text/csv), json (one JSON array), ndjson (one object per line)',
  ),
  sensor_id: z
    .union([textId, z.array(textId).max(1000)])
    .optional()
    .transform((v) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]))
    .describe('Only these sensors (repeat the parameter for several); default: every sensor the caller may read'),
});

export const exportResponse = z.any().describe('The file, as an attachment: Parquet, CSV, JSON or NDJSON');

const aggregate = {
  count: z.number().int(),
  avg: z.number().nullable(),
  min: z.number().nullable(),
  max: z.number().nullable(),
  stddev: z.number().nullable().describe('Sample standard deviation; null with fewer than two readings'),
  first_reading: isoTime.nullable(),
  last_reading: isoTime.nullable(),
};

export const statsResponse = z
  .object({
    sensor_id: z.string(),
    ...aggregate,
    metrics: z.array(z.object({ metric: z.string(), unit: z.string().nullable(), ...aggregate })),
  })
  .describe('SensorStats');

export const timeseriesResponse = z
  .object({
    sensor_id: z.string(),
    interval: z.string(),
    interval_seconds: z.number().int(),
    buckets: z.array(
      z.object({
        bucket: isoTime.describe('Bucket start; buckets are aligned on the Unix epoch'),
        metric: z.string(),
        count: z.number().int(),
        avg: z.number(),
        min: z.number(),
        max: z.number(),
      }),
    ),
  })
  .describe('Timeseries');

export const anomaliesResponse = z
  .object({
    sensor_id: z.string(),
    threshold: z.number(),
    anomalies: z.array(
      z.object({ ts: isoTime, metric: z.string(), value: z.number(), z_score: z.number(), mean: z.number(), stddev: z.number() }),
    ),
  })
  .describe('Anomalies');

export const compareResponse = z
  .object({ sensors: z.array(z.object({ sensor_id: z.string(), ...aggregate })) })
  .describe('Comparison');

export const sensorsResponse = z
  .object({
    count: z.number().int(),
    sensors: z.array(
      z.object({
        sensor_id: z.string(),
        count: z.number().int(),
        metrics: z.array(z.string()),
        first_reading: isoTime,
        last_reading: isoTime,
      }),
    ),
  })
  .describe('SensorList');
