import { randomUUID } from 'node:crypto';
import { ConflictError } from '../errors.js';
import { nowS } from '../operational/db.js';
import type { User } from '../operational/schemas.js';
import { toUser, USER_COLUMNS as COLUMNS, type UserRow } from '../operational/users.js';
import { constraintOf, inTransaction, sqlState, type Queryable } from './connect.js';

/** A unique violation as the 409 naming the field (the same answers as the embedded store); anything else as it was. */
function conflictOf(err: unknown, input: { username?: string; email?: string }): unknown {
  if (sqlState(err) !== '23505') return err;
  const constraint = constraintOf(err);
  if (constraint === 'users_username_key') return new ConflictError(`username '${input.username}' already exists`);
  if (constraint === 'users_email_key') return new ConflictError(`email '${input.email}' already exists`);
  return new ConflictError('user already exists');
}

/**
 * Users in the shared PostgreSQL: the embedded store's operations (operational/users.ts), async.
 * Nothing is cached: another instance may change or delete a user at any moment. Two instances
 * taking one username at the same moment get one user and one 409 (the unique constraint decides).
 */
export function createPgUsers(db: Queryable) {
  return {
    /** Creates the user and its billing row in one transaction; a taken username or email is a 409 naming which. */
    async create(input: { username: string; email: string }): Promise<User> {
      const id = randomUUID();
      const now = nowS();
      try {
        const row = await inTransaction(db, async (client) => {
          const { rows } = await client.query<UserRow>(
            `INSERT INTO users(id, username, email, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING ${COLUMNS}`,
            [id, input.username, input.email, now],
          );
          await client.query('INSERT INTO billing(id, user_id, created_at, updated_at) VALUES ($1, $2, $3, $3)', [randomUUID(), id, now]);
          return rows[0]!;
        });
        return toUser(row);
      } catch (err) {
        throw conflictOf(err, input);
      }
    },
    async get(id: string): Promise<User | undefined> {
      const { rows } = await db.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
      return rows[0] && toUser(rows[0]);
    },
    /** Changes a user's username and/or email; undefined when there is no such user. 409 when taken. */
    async update(id: string, input: { username?: string; email?: string }): Promise<User | undefined> {
      try {
        const { rows } = await db.query<UserRow>(
          `UPDATE users SET username = coalesce($1, username), email = coalesce($2, email), updated_at = $3 WHERE id = $4 RETURNING ${COLUMNS}`,
          [input.username ?? null, input.email ?? null, nowS(), id],
        );
        return rows[0] && toUser(rows[0]);
      } catch (err) {
        throw conflictOf(err, input);
      }
    },
    /** Deletes a user and everything it owns; false when there was no such user. */
    async remove(id: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM users WHERE id = $1', [id]);
      return rowCount === 1;
    },
    /** Users in creation order, after the user `after` (keyset pagination). */
    async list(options: { limit: number; after?: string }): Promise<User[]> {
      const { rows } = await db.query<UserRow>(
        `SELECT ${COLUMNS} FROM users WHERE seq > coalesce((SELECT seq FROM users WHERE id = $1), 0) ORDER BY seq LIMIT $2`,
        [options.after ?? null, options.limit],
      );
      return rows.map(toUser);
    },
  };
}

export type PgUsers = ReturnType<typeof createPgUsers>;
