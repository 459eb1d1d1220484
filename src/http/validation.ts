import type { FastifySchemaCompiler } from 'fastify';
import type { z } from 'zod';
import { ValidationError, type FieldSource, type ValidationIssue } from '../errors.js';

type ZodIssue = z.core.$ZodIssue;

const SOURCES: Record<string, FieldSource> = { body: 'body', querystring: 'query', params: 'path', headers: 'header' };

/** pydantic's type error for "expected X" (what FastAPI clients see), by zod's expected type. */
const TYPE_ERRORS: Record<string, { type: string; msg: string }> = {
  string: { type: 'type_error.str', msg: 'str type expected' },
  number: { type: 'type_error.float', msg: 'value is not a valid float' },
  int: { type: 'type_error.integer', msg: 'value is not a valid integer' },
  boolean: { type: 'type_error.bool', msg: 'value could not be parsed to a boolean' },
  object: { type: 'type_error.dict', msg: 'value is not a valid dict' },
  record: { type: 'type_error.dict', msg: 'value is not a valid dict' },
  array: { type: 'type_error.list', msg: 'value is not a valid list' },
};

const MISSING = { type: 'value_error.missing', msg: 'field required' };

function bound(origin: string, kind: 'min' | 'max', inclusive: boolean | undefined): string {
  if (origin === 'string') return kind === 'min' ? 'value_error.any_str.min_length' : 'value_error.any_str.max_length';
  if (origin === 'array' || origin === 'set') return kind === 'min' ? 'value_error.list.min_items' : 'value_error.list.max_items';
  if (kind === 'min') return inclusive === false ? 'value_error.number.not_gt' : 'value_error.number.not_ge';
  return inclusive === false ? 'value_error.number.not_lt' : 'value_error.number.not_le';
}

/** The pydantic-style `type` and `msg` of one zod issue (the mapping is listed in the README). */
function describe(issue: ZodIssue): { type: string; msg: string } {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return MISSING;
      if (issue.input === null) return { type: 'type_error.none.not_allowed', msg: 'none is not an allowed value' };
      return TYPE_ERRORS[issue.expected] ?? { type: `type_error.${issue.expected}`, msg: issue.message };
    case 'too_small':
      return { type: bound(issue.origin, 'min', issue.inclusive), msg: issue.message };
    case 'too_big':
      return { type: bound(issue.origin, 'max', issue.inclusive), msg: issue.message };
    case 'invalid_format':
      if (issue.format === 'email') return { type: 'value_error.email', msg: 'value is not a valid email address' };
      return { type: issue.format === 'regex' ? 'value_error.str.regex' : `value_error.str.${issue.format}`, msg: issue.message };
    case 'invalid_value':
      return { type: 'type_error.enum', msg: issue.message };
    case 'not_multiple_of':
      return { type: 'value_error.number.not_multiple', msg: issue.message };
    case 'unrecognized_keys':
      return { type: 'value_error.extra', msg: 'extra fields not permitted' };
    default:
      return { type: 'value_error', msg: issue.message };
  }
}

/**
 * zod issues → FastAPI's `[{loc, msg, type}]`. A union that failed every branch reports its
 * first branch's first problem (for text fields: "str type expected"), or "field required"
 * when nothing was given.
 */
export function toValidationIssues(issues: readonly ZodIssue[], source: FieldSource): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  const walk = (issue: ZodIssue, prefix: PropertyKey[]) => {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'invalid_union' && issue.input !== undefined && issue.errors[0]?.[0]) {
      walk(issue.errors[0][0], path);
      return;
    }
    const { type, msg } = issue.code === 'invalid_union' ? MISSING : describe(issue);
    out.push({ loc: [source, ...path.map((p) => (typeof p === 'number' ? p : String(p)))], msg, type });
  };
  for (const issue of issues) walk(issue, []);
  return out;
}

/**
 * Validates each part of a request with its zod schema; a failure is a ValidationError (422),
 * which the error handler answers like every other AppError.
 */
export const zodValidatorCompiler: FastifySchemaCompiler<z.ZodType> = ({ schema, httpPart }) => {
  const source = SOURCES[httpPart ?? 'body'] ?? 'body';
  return (data) => {
    // Fastify hands an absent body over as null; for the answer both are "missing".
    if (source === 'body' && data === null) data = undefined;
    const result = schema.safeParse(data);
    if (result.success) return { value: result.data };
    // Once more with the input in each issue, to tell "missing" (undefined) from "null" from "wrong
    // type" (never sent back): only for a refused request, since it doubles zod's cost.
    const reported = schema.safeParse(data, { reportInput: true });
    return { error: new ValidationError(toValidationIssues((reported.error ?? result.error).issues, source)) };
  };
};
