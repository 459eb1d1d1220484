import { AsyncLocalStorage } from 'node:async_hooks';
import type { DuckDBConnection, DuckDBInstance, DuckDBType, DuckDBValue } from '@duckdb/node-api';
import { QueryTimeoutError } from '../errors.js';

export type Row = Record<string, unknown>;

/** QUERY_TIMEOUT_MS's default. */
export const DEFAULT_QUERY_TIMEOUT_MS = 30_000;

/**
 * The deadline (performance.now() of this thread) of the call being served, when its time limit
 * was counted from the request's arrival (the client's admission hands over what is left of it).
 */
export const callDeadline = new AsyncLocalStorage<number>();

/** One read-only connection and the statements prepared on it. */
export interface Reader {
  readonly connection: DuckDBConnection;
  /** Runs a parameterised statement and returns its rows. */
  all(sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<Row[]>;
  /** Runs a one-off statement (not kept prepared), e.g. a COPY to a fresh temp path. */
  exec(sql: string, values?: readonly DuckDBValue[], types?: readonly DuckDBType[]): Promise<void>;
}

/**
 * Statements are prepared for each query, not kept: DuckDB 1.5.6 answers wrongly from a statement
 * prepared while a table was empty once rows have arrived (an empty primary-key lookup, mangled
 * group keys), and planning costs far less than the queries.
 */
class PooledReader implements Reader {
  constructor(readonly connection: DuckDBConnection) {}

  async all(sql: string, values: readonly DuckDBValue[] = [], types?: readonly DuckDBType[]): Promise<Row[]> {
    const reader = await this.connection.runAndReadAll(sql, [...values], types ? [...types] : undefined);
    return reader.getRowObjectsJS() as Row[];
  }

  async exec(sql: string, values: readonly DuckDBValue[] = [], types?: readonly DuckDBType[]): Promise<void> {
    await this.connection.run(sql, [...values], types ? [...types] : undefined);
  }

  close(): void {
    this.connection.closeSync();
  }
}

/**
 * A few connections for queries, separate from the commits' writer: each query sees only
 * committed data and never waits behind a commit. One query per connection at a time.
 */
export class ReaderPool {
  private readonly idle: PooledReader[];
  private readonly waiters: Array<(reader: PooledReader) => void> = [];
  private lent = 0;
  private drained: (() => void) | null = null;
  private closed = false;

  private constructor(
    private readonly all: PooledReader[],
    private readonly timeoutMs: number,
  ) {
    this.idle = [...all];
  }

  /** `timeoutMs`: a query running longer is interrupted (0: no limit). */
  static async create(instance: DuckDBInstance, size: number, timeoutMs = 0): Promise<ReaderPool> {
    const readers: PooledReader[] = [];
    for (let i = 0; i < size; i++) readers.push(new PooledReader(await instance.connect()));
    return new ReaderPool(readers, timeoutMs);
  }

  /**
   * Lends a connection to fn and takes it back when fn settles. Past the time limit the
   * connection's query is interrupted and this rejects with QueryTimeoutError (503); the
   * connection goes back to the pool, usable, as soon as DuckDB has stopped.
   */
  async use<T>(fn: (reader: Reader) => Promise<T>): Promise<T> {
    if (this.closed) throw new Error('analytics engine is closed');
    let reader = this.idle.pop();
    if (reader) this.lent++;
    // A waiter is handed a connection by the one releasing it, so `lent` is unchanged then.
    else reader = await new Promise<PooledReader>((resolve) => this.waiters.push(resolve));
    let timedOut = false;
    const deadline = callDeadline.getStore();
    const limitMs = deadline === undefined ? this.timeoutMs : Math.max(0, Math.min(this.timeoutMs || Infinity, deadline - performance.now()));
    const timer =
      limitMs > 0 && limitMs !== Infinity
        ? setTimeout(() => {
            timedOut = true;
            reader.connection.interrupt();
          }, limitMs)
        : undefined;
    try {
      if (deadline !== undefined && limitMs === 0) {
        timedOut = true;
        throw new QueryTimeoutError(this.timeoutMs);
      }
      return await fn(reader);
    } catch (err) {
      throw timedOut ? new QueryTimeoutError(this.timeoutMs) : err;
    } finally {
      clearTimeout(timer);
      const next = this.waiters.shift();
      if (next) next(reader);
      else {
        this.idle.push(reader);
        this.lent--;
        if (this.lent === 0) this.drained?.();
      }
    }
  }

  /** Refuses new work, waits for running queries, then closes every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.lent > 0) {
      await new Promise<void>((resolve) => (this.drained = resolve));
    }
    for (const reader of this.all) reader.close();
  }
}
