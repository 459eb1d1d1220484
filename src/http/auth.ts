import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AuthError, ForbiddenError } from '../errors.js';
import type { StoreOperations } from '../operational/store.js';

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
 * The checks that read the store are async: the shared mode's store answers with promises.
 */
export function createAuth(adminToken: string, store: Pick<StoreOperations, 'sessions' | 'devices'>) {
  const adminDigest = sha256(adminToken);

  async function identify(request: FastifyRequest): Promise<Principal | null> {
    const token = bearerToken(request);
    if (!token) return null;
    // Comparing digests keeps the comparison constant-time whatever the candidate's length; the
    // session store looks the token up by the same digest.
    const digest = sha256(token);
    if (timingSafeEqual(digest, adminDigest)) return { kind: 'admin' };
    const session = await store.sessions.verify(token, digest);
    return session ? { kind: 'user', userId: session.user_id, sessionId: session.session_id } : null;
  }

  async function authenticate(request: FastifyRequest): Promise<Principal> {
    if (!request.headers.authorization) throw new AuthError('missing Authorization: Bearer <token>');
    const principal = await identify(request);
    if (!principal) throw new AuthError('invalid or expired token');
    request.principal = principal;
    return principal;
  }

  async function maySensor(request: FastifyRequest, sensorId: string): Promise<boolean> {
    const p = request.principal;
    return p?.kind === 'admin' || (p?.kind === 'user' && (await store.devices.ownerOf(sensorId)) === p.userId);
  }

  return {
    identify,
    /** preHandler: admin token only. */
    async requireAdmin(request: FastifyRequest): Promise<void> {
      if ((await authenticate(request)).kind !== 'admin') throw new ForbiddenError('admin token required');
    },
    /** preHandler: any valid session or the admin token. */
    async requireUser(request: FastifyRequest): Promise<void> {
      await authenticate(request);
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
    async assertSensor(request: FastifyRequest, sensorId: string): Promise<void> {
      if (!(await maySensor(request, sensorId))) throw new ForbiddenError(`not allowed to access sensor ${sensorId}`);
    },
    /**
     * As assertSensor, but a sensor nobody owns yet becomes the calling user's, as a first
     * ingest does: the devices store's claim decides (one rule for every claiming route).
     */
    async claimSensor(request: FastifyRequest, sensorId: string): Promise<void> {
      const p = request.principal;
      if (p?.kind === 'admin') return;
      if (p?.kind === 'user' && (await store.devices.claimForUser(sensorId, p.userId))) return;
      throw new ForbiddenError(`not allowed to access sensor ${sensorId}`);
    },
    /** The sensors the caller may read: undefined means all (admin). */
    async sensorScope(request: FastifyRequest): Promise<string[] | undefined> {
      const p = request.principal;
      if (p?.kind === 'admin') return undefined;
      if (p?.kind === 'user') return store.devices.ownedIds(p.userId);
      throw new AuthError();
    },
  };
}

export type Auth = ReturnType<typeof createAuth>;
