import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { AppError } from '../errors.js';
import type { Metrics } from '../metrics.js';

/** The JSON shape of every error answer. */
export interface ErrorBody {
  error: string;
  message: string;
  statusCode: number;
  details?: unknown;
}

/**
 * Maps AppError, validation errors and Fastify's own 4xx errors to `{error, message, statusCode}`.
 * 5xx answers say "internal error"; the cause is logged with the request id, never sent.
 */
export function registerErrorHandling(app: FastifyInstance, metrics: Metrics): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof AppError) {
      return reply.code(err.statusCode).send({ error: err.code, message: err.message, statusCode: err.statusCode } satisfies ErrorBody);
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const details = err.validation.map((v) => ({
        path: `${err.validationContext ?? ''}${v.instancePath}`,
        message: v.message,
      }));
      const message = details.map((d) => `${d.path || 'request'}: ${d.message}`).join('; ');
      return reply.code(400).send({ error: 'validation_error', message, statusCode: 400, details } satisfies ErrorBody);
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      // Fastify's own client errors (bad JSON, body too large, unsupported media type, …).
      const code = (err.code ?? 'bad_request').replace(/^FST_ERR_/, '').toLowerCase();
      return reply.code(status).send({ error: code, message: err.message, statusCode: status } satisfies ErrorBody);
    }
    request.log.error({ err }, 'request failed');
    metrics.errorsTotal.inc({ component: 'http' });
    return reply.code(500).send({ error: 'internal_error', message: 'internal error', statusCode: 500 } satisfies ErrorBody);
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({
      error: 'not_found',
      message: `no route ${request.method} ${request.url.split('?')[0]}`,
      statusCode: 404,
    } satisfies ErrorBody);
  });
}
