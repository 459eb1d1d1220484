import pg from 'pg';

export type Pg = pg.Pool;
export type PgClient = pg.PoolClient;

/**
 * int8 (bigint, count(*)) as a JS number rather than pg's default string: every integer the
 * service keeps (epoch seconds, credits, ids, counts) is below 2^53, the limit billing enforces.
 */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

export interface PostgresOptions {
  /** Connections this instance may hold (default 10). */
  max?: number;
  /** A statement running longer is cancelled by the server (default 30 s). */
  statementTimeoutMs?: number;
}

/**
 * A pool to the shared PostgreSQL. A connection that breaks (the server restarted) is dropped and
 * the next query opens a new one; its error reaches the query that was running, never the event loop.
 */
export function openPostgres(url: string, options: PostgresOptions = {}): Pg {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: 'ocean-core',
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    connectionTimeoutMillis: 5_000,
    types,
  });
  pool.on('error', () => undefined);
  // A connection that breaks while checked out (a transaction, an export) when the server restarts
  // emits 'error' on its client, where no pool listener is: without one Node would end the process.
  // The query it was running rejects with the same error, which its caller handles.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/** What runs a statement: the pool (each statement its own transaction) or a client inside a transaction. */
export type Queryable = Pg | PgClient;

let savepoints = 0;

/**
 * Runs fn in one transaction: on a pool, BEGIN … COMMIT on one of its connections (ROLLBACK when fn
 * throws); on a client already in a transaction, inside a savepoint (as better-sqlite3 nests), so
 * that a refused inner step takes back only its own changes.
 */
export async function inTransaction<T>(db: Queryable, fn: (client: PgClient) => Promise<T>): Promise<T> {
  if (!(db instanceof pg.Pool)) {
    const name = `ocean_${++savepoints}`;
    await db.query(`SAVEPOINT ${name}`);
    try {
      const result = await fn(db);
      await db.query(`RELEASE SAVEPOINT ${name}`);
      return result;
    } catch (err) {
      await db.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => undefined);
      throw err;
    }
  }
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** The SQLSTATE of a PostgreSQL error, e.g. 23505 for a unique violation. */
export const sqlState = (err: unknown): string | undefined => (err instanceof pg.DatabaseError ? err.code : undefined);
/** The constraint a PostgreSQL error names (unique and check violations). */
export const constraintOf = (err: unknown): string | undefined => (err instanceof pg.DatabaseError ? err.constraint : undefined);
