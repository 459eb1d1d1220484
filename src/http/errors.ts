import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, BusyError, ValidationError, type ValidationIssue } from '../errors.js';
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

/** What a body may still send after an answer that did not wait for it; past this the connection is dropped. */
const DRAIN_LIMIT_BYTES = 16 * 1024 * 1024;

const draining = new WeakSet<FastifyRequest['raw']>();

const hasBody = (raw: FastifyRequest['raw']) =>
  raw.headers['transfer-encoding'] !== undefined || (raw.headers['content-length'] !== undefined && raw.headers['content-length'] !== '0');

/**
 * Reads and drops the rest of a body that the answer did not wait for (a 401 from an onRequest hook,
 * a 413 on Content-Length), on a connection kept open until the client has sent it: closing with
 * the body unread resets the connection while the client is still sending, and a client that writes
 * its whole body before reading never sees its answer, also when it asked for `Connection: close`
 * (the connection is closed once the body is read). Answers that close on purpose (a 408 for a
 * trickling body, a 429 before the body is read: `connection: close` set by the route) are left so.
 */
function readRestOfBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.complete || draining.has(raw) || !hasBody(raw)) return;
  draining.add(raw);
  // Node closes at once after the answer when the client asked for it: keep the connection, and
  // close it (after the answer) once the body is read.
  const wantsClose = !reply.raw.shouldKeepAlive;
  reply.removeHeader('connection');
  reply.raw.shouldKeepAlive = true;
  let pending = 2;
  const closeWhenDone = () => {
    if (--pending === 0 && wantsClose) raw.socket.end();
  };
  reply.raw.once('finish', closeWhenDone);
  raw.once('end', closeWhenDone);
  let drained = 0;
  raw.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > DRAIN_LIMIT_BYTES) raw.socket.destroy();
  });
  raw.resume();
}

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
/**
 * Errors Fastify's router answers before any hook or error handler (a path parameter too long, a
 * malformed percent-encoding): the same shape, without echoing the URL back.
 */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    void reply.code(414).send(body(414, 'uri_too_long', 'a path segment is longer than this server accepts'));
  } else if (error.code === 'FST_ERR_BAD_URL') {
    void reply.code(400).send(body(400, 'bad_url', 'the URL is not valid (malformed percent-encoding)'));
  } else {
    void reply.code(400).send(body(400, 'bad_request', 'the request could not be routed'));
  }
}

export function registerErrorHandling(app: FastifyInstance, metrics: Metrics, methods: MethodIndex): void {
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode !== 408 && reply.getHeader('connection') !== 'close') readRestOfBody(request, reply);
    return payload;
  });
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof BusyError) reply.header('retry-after', String(err.retryAfterS));
    if (err instanceof AppError) return reply.code(err.statusCode).send(appErrorBody(err));
    const status = err.statusCode ?? 500;
    if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
      return reply.code(422).send(appErrorBody(new ValidationError([INVALID_JSON])));
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      // Fastify marks its 413 `connection: close`, which the onSend check leaves alone: drain it here.
      readRestOfBody(request, reply);
      const limit = request.routeOptions.bodyLimit;
      return reply.code(413).send(body(413, 'body_too_large', `the body is larger than the limit of ${limit} bytes`));
    }
    if (status >= 400 && status < 500) {
      // Fastify's own client errors (unsupported media type, …).
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
