import type { RoutePlugin } from '../../app.js';
import { AuthError, BadRequestError, ForbiddenError, NotFoundError } from '../../errors.js';
import { isoFromS } from '../../operational/time.js';
import { bearerToken } from '../auth.js';
import { plainJsonSerializer } from '../plain-serializer.js';
import { errors } from '../schemas/common.js';
import {
  createdSessionSchema,
  createSessionBody,
  revokeBody,
  revokeResponse,
  validateBody,
  validateQuery,
  validateResponse,
} from '../schemas/sessions.js';

/** Sessions: the admin opens them for a user; the token is shown once and only its hash is kept. */
export const sessionsRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { sessions } = deps.store;

  app.post(
    '/sessions/create',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Open a session for a user (user_id and username must match)',
        tags: ['sessions'],
        body: createSessionBody,
        response: { 200: createdSessionSchema, ...errors(400, 401, 403, 404, 422) },
      },
    },
    async (request) => await sessions.create(request.body.user_id, request.body.username),
  );

  app.post(
    '/sessions/validate',
    {
      serializerCompiler: plainJsonSerializer,
      schema: {
        summary: 'Validate a session token (JSON {token}, ?token= or Authorization: Bearer)',
        tags: ['sessions'],
        security: [],
        body: validateBody,
        querystring: validateQuery,
        response: { 200: validateResponse, ...errors(401, 422) },
      },
    },
    async (request) => {
      // An explicit token wins over the header, so an admin can check a user's token.
      const token = request.body?.token || request.query.token || bearerToken(request);
      if (!token) throw new AuthError('no token: send it as Authorization: Bearer, JSON {token} or ?token=');
      const session = await sessions.verify(token);
      if (!session) throw new AuthError('invalid or expired token');
      // The token itself is never echoed back (the original returned it).
      return {
        valid: true as const,
        session: {
          id: session.session_id,
          user_id: session.user_id,
          created_at: isoFromS(session.created_at),
          expires_at: isoFromS(session.expires_at),
          last_activity: isoFromS(session.last_activity),
          session_id: session.session_id,
          username: session.username,
        },
      };
    },
  );

  app.post(
    '/sessions/revoke',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: "Revoke a session: a user's own (the calling one by default), or any with the admin token",
        tags: ['sessions'],
        body: revokeBody,
        response: { 200: revokeResponse, ...errors(400, 401, 403, 404, 422) },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const ref =
        request.body?.session_id
          ? { sessionId: request.body.session_id }
          : request.body?.token
            ? { token: request.body.token }
            : principal.kind === 'user'
              ? { sessionId: principal.sessionId }
              : undefined;
      if (!ref) throw new BadRequestError('session_id or token is required with the admin token');
      const session = await sessions.find(ref);
      if (!session) throw new NotFoundError('session not found');
      if (principal.kind === 'user' && session.user_id !== principal.userId) {
        throw new ForbiddenError("not allowed to revoke another user's session");
      }
      await sessions.revoke({ sessionId: session.session_id });
      return { session_id: session.session_id, revoked: true as const };
    },
  );
};
