/**
 * The one error type of the service. Stores and routes throw these; the error handler in
 * http/errors.ts maps them (and validation errors) to `{error, message, statusCode}`.
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
