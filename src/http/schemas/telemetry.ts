import { z } from 'zod';
import { readingSchema } from '../../ingest/reading.js';
import { idParam } from './common.js';

/**
 * One reading, parsed to the pipeline's `Reading` by the schema shared with JSON stream entries
 * (ingest/reading.ts), so HTTP and the stream accept exactly the same input.
 */
export const readingInput = readingSchema;

export const MAX_BATCH = 10_000;
export const batchBody = z.array(readingInput).min(1).max(MAX_BATCH);

export const ingestResponse = z.object({
  status: z.literal('accepted'),
  id: z.number().int().describe('Buffer row id'),
  sensor_id: z.string(),
  records: z.number().int().describe('Measurement records produced (numeric fields)'),
  buffered: z.literal(true),
});

export const batchResponse = z.object({
  status: z.literal('accepted'),
  count: z.number().int(),
  ids: z.array(z.number().int()),
  records: z.number().int(),
});

export const unprocessedQuery = z.object({
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
});

export const unprocessedResponse = z.object({
  count: z.number().int(),
  data: z.array(
    z.object({
      id: z.number().int(),
      source_id: z.string(),
      source: z.string(),
      sensor_id: z.string(),
      ts: z.number().describe('Unix seconds'),
      lab_id: z.string().nullable(),
      model_id: z.number().int().nullable(),
      records: z.array(z.object({ sensor_id: z.string(), metric: z.string(), unit: z.string(), ts: z.number(), value: z.number() })),
      record_count: z.number().int(),
      processed: z.boolean(),
      created_at: z.number().int().describe('Unix seconds'),
    }),
  ),
});

const ids = z.array(idParam).max(100_000);
/** An array of buffer ids (as the original) or `{ids: [...]}`. */
export const markProcessedBody = z.union([ids, z.object({ ids })]);

export const markProcessedResponse = z.object({
  marked: z.number().int().describe('Rows that changed from unprocessed to processed'),
  requested: z.number().int(),
});
