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

const ISO_RE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;
const NUMERIC_RE = /^\d+(?:\.\d+)?$/;
/** Unix seconds accepted: up to year 5138, which also refuses milliseconds by mistake. */
const MAX_UNIX_S = 1e11;

/**
 * A point in time as clients send it: Unix seconds (number or numeric text) or ISO 8601 text
 * (without a zone it is taken as UTC). Parsed to Unix seconds.
 */
export const timestampInput = z
  .union([
    z.number().min(0).max(MAX_UNIX_S, 'must be Unix seconds (not milliseconds)'),
    z.string().max(64),
  ])
  .transform((value, ctx): number => {
    if (typeof value === 'number') return value;
    if (NUMERIC_RE.test(value)) {
      const n = Number(value);
      if (n <= MAX_UNIX_S) return n;
      ctx.addIssue({ code: 'custom', message: 'must be Unix seconds (not milliseconds)' });
      return z.NEVER;
    }
    const match = ISO_RE.exec(value);
    let text = value.replace(' ', 'T');
    // A date-time without a zone is UTC here (JavaScript would take it as local time).
    if (match && text.includes('T') && match[1] === undefined) text += 'Z';
    const ms = match ? Date.parse(text) : NaN;
    if (Number.isNaN(ms) || ms < 0) {
      ctx.addIssue({ code: 'custom', message: 'must be Unix seconds or an ISO 8601 time' });
      return z.NEVER;
    }
    return ms / 1000;
  })
  .describe('Unix seconds, or ISO 8601 text (UTC when it has no zone)');
