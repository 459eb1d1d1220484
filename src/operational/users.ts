import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { ConflictError } from '../errors.js';
import type { Db } from './db.js';
import { nowS } from './db.js';
import { READ_CACHE_ENTRIES, READ_CACHE_MAX_AGE_MS, ReadCache } from './read-cache.js';
import type { User } from './schemas.js';
import { isoFromS } from './time.js';

export type { User } from './schemas.js';

/** A users row as both stores keep it (epoch-second times). */
export interface UserRow {
  id: string;
  username: string;
  email: string;
  status: 'active';
  created_at: number;
  updated_at: number;
}

export const toUser = (row: UserRow): User => ({
  id: row.id,
  username: row.username,
  email: row.email,
  created_at: isoFromS(row.created_at),
  updated_at: isoFromS(row.updated_at),
  status: row.status,
});

/** Which UNIQUE column a constraint error is about, from SQLite's message ("UNIQUE constraint failed: users.email"). */
function uniqueColumn(err: unknown): string | undefined {
  if (!(err instanceof Database.SqliteError) || err.code !== 'SQLITE_CONSTRAINT_UNIQUE') return undefined;
  return /UNIQUE constraint failed: \w+\.(\w+)/.exec(err.message)?.[1] ?? 'unknown';
}

export const USER_COLUMNS = 'id, username, email, status, created_at, updated_at';

/** A UNIQUE violation as the 409 naming the field; anything else as it was. */
function conflictOf(err: unknown, input: { username?: string; email?: string }): unknown {
  const column = uniqueColumn(err);
  if (column === 'username') return new ConflictError(`username '${input.username}' already exists`);
  if (column === 'email') return new ConflictError(`email '${input.email}' already exists`);
  if (column !== undefined) return new ConflictError('user already exists');
  return err;
}

export interface UsersOptions {
  /** Called after a user is changed or deleted, so that caches of what it owns (sessions) drop it. */
  onChange?: (userId: string) => void;
  /** Users kept in memory (default READ_CACHE_ENTRIES; 0 turns the cache off). */
  cacheEntries?: number;
}

/**
 * Users, with UUID ids. Every user gets its billing row in the same transaction that creates it.
 * Users read by id are cached in memory (every lookup is a session's own user); update and
 * remove drop the entry in the same call.
 */
export function createUsers(db: Db, options: UsersOptions = {}) {
  const entries = options.cacheEntries ?? READ_CACHE_ENTRIES;
  const cache = new ReadCache<string, User>(entries, READ_CACHE_MAX_AGE_MS);
  const changed = (id: string) => {
    cache.delete(id);
    options.onChange?.(id);
  };
  const insertUser = db.prepare<[string, string, string, number, number]>(
    'INSERT INTO users(id, username, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)',
  );
  const insertBilling = db.prepare<[string, string, number, number]>(
    'INSERT INTO billing(id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?)',
  );
  const byId = db.prepare<[string], UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE id = ?`);
  const updateUser = db.prepare<[string | null, string | null, number, string]>(
    'UPDATE users SET username = coalesce(?, username), email = coalesce(?, email), updated_at = ? WHERE id = ?',
  );
  // Billing, sessions and the rest go with it (ON DELETE CASCADE); devices are unowned (SET NULL).
  const deleteUser = db.prepare<[string]>('DELETE FROM users WHERE id = ?');
  // Keyset pagination in creation order (rowid follows insertion).
  const page = db.prepare<[string | null, number], UserRow>(
    `SELECT ${USER_COLUMNS} FROM users WHERE rowid > coalesce((SELECT rowid FROM users WHERE id = ?), 0) ORDER BY rowid LIMIT ?`,
  );

  const createTx = db.transaction((id: string, username: string, email: string, now: number): void => {
    insertUser.run(id, username, email, now, now);
    insertBilling.run(randomUUID(), id, now, now);
  });

  return {
    /**
     * Creates the user and its billing row atomically. A taken username or email is a 409 naming
     * which; the failed transaction is rolled back, so the connection stays fully writable.
     */
    create(input: { username: string; email: string }): User {
      const id = randomUUID();
      try {
        createTx.immediate(id, input.username, input.email, nowS());
      } catch (err) {
        throw conflictOf(err, input);
      }
      return toUser(byId.get(id)!);
    },
    get(id: string): User | undefined {
      const cached = cache.get(id);
      if (cached) return cached;
      const row = byId.get(id);
      if (!row) return undefined;
      const user = Object.freeze(toUser(row));
      cache.set(id, user);
      return user;
    },
    /** Changes a user's username and/or email; undefined when there is no such user. 409 when taken. */
    update(id: string, input: { username?: string; email?: string }): User | undefined {
      let changes: number;
      try {
        changes = updateUser.run(input.username ?? null, input.email ?? null, nowS(), id).changes;
      } catch (err) {
        throw conflictOf(err, input);
      } finally {
        changed(id);
      }
      return changes === 1 ? toUser(byId.get(id)!) : undefined;
    },
    /** Deletes a user and everything it owns; false when there was no such user. */
    remove(id: string): boolean {
      try {
        return deleteUser.run(id).changes === 1;
      } finally {
        changed(id);
      }
    },
    /** Users in creation order, after the user `after` (keyset pagination). */
    list(options: { limit: number; after?: string }): User[] {
      return page.all(options.after ?? null, options.limit).map(toUser);
    },
  };
}

export type Users = ReturnType<typeof createUsers>;
