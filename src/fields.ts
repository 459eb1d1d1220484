import { z } from 'zod';
import { MAX_SENSOR_ID_LENGTH, SENSOR_ID_PATTERN } from './sensor-id.js';

/**
 * Field schemas shared by every request schema (HTTP and analytics alike), written for the
 * habits of the original's clients: `null` for an optional field means absent, a number is
 * accepted where text is expected (`"sensor_id": 42`), numeric text where an integer is
 * (`?amount=5`). http/schemas/common.ts re-exports them for the route schemas.
 */

/** `null` or absent: both come out as undefined (the original's clients send `null` for "not given"). */
export function optional<T extends z.ZodType>(schema: T) {
  return schema.nullish().transform((v): z.output<T> | undefined => (v === null ? undefined : v));
}

// eslint-disable-next-line no-control-regex -- refusing control characters is this pattern's purpose
const CONTROL = /^[^\u0000-\u001f\u007f]*$/;
/** U+0000 is refused in every text: no client means it, and PostgreSQL's text (the shared mode) cannot hold it. */
// eslint-disable-next-line no-control-regex -- refusing U+0000 is this pattern's purpose
export const NO_NUL = /^[^\u0000]*$/;
export const NUL_MESSAGE = 'must not contain the NUL character (U+0000)';

/**
 * Text, also given as a number (JSON `42` reads as "42", as pydantic coerced it).
 * `controls: false` refuses control characters.
 */
export function text(options: { min?: number; max: number; controls?: boolean; pattern?: { regex: RegExp; message: string } }) {
  let s = z.string().min(options.min ?? 1).max(options.max);
  s = options.controls === false ? s.regex(CONTROL, 'must not contain control characters') : s.regex(NO_NUL, NUL_MESSAGE);
  if (options.pattern) s = s.regex(options.pattern.regex, options.pattern.message);
  return z
    .union([z.string(), z.number().finite()])
    .transform((v) => (typeof v === 'number' ? String(v) : v))
    .pipe(s);
}

/** Profile ids and metadata keys: any non-empty text up to 256 characters but control characters. */
export const textId = text({ max: 256, controls: false }).describe('1 to 256 characters, no control characters');

/** Sensor (= device) ids: the rule of sensor-id.ts, which frames follow too. */
export const sensorId = text({
  max: MAX_SENSOR_ID_LENGTH,
  pattern: { regex: SENSOR_ID_PATTERN, message: 'must not contain control, zero-width or bidirectional-control characters' },
}).describe('1 to 256 characters, no control, zero-width or bidirectional-control characters');

/** A user id: the UUID text the API answers (any other text simply names no user). */
export const userId = text({ max: 64 }).describe('User id (UUID)');

const INTEGER_TEXT = /^\s*[+-]?\d+(?:\.0*)?\s*$/;

/**
 * Numeric text → number; other text is reported as the wrong type (pydantic's
 * type_error.integer / type_error.float), not as a pattern mismatch.
 */
function numericText(pattern: RegExp, expected: 'int' | 'number', message: string) {
  return z.union([z.number(), z.string()]).transform((v, ctx): number => {
    if (typeof v === 'number') return v;
    if (pattern.test(v)) return Number(v);
    ctx.addIssue({ code: 'invalid_type', expected, input: v, message });
    return z.NEVER;
  });
}

/** An integer, also as numeric text (`"5"`, as query strings always are). */
export function integer() {
  return numericText(INTEGER_TEXT, 'int', 'value is not a valid integer').pipe(
    z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
  );
}

const NUMBER_TEXT = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?\s*$/i;

/** A finite number, also as numeric text. */
export function number() {
  return numericText(NUMBER_TEXT, 'number', 'value is not a valid float').pipe(z.number().finite());
}

/** A database row id (buffer rows, ledger rows, events): a positive integer, also as text. */
export const rowId = numericText(/^\s*\d+\s*$/, 'int', 'value is not a valid integer').pipe(
  z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
);

/**
 * Levels of nested objects and arrays any free-form JSON input may have (a reading's `data`, a
 * profile's `metadata`, a metadata `value`); deeper is refused (422), before anything walks it.
 */
export const MAX_JSON_DEPTH = 32;

/** Whether `value` nests at most `limit` levels, checked without recursion (hostile input cannot exhaust the stack). */
export function depthWithin(value: unknown, limit: number = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > limit) return false;
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return true;
}

/** `schema`, refused (422, naming `what`) when nested deeper than MAX_JSON_DEPTH. */
export function shallowJson<T extends z.ZodType>(schema: T, what: string) {
  return schema.superRefine((value, ctx) => {
    if (!depthWithin(value)) ctx.addIssue({ code: 'custom', message: `${what} is nested deeper than ${MAX_JSON_DEPTH} levels` });
  });
}

export const isoTime = z.string().describe('ISO 8601 time, UTC');

export { timestampInput } from './timestamps.js';

/** Like `optional`, but absent or `null` gives `fallback` (an output value). */
export function defaulted<T extends z.ZodType>(schema: T, fallback: z.output<T>) {
  return schema.nullish().transform((v): z.output<T> => (v === null || v === undefined ? fallback : v));
}
