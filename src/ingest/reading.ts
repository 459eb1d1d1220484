import { z } from 'zod';
import { MAX_MEASUREMENT } from '../nanogridata/types.js';
import { depthWithin, MAX_JSON_DEPTH, NO_NUL, NUL_MESSAGE, optional, sensorId, timestampInput } from '../fields.js';

/**
 * A JSON reading, as HTTP ingest and JSON stream entries carry it, after validation: the data text
 * exactly as the client sent it (the work queue hands it back unchanged) and the numeric fields
 * that become analytics records.
 */
export interface Reading {
  sensor_id: string;
  /** Unix seconds. */
  timestamp: number;
  /** What the client sent as `data`: its text, or the JSON text of the object it sent. */
  data: string;
  /** Numeric fields of the data, as (metric, value): each becomes a record. */
  values: Array<[metric: string, value: number]>;
}

/** Documented limits of one reading; past them it is refused with the reason (HTTP 422, stream dead letter). */
export const READING_LIMITS = {
  /** Bytes of the data text. */
  dataBytes: 64 * 1024,
  /** Levels of nested objects and arrays in the data (the rule of every free-form JSON input). */
  depth: MAX_JSON_DEPTH,
  /** Numeric fields (records) per reading. */
  records: 1000,
  /** Characters of a field name (the metric). */
  metricLength: 256,
} as const;

type Parsed = { ok: true; values: Reading['values'] } | { ok: false; message: string };

/**
 * The records of a data value. An object: its numeric fields. Text: JSON text of an object (its
 * numeric fields), of a bare number (metric `value`), or `k=v` pairs separated by `;` or `&` (the
 * numeric ones). Anything else is kept as text without records. Nothing is dropped silently:
 * fields that are not numbers stay in the data text.
 */
function valuesOf(data: unknown): Parsed {
  if (typeof data === 'number') return checkValues([['value', data]]);
  if (typeof data !== 'string') return isPlainObject(data) ? numericFields(data) : { ok: true, values: [] };
  const text = data.trim();
  if (text.startsWith('{') || text.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { ok: true, values: [] }; // not JSON after all: kept as text
    }
    const depth = depthWithin(parsed, READING_LIMITS.depth);
    if (!depth) return { ok: false, message: `data is nested deeper than ${READING_LIMITS.depth} levels` };
    return isPlainObject(parsed) ? numericFields(parsed) : { ok: true, values: [] };
  }
  if (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(text)) return checkValues([['value', Number(text)]]);
  const pairs: Reading['values'] = [];
  for (const part of text.split(/[;&\n]/)) {
    const m = /^\s*([^=\s][^=]*?)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*$/i.exec(part);
    if (m) pairs.push([m[1]!, Number(m[2])]);
  }
  return checkValues(pairs);
}

function numericFields(object: Record<string, unknown>): Parsed {
  const values: Reading['values'] = [];
  for (const [key, value] of Object.entries(object)) if (typeof value === 'number') values.push([key, value]);
  return checkValues(values);
}

function checkValues(values: Reading['values']): Parsed {
  if (values.length > READING_LIMITS.records) return { ok: false, message: `data has more than ${READING_LIMITS.records} numeric fields` };
  for (const [metric, value] of values) {
    if (metric.length === 0 || metric.length > READING_LIMITS.metricLength) {
      return { ok: false, message: `field names must have 1 to ${READING_LIMITS.metricLength} characters` };
    }
    if (!NO_NUL.test(metric)) return { ok: false, message: `field names ${NUL_MESSAGE}` };
    if (!(Math.abs(value) <= MAX_MEASUREMENT)) {
      return { ok: false, message: `value of ${JSON.stringify(metric.slice(0, 64))} is outside ±${MAX_MEASUREMENT}` };
    }
  }
  return { ok: true, values };
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `data`: any text (as the original), a number, or a JSON object; limits checked before anything else touches it. */
const dataInput = z.union([z.string(), z.number(), z.record(z.string(), z.unknown())]).transform((data, ctx) => {
  if (typeof data === 'object' && !depthWithin(data, READING_LIMITS.depth)) {
    ctx.addIssue({ code: 'custom', message: `data is nested deeper than ${READING_LIMITS.depth} levels` });
    return z.NEVER;
  }
  // An object's strings are kept escaped (JSON); a string is kept as sent, so it may not hold U+0000.
  if (typeof data === 'string' && !NO_NUL.test(data)) {
    ctx.addIssue({ code: 'custom', message: `data ${NUL_MESSAGE}` });
    return z.NEVER;
  }
  const text = typeof data === 'string' ? data : JSON.stringify(data);
  if (Buffer.byteLength(text) > READING_LIMITS.dataBytes) {
    ctx.addIssue({ code: 'custom', message: `data is larger than ${READING_LIMITS.dataBytes} bytes` });
    return z.NEVER;
  }
  const parsed = valuesOf(data);
  if (!parsed.ok) {
    ctx.addIssue({ code: 'custom', message: parsed.message });
    return z.NEVER;
  }
  return { text, values: parsed.values };
});

/** The body of one reading, shared by HTTP ingest and JSON stream entries. */
export const readingSchema = z
  .object({
    sensor_id: sensorId,
    data: dataInput,
    timestamp: optional(timestampInput),
  })
  .transform(
    (r): Reading => ({ sensor_id: r.sensor_id, timestamp: r.timestamp ?? Date.now() / 1000, data: r.data.text, values: r.data.values }),
  );

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
