import { randomBytes, randomUUID } from 'node:crypto';
import { BadRequestError, NotFoundError } from '../errors.js';
import { nowS } from '../operational/db.js';
import type { CreatedSession } from '../operational/schemas.js';
import { ACTIVITY_RESOLUTION_S, hashToken, TOKEN_BYTES, TOKEN_LENGTH, type SessionInfo, type SessionsOptions } from '../operational/sessions.js';
import type { Queryable } from './connect.js';

type SessionRef = { sessionId: string } | { token: string };

/**
 * Sessions in the shared PostgreSQL: the embedded store's operations (operational/sessions.ts),
 * async. Nothing is cached, so a revocation through any instance is refused by every other at once;
 * validation is one indexed read (and, once a minute per session, a write of last_activity).
 */
export function createPgSessions(db: Queryable, options: Omit<SessionsOptions, 'cacheEntries'>) {
  const now = options.now ?? nowS;
  const ttlS = options.ttlS;
  const lookup = (ref: SessionRef) =>
    'sessionId' in ref
      ? db.query<{ session_id: string; user_id: string; revoked_at: number | null }>('SELECT id AS session_id, user_id, revoked_at FROM sessions WHERE id = $1', [ref.sessionId])
      : db.query<{ session_id: string; user_id: string; revoked_at: number | null }>('SELECT id AS session_id, user_id, revoked_at FROM sessions WHERE token_hash = $1', [hashToken(ref.token)]);

  /**
   * Every request is checked against the database, none from a cache (a revocation through any
   * instance holds at once); but the checks that arrive in one turn of the event loop go in one
   * query, each answered from the database as it was after the request arrived. Under load that
   * is one round trip for many requests (the round trip, not the lookup, is what costs).
   */
  let waiting: Array<{ hash: Buffer; resolve: (s: SessionInfo | null) => void; reject: (err: unknown) => void }> = [];
  const verifyWaiting = async () => {
    const group = waiting;
    waiting = [];
    const t = now();
    try {
      // A named statement: each connection parses and plans it once.
      const { rows } = await db.query<SessionInfo & { token_hash: Buffer }>({
        name: 'ocean_session_verify',
        text: `SELECT s.token_hash, s.id AS session_id, s.user_id, u.username, s.created_at, s.expires_at, s.last_activity
               FROM sessions s JOIN users u ON u.id = s.user_id
               WHERE s.token_hash = ANY($1::bytea[]) AND s.revoked_at IS NULL AND s.expires_at > $2`,
        values: [group.map((w) => w.hash), t],
      });
      const stale = rows.filter((r) => t - r.last_activity >= ACTIVITY_RESOLUTION_S);
      if (stale.length > 0) {
        await db.query('UPDATE sessions SET last_activity = $1 WHERE id = ANY($2::text[]) AND last_activity < $1', [t, stale.map((r) => r.session_id)]);
        for (const r of stale) r.last_activity = t;
      }
      const byHash = new Map(rows.map(({ token_hash, ...session }) => [token_hash.toString('hex'), session]));
      for (const w of group) {
        const session = byHash.get(w.hash.toString('hex'));
        w.resolve(session ? { ...session } : null);
      }
    } catch (err) {
      for (const w of group) w.reject(err);
    }
  };

  return {
    /** Opens a session for an existing user whose username is `username`. */
    async create(userId: string, username: string): Promise<CreatedSession> {
      const token = randomBytes(TOKEN_BYTES).toString('base64url');
      const sessionId = randomUUID();
      const createdAt = now();
      const expiresAt = createdAt + ttlS;
      // One statement: the user is checked and the session written with no gap for a deletion between.
      const { rows } = await db.query<{ username: string; inserted: boolean }>(
        `WITH u AS (SELECT id, username FROM users WHERE id = $2),
              ins AS (INSERT INTO sessions(id, user_id, token_hash, created_at, expires_at, last_activity)
                      SELECT $1, u.id, $3, $4, $5, $4 FROM u WHERE u.username = $6 RETURNING 1)
         SELECT u.username, EXISTS (SELECT 1 FROM ins) AS inserted FROM u`,
        [sessionId, userId, hashToken(token), createdAt, expiresAt, username],
      );
      const user = rows[0];
      if (!user) throw new NotFoundError(`user ${userId} not found`);
      if (!user.inserted) throw new BadRequestError(`username does not match user ${userId}`, 'username_mismatch');
      return { session_id: sessionId, token, expires_at: new Date(expiresAt * 1000).toISOString() };
    },
    /**
     * The session a token stands for, or null when unknown, expired or revoked; moves last_activity
     * forward once a minute. Checks arriving together share one round trip (verifyNow).
     */
    verify(token: string, hash?: Buffer): Promise<SessionInfo | null> {
      if (token.length !== TOKEN_LENGTH) return Promise.resolve(null);
      return new Promise((resolve, reject) => {
        if (waiting.length === 0) setImmediate(verifyWaiting);
        waiting.push({ hash: hash ?? hashToken(token), resolve, reject });
      });
    },
    /** Who a session belongs to (whatever its state), for revocation checks. */
    async find(ref: SessionRef): Promise<{ session_id: string; user_id: string; revoked: boolean } | undefined> {
      const row = (await lookup(ref)).rows[0];
      return row && { session_id: row.session_id, user_id: row.user_id, revoked: row.revoked_at !== null };
    },
    /** Revokes a session by id or by its token. Returns false when it was unknown or already revoked. */
    async revoke(ref: SessionRef): Promise<boolean> {
      const { rowCount } =
        'sessionId' in ref
          ? await db.query('UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [now(), ref.sessionId])
          : await db.query('UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL', [now(), hashToken(ref.token)]);
      return rowCount === 1;
    },
    /** Deletes sessions that expired; returns how many. */
    async purgeExpired(): Promise<number> {
      const { rowCount } = await db.query('DELETE FROM sessions WHERE expires_at <= $1', [now()]);
      return rowCount ?? 0;
    },
  };
}

export type PgSessions = ReturnType<typeof createPgSessions>;
