import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * What a client's X-Request-Id may be for us to keep it: a short id of letters, digits and `_ . : -`
 * (UUIDs, ULIDs, trace ids). It is written into every log line of its request, so anything else
 * (8 KB of text, quotes, control characters) is replaced by an id of our own.
 */
const CLIENT_REQUEST_ID = /^[\w.:-]{1,64}$/;

/** Fastify's genReqId: the client's X-Request-Id when it looks like an id, else a random UUID. */
export function requestIdOf(req: IncomingMessage): string {
  const header = req.headers['x-request-id'];
  return typeof header === 'string' && CLIENT_REQUEST_ID.test(header) ? header : randomUUID();
}
