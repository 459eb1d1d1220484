import { z } from 'zod';
import { timestampInput } from '../timestamps.js';
import type { Reading } from './pipeline.js';

const SENSOR_ID = /^[\w.:@-]{1,128}$/;

const dataObject = z.record(z.string().min(1).max(128), z.unknown());

/** `data` is a JSON object, or JSON text of one (as the original accepted). */
const readingDataSchema = z.union([
  dataObject,
  z.string().transform((text, ctx) => {
    try {
      const parsed: unknown = JSON.parse(text);
      const result = dataObject.safeParse(parsed);
      if (result.success) return result.data;
    } catch {
      // reported below
    }
    ctx.addIssue({ code: 'custom', message: 'data must be a JSON object (or JSON text of one)' });
    return z.NEVER;
  }),
]);

/** The body of one reading, shared by HTTP ingest and JSON stream entries. */
export const readingSchema = z
  .object({
    sensor_id: z.string().regex(SENSOR_ID, 'sensor_id: 1–128 of letters, digits, _ . : @ -'),
    data: readingDataSchema,
    timestamp: timestampInput.optional(),
  })
  .transform((r): Reading => ({ sensor_id: r.sensor_id, data: r.data, timestamp: r.timestamp ?? Date.now() / 1000 }));

/** Parses a JSON stream entry's text fields. */
export function parseReadingFields(fields: { sensor_id?: string; data?: string; timestamp?: string }):
  | { ok: true; reading: Reading }
  | { ok: false; message: string } {
  const result = readingSchema.safeParse({
    sensor_id: fields.sensor_id,
    data: fields.data,
    ...(fields.timestamp !== undefined ? { timestamp: fields.timestamp } : {}),
  });
  return result.success ? { ok: true, reading: result.data } : { ok: false, message: result.error.issues.map((i) => i.message).join('; ') };
}
