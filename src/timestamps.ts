import { z } from 'zod';

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
