import { z } from 'zod';

/**
 * The JSON shape of every error answer (see http/errors.ts): the original's `detail` — text, or
 * for a validation error (422) the list of problems as FastAPI wrote them — beside our own keys.
 */
export const validationIssueSchema = z.object({
  loc: z.array(z.union([z.string(), z.number().int()])).describe('"body", "query", "path" or "header", then the field path'),
  msg: z.string(),
  type: z.string().describe('pydantic-style error type, e.g. value_error.missing'),
});

export const errorSchema = z
  .object({
    detail: z.union([z.string(), z.array(validationIssueSchema)]),
    error: z.string().describe('Machine-readable code, e.g. not_found, validation_error'),
    message: z.string(),
    statusCode: z.number().int(),
  })
  .describe('Error');

/** Error responses for the OpenAPI document: `errors(401, 403, 422)`. */
export function errors<const C extends number>(...codes: C[]): Record<C, typeof errorSchema> {
  return Object.fromEntries(codes.map((c) => [c, errorSchema])) as Record<C, typeof errorSchema>;
}

/** The shared field helpers (null = absent, scalar coercion, ids), for every route schema. */
export {
  defaulted,
  integer,
  isoTime,
  number,
  optional,
  rowId,
  sensorId,
  shallowJson,
  text,
  textId,
  timestampInput,
  userId,
} from '../../fields.js';

/** The earlier name of `rowId`, kept for the schemas that use it. */
export { rowId as idParam } from '../../fields.js';
