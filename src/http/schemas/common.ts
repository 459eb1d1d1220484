import { z } from 'zod';

/** The JSON shape of every error answer (see http/errors.ts). */
export const errorSchema = z
  .object({
    error: z.string(),
    message: z.string(),
    statusCode: z.number().int(),
    details: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .describe('Error');

/** Error responses for the OpenAPI document: `errors(400, 401, 403)`. */
export function errors<const C extends number>(...codes: C[]): Record<C, typeof errorSchema> {
  return Object.fromEntries(codes.map((c) => [c, errorSchema])) as Record<C, typeof errorSchema>;
}

/** A database id in a path or query: digits only. */
export const idParam = z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** Identifiers of sensors, profiles and metadata keys: 1..256 characters, no control characters. */
export const textId = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters');

export const isoTime = z.string().describe('ISO 8601 time, UTC');

/** Unix seconds or ISO 8601, parsed to Unix seconds; shared with stream entries. */
export { timestampInput } from '../../timestamps.js';
