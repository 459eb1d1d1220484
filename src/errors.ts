/**
 * The one error type of the service. Stores and routes throw these; the error handler in
 * http/errors.ts maps them (and validation errors) to `{detail, error, message, statusCode}`.
 */
export class AppError extends Error {
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequestError extends AppError {
  constructor(message: string, code = 'bad_request') {
    super(code, 400, message);
  }
}

export class AuthError extends AppError {
  constructor(message = 'authentication required') {
    super('unauthorized', 401, message);
  }
}

export class ForbiddenError extends AppError {
  constructor(message = 'not allowed for this session') {
    super('forbidden', 403, message);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string) {
    super('not_found', 404, message);
  }
}

export class ConflictError extends AppError {
  constructor(message: string, code = 'conflict') {
    super(code, 409, message);
  }
}

export class UnavailableError extends AppError {
  constructor(message: string) {
    super('unavailable', 503, message);
  }
}

/** A claim that would take a user past MAX_SENSORS_PER_USER: 409, nothing of the request stored. */
export class SensorLimitError extends AppError {
  constructor(limit: number) {
    super('sensor_limit', 409, `a user may own at most ${limit} sensors; this request would claim more (nothing of it was stored)`);
  }
}

/**
 * Too much work of one user, or of everyone, is running or waiting: 503 with `Retry-After`
 * (seconds), so a client backs off and retries.
 */
export class BusyError extends AppError {
  constructor(
    message: string,
    readonly retryAfterS = 1,
  ) {
    super('busy', 503, message);
  }
}

/**
 * A query stopped at its time limit (QUERY_TIMEOUT_MS): 503, so a client may retry later or ask
 * for less. The message names no query or internals.
 */
export class QueryTimeoutError extends AppError {
  constructor(limitMs: number) {
    super('query_timeout', 503, `the query took longer than the ${limitMs} ms limit and was stopped; ask for a shorter time range or fewer sensors`);
  }
}

/** Where a request field was: the first element of a validation error's `loc`. */
export type FieldSource = 'body' | 'query' | 'path' | 'header';

/** One problem with a request, as FastAPI reports it: `loc` = source, then the field path. */
export interface ValidationIssue {
  loc: Array<string | number>;
  msg: string;
  /** pydantic-style, e.g. `value_error.missing` (see http/validation-issues.ts). */
  type: string;
}

/** A request that fails validation: 422 with the list of problems as `detail`. */
export class ValidationError extends AppError {
  constructor(readonly issues: ValidationIssue[]) {
    super('validation_error', 422, issues.map((i) => `${i.loc.join('.')}: ${i.msg}`).join('; '));
  }

  /** One missing field (a field the schema leaves optional because it may come from two places). */
  static missing(source: FieldSource, field: string): ValidationError {
    return new ValidationError([{ loc: [source, field], msg: 'field required', type: 'value_error.missing' }]);
  }
}
