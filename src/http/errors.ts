import type { FastifyError, FastifyInstance } from 'fastify';
import { AppError, ValidationError, type ValidationIssue } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { MethodIndex } from './method-not-allowed.js';

/**
 * The JSON shape of every error answer: the original's `detail` (text, or the list of
 * validation problems) beside `error` (a code), `message` (text) and `statusCode`.
 */
export interface ErrorBody {
  detail: string | ValidationIssue[];
  error: string;
  message: string;
  statusCode: number;
}

/** FastAPI's texts for the answers a client may compare with. */
const NOT_FOUND = 'Not Found';
const METHOD_NOT_ALLOWED = 'Method Not Allowed';
const INVALID_JSON: ValidationIssue = { loc: ['body'], msg: 'the body is not valid JSON', type: 'value_error.jsondecode' };

const body = (statusCode: number, error: string, message: string, detail: ErrorBody['detail'] = message): ErrorBody => ({
  detail,
  error,
  message,
  statusCode,
});

/** AppError → its answer. The only place that knows how an error looks on the wire. */
function appErrorBody(err: AppError): ErrorBody {
  if (err instanceof ValidationError) return body(422, err.code, err.message, err.issues);
  return body(err.statusCode, err.code, err.message);
}

/**
 * Maps AppError (validation errors included: see http/validation.ts) and Fastify's own 4xx
 * errors to ErrorBody; unknown paths answer 404 "Not Found", a known path with another method
 * 405 with `Allow`. 5xx answers say "internal error"; the cause is logged with the request id.
 */
export function registerErrorHandling(app: FastifyInstance, metrics: Metrics, methods: MethodIndex): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof AppError) return reply.code(err.statusCode).send(appErrorBody(err));
    const status = err.statusCode ?? 500;
    if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
      return reply.code(422).send(appErrorBody(new ValidationError([INVALID_JSON])));
    }
    if (status >= 400 && status < 500) {
      // Fastify's own client errors (body too large, unsupported media type, …).
      const code = (err.code ?? 'bad_request').replace(/^FST_ERR_/, '').toLowerCase();
      return reply.code(status).send(body(status, code, err.message));
    }
    request.log.error({ err }, 'request failed');
    metrics.errorsTotal.inc({ component: 'http' });
    return reply.code(500).send(body(500, 'internal_error', 'internal error'));
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allowed = methods.allowed(path);
    if (allowed.length > 0) {
      return reply
        .code(405)
        .header('allow', allowed.join(', '))
        .send(body(405, 'method_not_allowed', `${request.method} is not allowed on ${path}`, METHOD_NOT_ALLOWED));
    }
    return reply.code(404).send(body(404, 'not_found', `no route ${request.method} ${path}`, NOT_FOUND));
  });
}
