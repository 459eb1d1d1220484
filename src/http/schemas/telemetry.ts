import { z } from 'zod';
import { readingSchema } from '../../ingest/reading.js';
import { defaulted, idParam, integer, isoTime, optional } from './common.js';

/**
 * One reading, parsed to the pipeline's `Reading` by the schema shared with JSON stream entries
 * (ingest/reading.ts), so HTTP and the stream accept exactly the same input.
 */
export const readingInput = readingSchema;

export const MAX_BATCH = 10_000;
export const batchBody = z.array(readingInput).max(MAX_BATCH);

export const ingestResponse = z.object({
  id: z.number().int().describe('Buffer row id (the reading in the work queue)'),
  sensor_id: z.string(),
  buffered: z.literal(true),
  timestamp: isoTime.describe('When it was stored'),
  status: z.literal('accepted'),
  records: z.number().int().describe('Analytics records made of its numeric fields'),
});

export const batchResponse = z.object({
  count: z.number().int(),
  ids: z.array(z.number().int()),
  timestamp: isoTime,
  status: z.literal('accepted'),
  records: z.number().int(),
});

export const unprocessedQuery = z.object({
  limit: defaulted(integer().pipe(z.number().min(1).max(10_000)), 1000),
  after: optional(idParam).describe('Continue after this id (from next_after), without marking the page processed'),
});

export const unprocessedResponse = z.object({
  count: z.number().int(),
  next_after: z.number().int().nullable().describe('Pass as `after` for the next page; null at the end'),
  data: z.array(
    z.object({
      id: z.number().int(),
      sensor_id: z.string(),
      timestamp: isoTime.describe("The reading's time"),
      data: z.string().describe('Exactly what the client sent as data'),
      source: z.string(),
      records: z.number().int(),
      created_at: isoTime,
    }),
  ),
});

const ids = z.array(idParam).max(100_000);
/** An array of buffer ids (as the original) or `{ids: [...]}`. */
export const markProcessedBody = z.union([ids, z.object({ ids })]);

export const markProcessedResponse = z.object({
  processed: z.number().int().describe('Readings taken out of the work queue'),
  success: z.boolean(),
  requested: z.number().int(),
});

export const quarantineQuery = z.object({
  limit: defaulted(integer().pipe(z.number().min(1).max(10_000)), 100),
  offset: defaulted(integer().pipe(z.number().min(0).max(1_000_000)), 0).describe('Records to skip (0 to 1,000,000), for the next page'),
});

export const quarantineResponse = z.object({
  count: z.number().int().describe('Records quarantined in all'),
  records: z.array(
    z.object({
      buffer_id: z.number().int(),
      record: z.number().int().describe('Position of the record in its buffer row'),
      content: z.record(z.string(), z.unknown()),
      error: z.string(),
      quarantined_at: isoTime,
    }),
  ),
});
