import { z } from 'zod';
import type { RoutePlugin } from '../../app.js';
import { BadRequestError } from '../../errors.js';

const FRAMES_BODY_LIMIT = 1024 * 1024;

const framesResponse = z.object({
  accepted: z.number().int(),
  rejected: z.array(z.object({ index: z.number().int(), reason: z.string() })),
});

/**
 * POST /telemetry/frames: concatenated Nanogridata frames as application/octet-stream. The frames'
 * MACs authenticate them; no bearer token. Same decode → buffer path as the stream consumer.
 */
export const framesRoutes: RoutePlugin = async (app, { deps }) => {
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: FRAMES_BODY_LIMIT }, (_req, body, done) =>
    done(null, body),
  );

  app.post(
    '/telemetry/frames',
    {
      bodyLimit: FRAMES_BODY_LIMIT,
      schema: {
        summary: 'Ingest concatenated Nanogridata frames (application/octet-stream, ≤ 1 MiB); X-Device-Id names the sending device',
        headers: z.object({ 'x-device-id': z.string().min(1).max(128).optional() }).loose(),
        response: { 200: framesResponse },
        security: [],
      },
    },
    async (request) => {
      const body = request.body;
      if (!Buffer.isBuffer(body) || body.length === 0) {
        throw new BadRequestError('the body must be one or more Nanogridata frames sent as application/octet-stream');
      }
      return deps.pipeline.ingestFrameBody(body, request.headers['x-device-id']);
    },
  );
};
