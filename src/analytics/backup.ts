import { randomBytes } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { PARTITION_TABLES } from './partitions.js';

/** What a DuckDB analytics database holds, for the backup manifest and to check a restore against it. */
export interface AnalyticsFacts {
  duckdbVersion: string;
  measurements: number;
  /** Work-queue (telemetry_buffer) id through which rows are in analytics. */
  queueThrough: number;
  /** Last ingest batch committed. */
  batch: number;
  /** Last stream entry id committed, or null. */
  position: string | null;
}

/**
 * A file path as a DuckDB string literal, for ATTACH (which takes no bound parameters): absolute,
 * without control characters, quotes doubled.
 */
export function pathLiteral(path: string): string {
  // eslint-disable-next-line no-control-regex
  if (!isAbsolute(path) || /[\u0000-\u001f\u007f]/.test(path)) throw new Error(`not a usable backup path: ${JSON.stringify(path)}`);
  return `'${path.replaceAll("'", "''")}'`;
}

const identifier = (name: string) => `"${name.replaceAll('"', '""')}"`;

async function first(connection: DuckDBConnection, sql: string): Promise<Record<string, unknown>> {
  return (await connection.runAndReadAll(sql)).getRowObjectsJS()[0] ?? {};
}

/** Readings, ingest state and version of the database attached as `catalog` (layout 2). */
export async function analyticsFacts(connection: DuckDBConnection, catalog: string): Promise<AnalyticsFacts> {
  const c = identifier(catalog);
  // Counted on the readings tables: the view's join to series adds nothing to a count.
  const readings = PARTITION_TABLES.map((t) => `(SELECT count(*) FROM ${c}.main.${t})`).join(' + ');
  const counts = await first(
    connection,
    `SELECT ${readings} AS measurements, max(batch) AS batch, max(queue_through) AS queue_through, max(position) AS position,
            version() AS version
     FROM ${c}.main.ingest_state`,
  );
  return {
    duckdbVersion: String(counts.version),
    measurements: Number(counts.measurements),
    queueThrough: Number(counts.queue_through ?? 0),
    batch: Number(counts.batch ?? 0),
    position: (counts.position as string | null | undefined) ?? null,
  };
}

/**
 * Copies the connection's database into a new file at `target` with DuckDB's own online copy:
 * ATTACH, then COPY FROM DATABASE, which reads one snapshot while appends go on. The copy is
 * checkpointed (no WAL beside it) and detached before this resolves; its facts are read from it.
 */
export async function copyAnalytics(connection: DuckDBConnection, target: string, source?: string): Promise<AnalyticsFacts> {
  source ??= String((await first(connection, 'SELECT current_database() AS name')).name);
  const alias = `ocean_backup_${randomBytes(6).toString('hex')}`;
  await connection.run(`ATTACH ${pathLiteral(target)} AS ${alias}`);
  try {
    await connection.run(`COPY FROM DATABASE ${identifier(source)} TO ${alias}`);
    const facts = await analyticsFacts(connection, alias);
    await connection.run(`CHECKPOINT ${alias}`);
    return facts;
  } finally {
    await connection.run(`DETACH ${alias}`);
  }
}

/** The data directory is open in another process (DuckDB's file lock is held). */
export class DataDirInUseError extends Error {
  constructor(path: string) {
    super(`${path} is in use by another process (a running Ocean Core holds its lock); stop the service first`);
    this.name = 'DataDirInUseError';
  }
}

/** A DuckDB file attached read-only to an in-memory instance (so that a copy can be attached beside it for writing). */
export interface ReadOnlyAnalytics {
  connection: DuckDBConnection;
  /** The file's catalog name on `connection`. */
  catalog: string;
  close(): void;
}

/** Opens a DuckDB file read-only; a file another process holds is refused with DataDirInUseError. */
export async function openAnalyticsReadOnly(path: string): Promise<ReadOnlyAnalytics> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  const close = () => {
    connection.closeSync();
    instance.closeSync();
  };
  const catalog = 'ocean_source';
  try {
    await connection.run(`ATTACH ${pathLiteral(path)} AS ${catalog} (READ_ONLY)`);
  } catch (err) {
    close();
    if (err instanceof Error && /lock/i.test(err.message)) throw new DataDirInUseError(path);
    throw err;
  }
  return { connection, catalog, close };
}

/** What the DuckDB file at `path` holds, opened read-only. */
export async function analyticsFileFacts(path: string): Promise<AnalyticsFacts> {
  const source = await openAnalyticsReadOnly(path);
  try {
    return await analyticsFacts(source.connection, source.catalog);
  } finally {
    source.close();
  }
}
