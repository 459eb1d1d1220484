import rateLimit from '@fastify/rate-limit';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { RoutePlugin } from '../../app.js';
import { AppError, BadRequestError, UnavailableError } from '../../errors.js';
import { MAX_REJECTED_LISTED } from '../../ingest/frames-result.js';
import { minimumBodyRate } from '../body-rate.js';
import { InFlightBodies } from '../in-flight.js';
import { errors } from '../schemas/common.js';

const FRAMES_BODY_LIMIT = 1024 * 1024;

const framesResponse = z.object({
  accepted: z.number().int(),
  rejected: z
    .array(z.object({ index: z.number().int(), reason: z.string() }))
    .describe(`The first ${MAX_REJECTED_LISTED} rejected frames, in body order (every one when there are no more)`),
  rejected_count: z.number().int().describe('Every rejected frame of the body'),
  rejected_by_reason: z.record(z.string(), z.number().int()).describe('rejected_count by reason'),
});

/**
 * POST /telemetry/frames: concatenated Nanogridata frames as application/octet-stream. The frames'
 * MACs authenticate them; no bearer token. Same decode → checks → commit path as the stream consumer.
 *
 * Anyone may call it, so what one caller can hold is bounded: bodies in flight at once (each up
 * to 1 MiB in memory; beyond, 503 before the body is read) and from one address (429), bodies
 * per client address per minute (429), the rate at which a body arrives (408 when slower), the
 * time a request may take (REQUEST_TIMEOUT_MS, for every route), the frames per body (413,
 * counted from the headers alone), and the MACs verified per body (the pipeline stops after a
 * few bad ones). The answer lists a few rejected frames and counts the rest by reason.
 */
export const framesRoutes: RoutePlugin = async (app, { deps }) => {
  const { framesInFlight, framesInFlightPerAddress, framesPerMinute, framesPerBody, framesMinBodyRate, framesBodyGraceMs } = deps.config.limits;
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: FRAMES_BODY_LIMIT }, (_req, body, done) =>
    done(null, body),
  );
  if (framesPerMinute > 0) {
    await app.register(rateLimit, {
      global: false,
      errorResponseBuilder: (_request, context) =>
        new AppError('rate_limited', 429, `more than ${context.max} frame bodies a minute from this address: retry in ${context.after}`),
    });
  }

  const inFlight = new InFlightBodies(framesInFlight, framesInFlightPerAddress);
  const admit = async (request: FastifyRequest, reply: FastifyReply) => {
    // Before the body is read: the JSON habits of the other routes (no Content-Type = JSON) do not apply here.
    if (request.headers['content-type']?.split(';')[0]!.trim().toLowerCase() !== 'application/octet-stream') {
      throw new AppError('unsupported_media_type', 415, 'send the frames as Content-Type: application/octet-stream');
    }
    // The address as the rate limit sees it (request.ip: the peer, as no proxy is trusted).
    const slot = inFlight.acquire(request.ip);
    if ('full' in slot) {
      // The body is not read: the connection closes after the answer.
      reply.header('connection', 'close').header('retry-after', '1');
      if (slot.full === 'address') {
        throw new AppError('too_many_in_flight', 429, `this address already has ${framesInFlightPerAddress} frame bodies in flight: retry once one is answered`);
      }
      throw new UnavailableError('too many frame bodies in flight: retry shortly');
    }
    reply.raw.once('close', slot.release);
  };

  app.post(
    '/telemetry/frames',
    {
      bodyLimit: FRAMES_BODY_LIMIT,
      ...(framesPerMinute > 0 ? { config: { rateLimit: { max: framesPerMinute, timeWindow: 60_000 } } } : {}),
      onRequest: admit,
      preParsing: minimumBodyRate({ bytesPerS: framesMinBodyRate, graceMs: framesBodyGraceMs }),
      schema: {
        summary: 'Ingest concatenated Nanogridata frames (application/octet-stream, ≤ 1 MiB); X-Device-Id names the sending device',
        headers: z.object({ 'x-device-id': z.string().min(1).max(128).optional() }).loose(),
        // The content parser hands over the raw bytes; this documents them (and checks they are bytes).
        consumes: ['application/octet-stream'],
        body: z.instanceof(Buffer).meta({ type: 'string', format: 'binary', description: 'One or more Nanogridata frames, concatenated' }),
        response: {
          200: framesResponse,
          ...errors(400, 408, 413, 415, 429, 503),
        },
        security: [],
      },
    },
    async (request) => {
      const body = request.body;
      if (!Buffer.isBuffer(body) || body.length === 0) {
        throw new BadRequestError('the body must be one or more Nanogridata frames sent as application/octet-stream');
      }
      return deps.ingest.frames(body, { deviceId: request.headers['x-device-id'], maxFrames: framesPerBody });
    },
  );
};
