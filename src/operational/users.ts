import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { ConflictError } from '../errors.js';
import type { Db } from './db.js';
import { nowS } from './db.js';
import type { User } from './schemas.js';
import { isoFromS } from './time.js';

export type { User } from './schemas.js';

interface UserRow {
  id: string;
  username: string;
  email: string;
  status: 'active';
  created_at: number;
  updated_at: number;
}

const toUser = (row: UserRow): User => ({
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

const COLUMNS = 'id, username, email, status, created_at, updated_at';

/** Users, with UUID ids. Every user gets its billing row in the same transaction that creates it. */
export function createUsers(db: Db) {
  const insertUser = db.prepare<[string, string, string, number, number]>(
    'INSERT INTO users(id, username, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)',
  );
  const insertBilling = db.prepare<[string, string, number, number]>(
    'INSERT INTO billing(id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?)',
  );
  const byId = db.prepare<[string], UserRow>(`SELECT ${COLUMNS} FROM users WHERE id = ?`);
  // Keyset pagination in creation order (rowid follows insertion).
  const page = db.prepare<[string | null, number], UserRow>(
    `SELECT ${COLUMNS} FROM users WHERE rowid > coalesce((SELECT rowid FROM users WHERE id = ?), 0) ORDER BY rowid LIMIT ?`,
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
        const column = uniqueColumn(err);
        if (column === 'username') throw new ConflictError(`username '${input.username}' already exists`);
        if (column === 'email') throw new ConflictError(`email '${input.email}' already exists`);
        if (column !== undefined) throw new ConflictError('user already exists');
        throw err;
      }
      return toUser(byId.get(id)!);
    },
    get(id: string): User | undefined {
      const row = byId.get(id);
      return row && toUser(row);
    },
    /** Users in creation order, after the user `after` (keyset pagination). */
    list(options: { limit: number; after?: string }): User[] {
      return page.all(options.after ?? null, options.limit).map(toUser);
    },
  };
}

export type Users = ReturnType<typeof createUsers>;
