import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { BadRequestError, NotFoundError } from '../errors.js';
import type { Db } from './db.js';
import { nowS } from './db.js';
import { READ_CACHE_ENTRIES, READ_CACHE_MAX_AGE_MS, ReadCache } from './read-cache.js';
import type { CreatedSession } from './schemas.js';

export type { CreatedSession } from './schemas.js';

/** What a valid session token stands for. Times are Unix epoch seconds. */
export interface SessionInfo {
  session_id: string;
  user_id: string;
  username: string;
  created_at: number;
  expires_at: number;
  last_activity: number;
}

export interface SessionsOptions {
  ttlS: number;
  /** Clock in Unix seconds; injectable for tests. */
  now?: () => number;
  /** Verified sessions kept in memory (default READ_CACHE_ENTRIES; 0 turns the cache off). */
  cacheEntries?: number;
}

/** A token is 32 random bytes, base64url: 43 characters. */
export const TOKEN_BYTES = 32;
export const TOKEN_LENGTH = 43;
/** last_activity is written at most this often per session, so validation stays a read. */
export const ACTIVITY_RESOLUTION_S = 60;

export const hashToken = (token: string): Buffer => createHash('sha256').update(token).digest();

/**
 * Sessions. Only SHA-256(token) is stored. Expiry compares integer epoch seconds, so a session is
 * dead the second it expires (the original compared ISO text with CURRENT_TIMESTAMP).
 *
 * Verified sessions are cached in memory by token hash (verification runs on every authenticated
 * request): expiry is checked on every hit, and revocation, purging and a user's change or
 * deletion (forgetUser) drop the entries in the same call, so they take effect at once.
 */
export function createSessions(db: Db, options: SessionsOptions) {
  const now = options.now ?? nowS;
  const ttlS = options.ttlS;
  const entries = options.cacheEntries ?? READ_CACHE_ENTRIES;
  const cache = new ReadCache<string, SessionInfo>(entries, READ_CACHE_MAX_AGE_MS);

  const userById = db.prepare<[string], { username: string }>('SELECT username FROM users WHERE id = ?');
  const insert = db.prepare<[string, string, Buffer, number, number, number]>(
    'INSERT INTO sessions(id, user_id, token_hash, created_at, expires_at, last_activity) VALUES (?, ?, ?, ?, ?, ?)',
  );
  // The one statement behind every authenticated user request: an index lookup.
  const verify = db.prepare<[Buffer, number], SessionInfo>(
    `SELECT s.id AS session_id, s.user_id, u.username, s.created_at, s.expires_at, s.last_activity
     FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.token_hash = ? AND s.revoked_at IS NULL AND s.expires_at > ?`,
  );
  const touch = db.prepare<[number, string]>('UPDATE sessions SET last_activity = ? WHERE id = ?');
  const byId = db.prepare<[string], { session_id: string; user_id: string; revoked_at: number | null }>(
    'SELECT id AS session_id, user_id, revoked_at FROM sessions WHERE id = ?',
  );
  const byHash = db.prepare<[Buffer], { session_id: string; user_id: string; revoked_at: number | null }>(
    'SELECT id AS session_id, user_id, revoked_at FROM sessions WHERE token_hash = ?',
  );
  const revoke = db.prepare<[number, string]>('UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
  const purge = db.prepare<[number]>('DELETE FROM sessions WHERE expires_at <= ?');

  return {
    /**
     * Opens a session for an existing user. The username must be that user's (the original
     * accepted any user id and any name).
     */
    create(userId: string, username: string): CreatedSession {
      const user = userById.get(userId);
      if (!user) throw new NotFoundError(`user ${userId} not found`);
      if (user.username !== username) {
        throw new BadRequestError(`username does not match user ${userId}`, 'username_mismatch');
      }
      const token = randomBytes(TOKEN_BYTES).toString('base64url');
      const sessionId = randomUUID();
      const createdAt = now();
      const expiresAt = createdAt + ttlS;
      insert.run(sessionId, userId, hashToken(token), createdAt, expiresAt, createdAt);
      return { session_id: sessionId, token, expires_at: new Date(expiresAt * 1000).toISOString() };
    },
    /**
     * The session a token stands for, or null when unknown, expired or revoked. Moves
     * last_activity forward, writing at most once per ACTIVITY_RESOLUTION_S per session.
     * `hash`: the token's SHA-256, when the caller has it already (auth compares it with the admin's).
     */
    verify(token: string, hash?: Buffer): SessionInfo | null {
      if (token.length !== TOKEN_LENGTH) return null;
      const t = now();
      hash ??= hashToken(token);
      const key = hash.toString('base64');
      let session = cache.get(key);
      if (session && session.expires_at <= t) {
        cache.delete(key);
        return null;
      }
      if (!session) {
        session = verify.get(hash, t);
        if (!session) return null;
        cache.set(key, session);
      }
      if (t - session.last_activity >= ACTIVITY_RESOLUTION_S) {
        touch.run(t, session.session_id);
        session.last_activity = t;
      }
      return { ...session };
    },
    /** Who a session belongs to (whatever its state), for revocation checks. */
    find(ref: { sessionId: string } | { token: string }): { session_id: string; user_id: string; revoked: boolean } | undefined {
      const row = 'sessionId' in ref ? byId.get(ref.sessionId) : byHash.get(hashToken(ref.token));
      return row && { session_id: row.session_id, user_id: row.user_id, revoked: row.revoked_at !== null };
    },
    /** Revokes a session by id or by its token. Returns false when it was unknown or already revoked. */
    revoke(ref: { sessionId: string } | { token: string }): boolean {
      const sessionId = 'sessionId' in ref ? ref.sessionId : byHash.get(hashToken(ref.token))?.session_id;
      if (sessionId === undefined) return false;
      cache.deleteWhere((s) => s.session_id === sessionId);
      return revoke.run(now(), sessionId).changes === 1;
    },
    /** Deletes sessions that expired; returns how many. */
    purgeExpired(): number {
      const t = now();
      cache.deleteWhere((s) => s.expires_at <= t);
      return purge.run(t).changes;
    },
    /** Drops a user's cached sessions: users.ts calls this when the user changes or is deleted. */
    forgetUser(userId: string): void {
      cache.deleteWhere((s) => s.user_id === userId);
    },
  };
}

export type Sessions = ReturnType<typeof createSessions>;
