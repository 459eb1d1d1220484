import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AuthError, ForbiddenError } from '../errors.js';
import type { OperationalStore } from '../operational/store.js';

export type Principal = { kind: 'admin' } | { kind: 'user'; userId: string; sessionId: string };

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth preHandlers: who is calling. */
    principal: Principal | null;
  }
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/** The bearer token of a request, if any. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * Authentication (admin bearer token or a user's session token) and the access rules of the
 * design: a user's session reaches only that user's resources and sensors; admin reaches all.
 */
export function createAuth(adminToken: string, store: Pick<OperationalStore, 'sessions' | 'devices'>) {
  const adminDigest = sha256(adminToken);

  function identify(request: FastifyRequest): Principal | null {
    const token = bearerToken(request);
    if (!token) return null;
    // Comparing digests keeps the comparison constant-time whatever the candidate's length; the
    // session store looks the token up by the same digest.
    const digest = sha256(token);
    if (timingSafeEqual(digest, adminDigest)) return { kind: 'admin' };
    const session = store.sessions.verify(token, digest);
    return session ? { kind: 'user', userId: session.user_id, sessionId: session.session_id } : null;
  }

  function authenticate(request: FastifyRequest): Principal {
    if (!request.headers.authorization) throw new AuthError('missing Authorization: Bearer <token>');
    const principal = identify(request);
    if (!principal) throw new AuthError('invalid or expired token');
    request.principal = principal;
    return principal;
  }

  function maySensor(request: FastifyRequest, sensorId: string): boolean {
    const p = request.principal;
    return p?.kind === 'admin' || (p?.kind === 'user' && store.devices.ownerOf(sensorId) === p.userId);
  }

  return {
    identify,
    /** preHandler: admin token only. */
    async requireAdmin(request: FastifyRequest): Promise<void> {
      if (authenticate(request).kind !== 'admin') throw new ForbiddenError('admin token required');
    },
    /** preHandler: any valid session or the admin token. */
    async requireUser(request: FastifyRequest): Promise<void> {
      authenticate(request);
    },
    /** Throws 403 unless the caller is admin or the user itself. */
    assertUser(request: FastifyRequest, userId: string): void {
      const p = request.principal;
      if (p?.kind === 'admin') return;
      if (p?.kind === 'user' && p.userId === userId) return;
      throw new ForbiddenError(`not allowed to access user ${userId}`);
    },
    /** Whether the caller is admin or owns the sensor. */
    maySensor,
    /** Throws 403 unless the caller is admin or owns the sensor (which the caller named: the answer names it). */
    assertSensor(request: FastifyRequest, sensorId: string): void {
      if (!maySensor(request, sensorId)) throw new ForbiddenError(`not allowed to access sensor ${sensorId}`);
    },
    /**
     * As assertSensor, but a sensor nobody owns yet becomes the calling user's, as a first
     * ingest does: the devices store's claim decides (one rule for every claiming route).
     */
    claimSensor(request: FastifyRequest, sensorId: string): void {
      const p = request.principal;
      if (p?.kind === 'admin') return;
      if (p?.kind === 'user' && store.devices.claimForUser(sensorId, p.userId)) return;
      throw new ForbiddenError(`not allowed to access sensor ${sensorId}`);
    },
    /** The sensors the caller may read: undefined means all (admin). */
    sensorScope(request: FastifyRequest): string[] | undefined {
      const p = request.principal;
      if (p?.kind === 'admin') return undefined;
      if (p?.kind === 'user') return store.devices.ownedIds(p.userId);
      throw new AuthError();
    },
  };
}

export type Auth = ReturnType<typeof createAuth>;
