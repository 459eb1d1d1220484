import type { FastifyInstance, FastifyRequest } from 'fastify';

type Done = (err: Error | null, body?: unknown) => void;
type Parser = (request: FastifyRequest, body: string, done: Done) => void;

/** Fastify's own media-type error, so the error handler answers it like any other 415. */
class UnsupportedMediaType extends Error {
  readonly statusCode = 415;
  readonly code = 'FST_ERR_CTP_INVALID_MEDIA_TYPE';
}

/**
 * JSON bodies as the original's clients send them:
 * - `application/json` with an empty body is no body (routes whose input is in the query string
 *   get `Content-Type: application/json` from many HTTP clients by default);
 * - no `Content-Type` at all, or `text/plain`, is JSON too;
 * - any other unknown media type is still 415.
 * Parsing itself stays Fastify's (secure-json-parse: prototype-poisoning protection).
 */
export function registerBodyParsers(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error') as unknown as Parser;
  const jsonOrEmpty: Parser = (request, body, done) => {
    if (body.trim().length === 0) done(null, undefined);
    else parseJson(request, body, done);
  };

  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser(['application/json', 'text/plain'], { parseAs: 'string' }, jsonOrEmpty);
  // '*' is Fastify's catch-all: it also receives requests without a Content-Type header.
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (request.headers['content-type'] === undefined) jsonOrEmpty(request, body as string, done);
    else done(new UnsupportedMediaType(`Unsupported Media Type: ${request.headers['content-type']}`));
  });
}
