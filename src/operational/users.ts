import Database from 'better-sqlite3';
import { ConflictError } from '../errors.js';
import type { Db } from './db.js';
import { nowS } from './db.js';
import { isoFromS } from './time.js';

/** A user as the API shows it. */
export interface User {
  id: number;
  username: string;
  email: string;
  /** ISO 8601, UTC. */
  created_at: string;
}

interface UserRow {
  id: number;
  username: string;
  email: string;
  created_at: number;
}

const toUser = (row: UserRow): User => ({ id: row.id, username: row.username, email: row.email, created_at: isoFromS(row.created_at) });

/** Which UNIQUE column a constraint error is about, from SQLite's message ("UNIQUE constraint failed: users.email"). */
function uniqueColumn(err: unknown): string | undefined {
  if (!(err instanceof Database.SqliteError) || err.code !== 'SQLITE_CONSTRAINT_UNIQUE') return undefined;
  return /UNIQUE constraint failed: \w+\.(\w+)/.exec(err.message)?.[1] ?? 'unknown';
}

/** Users. Every user gets its billing row in the same transaction that creates it. */
export function createUsers(db: Db) {
  const insertUser = db.prepare<[string, string, number]>('INSERT INTO users(username, email, created_at) VALUES (?, ?, ?)');
  const insertBilling = db.prepare<[number | bigint, number]>('INSERT INTO billing(user_id, updated_at) VALUES (?, ?)');
  const byId = db.prepare<[number], UserRow>('SELECT id, username, email, created_at FROM users WHERE id = ?');
  const page = db.prepare<[number, number], UserRow>(
    'SELECT id, username, email, created_at FROM users WHERE id > ? ORDER BY id LIMIT ?',
  );

  const createTx = db.transaction((username: string, email: string, now: number): number => {
    const { lastInsertRowid } = insertUser.run(username, email, now);
    insertBilling.run(lastInsertRowid, now);
    return Number(lastInsertRowid);
  });

  return {
    /**
     * Creates the user and its billing row atomically. A taken username or email is a 409 naming
     * which; the failed transaction is rolled back, so the connection stays fully writable.
     */
    create(input: { username: string; email: string }): User {
      let id: number;
      try {
        id = createTx.immediate(input.username, input.email, nowS());
      } catch (err) {
        const column = uniqueColumn(err);
        if (column === 'username') throw new ConflictError(`username '${input.username}' already exists`);
        if (column === 'email') throw new ConflictError(`email '${input.email}' already exists`);
        if (column !== undefined) throw new ConflictError('user already exists');
        throw err;
      }
      return toUser(byId.get(id)!);
    },
    get(id: number): User | undefined {
      const row = byId.get(id);
      return row && toUser(row);
    },
    /** Users by id, after `after` (keyset pagination). */
    list(options: { limit: number; after?: number }): User[] {
      return page.all(options.after ?? 0, options.limit).map(toUser);
    },
  };
}

export type Users = ReturnType<typeof createUsers>;
