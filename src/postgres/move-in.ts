import Database from 'better-sqlite3';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PARTITION_TABLES } from '../analytics/partitions.js';
import { LAYOUT } from '../analytics/schema.js';
import { SCHEMA_VERSION } from '../operational/db.js';
import { inTransaction, type Pg, type PgClient } from './connect.js';
import { migratePostgres } from './migrations.js';

/** Rows per INSERT when copying readings. */
const CHUNK = 50_000;

/** What was copied, table by table, with the checks that compared source and target. */
export interface MoveReport {
  counts: Record<string, number>;
  sums: Record<string, number>;
}

type Row = Record<string, unknown>;

/**
 * Copies an embedded data dir (ocean.db and analytics.duckdb) into an empty shared PostgreSQL, in
 * one transaction: users (creation order and ids kept), billing and its ledger (ids kept),
 * Idempotency-Keys, sessions (so tokens stay valid), metadata and profiles, devices with their
 * secrets, held-frame conflicts, device events, the work queue of JSON readings, the series and
 * every reading, and the replay window (fingerprints). Before it commits, counts and sums of each
 * are compared between the source and PostgreSQL; any difference rolls everything back.
 *
 * The source is only read: SQLite opened read-only, DuckDB read-only (which fails while the service
 * holds the file: stop it first). Refused: a data dir of an older schema (start this build on it
 * once), one with a history purge still queued (start the service once, it runs it), a PostgreSQL
 * that already holds users, devices or readings.
 */
export async function moveIn(dataDir: string, pool: Pg): Promise<MoveReport> {
  const sqlitePath = join(dataDir, 'ocean.db');
  const duckPath = join(dataDir, 'analytics.duckdb');
  for (const path of [sqlitePath, duckPath]) if (!existsSync(path)) throw new Error(`${path} not found: is ${dataDir} a data dir?`);
  const sqlite = new Database(sqlitePath, { readonly: true, fileMustExist: true });
  let duckInstance: DuckDBInstance | undefined;
  let duck: DuckDBConnection | undefined;
  try {
    const version = sqlite.pragma('user_version', { simple: true }) as number;
    if (version !== SCHEMA_VERSION) throw new Error(`ocean.db has schema version ${version}, this build ${SCHEMA_VERSION}: start this build on the data dir once (it upgrades it), stop it, then move`);
    const purges = (sqlite.prepare('SELECT count(*) AS n FROM history_purges').get() as { n: number }).n;
    if (purges > 0) throw new Error(`${purges} history purge(s) are still queued: start the service once (it runs them), stop it, then move`);
    try {
      duckInstance = await DuckDBInstance.create(duckPath, { access_mode: 'READ_ONLY' });
    } catch (err) {
      throw new Error(`analytics.duckdb cannot be opened read-only (${err instanceof Error ? err.message : String(err)}): stop the service first`, { cause: err });
    }
    duck = await duckInstance.connect();
    const layout = (await duck.runAndReadAll("SELECT value FROM analytics_meta WHERE key = 'layout'")).getRowObjectsJS()[0]?.value;
    if (Number(layout) !== LAYOUT) throw new Error(`analytics.duckdb has layout ${String(layout)}, this build ${LAYOUT}: start this build on the data dir once, stop it, then move`);

    await migratePostgres(pool);
    const source = sourceChecks(sqlite);
    const analytics = await duckChecks(duck);
    Object.assign(source.counts, analytics.counts);
    Object.assign(source.sums, analytics.sums);
    const d = duck;
    return await inTransaction(pool, async (tx) => {
      const { rows } = await tx.query<{ n: number }>('SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM devices) + (SELECT count(*) FROM readings) AS n');
      if (rows[0]!.n > 0) throw new Error('the PostgreSQL database already holds users, devices or readings: move into an empty one');
      await copyOperational(sqlite, tx);
      await copyAnalytics(d, tx);
      const target = await targetChecks(tx);
      assertSame(source, target, 'in the data dir', 'in PostgreSQL');
      return target;
    });
  } finally {
    duck?.closeSync();
    duckInstance?.closeSync();
    sqlite.close();
  }
}

/** Throws, naming each difference, unless both sides have the same counts and (within rounding) sums. */
export function assertSame(a: MoveReport, b: MoveReport, aName: string, bName: string): void {
  const differences = Object.keys(a.counts)
    .filter((k) => a.counts[k] !== b.counts[k])
    .map((k) => `${k}: ${a.counts[k]} ${aName}, ${b.counts[k]} ${bName}`)
    .concat(Object.keys(a.sums).filter((k) => Math.abs(a.sums[k]! - b.sums[k]!) > 1e-6 * Math.max(1, Math.abs(a.sums[k]!))).map((k) => `sum of ${k}: ${a.sums[k]} ${aName}, ${b.sums[k]} ${bName}`));
  if (differences.length > 0) throw new Error(`the copy does not match its source, nothing was kept: ${differences.join('; ')}`);
}

/** Operational tables: [name, SQLite select, PostgreSQL insert columns]. Ids are kept; sequences are moved past them after. */
export const TABLES: Array<[string, string, string]> = [
  ['users', 'SELECT id, legacy_id, username, email, status, created_at, updated_at FROM users ORDER BY rowid', 'id, legacy_id, username, email, status, created_at, updated_at'],
  ['billing', 'SELECT id, user_id, plan, credits, usage, created_at, updated_at FROM billing', 'id, user_id, plan, credits, usage, created_at, updated_at'],
  ['billing_ledger', 'SELECT id, user_id, delta, balance_after, reason, created_at FROM billing_ledger ORDER BY id', 'id, user_id, delta, balance_after, reason, created_at'],
  ['idempotency_keys', 'SELECT scope, key, fingerprint, status, body, created_at FROM idempotency_keys', 'scope, key, fingerprint, status, body, created_at'],
  ['sessions', 'SELECT id, user_id, token_hash, created_at, expires_at, revoked_at, last_activity FROM sessions', 'id, user_id, token_hash, created_at, expires_at, revoked_at, last_activity'],
  ['metadata', 'SELECT namespace, key, value, sensor_id, ts, updated_at FROM metadata', 'namespace, key, value, sensor_id, ts, updated_at'],
  ['devices', 'SELECT device_id, owner_id, model_id, secret, lab_id, created_at, last_seen, frames, records, origin FROM devices', 'device_id, owner_id, model_id, secret, lab_id, created_at, last_seen, frames, records, origin'],
  ['device_conflicts', 'SELECT device_id, claimed_by, frames, first_at, last_at FROM device_conflicts', 'device_id, claimed_by, frames, first_at, last_at'],
  ['device_events', 'SELECT id, source_id, device_id, payload_type, ts, body, created_at FROM device_events ORDER BY id', 'id, source_id, device_id, payload_type, ts, body, created_at'],
  // JSON readings only: rows of frames from releases before the one-commit path have no queue to keep.
  ['telemetry_buffer', "SELECT id, source, sensor_id, ts, data, record_count, queued = 1 AS queued, entry_id, created_at FROM telemetry_buffer WHERE data IS NOT NULL ORDER BY id", 'id, source, sensor_id, ts, data, record_count, queued, entry_id, created_at'],
];

/** Tables whose ids come from a sequence in PostgreSQL: [table, column]. */
const SEQUENCES: Array<[string, string]> = [
  ['billing_ledger', 'id'],
  ['device_events', 'id'],
  ['telemetry_buffer', 'id'],
  ['series', 'series'],
];

async function copyOperational(sqlite: Database.Database, tx: PgClient): Promise<void> {
  for (const [table, select, columns] of TABLES) {
    const rows = sqlite.prepare(select).all() as Row[];
    const names = columns.split(', ');
    // device_events.id is GENERATED ALWAYS: the ids of the source are kept explicitly.
    const overriding = table === 'device_events' ? ' OVERRIDING SYSTEM VALUE' : '';
    for (let at = 0; at < rows.length; at += 1000) {
      const slice = rows.slice(at, at + 1000);
      const values: unknown[] = [];
      const tuples = slice.map((row) => `(${names.map((name) => `$${values.push(table === 'telemetry_buffer' && name === 'queued' ? row[name] === 1 : row[name])}`).join(', ')})`);
      await tx.query(`INSERT INTO ${table}(${columns})${overriding} VALUES ${tuples.join(', ')}`, values);
    }
  }
}

async function copyAnalytics(duck: DuckDBConnection, tx: PgClient): Promise<void> {
  const series = (await duck.runAndReadAll('SELECT series, sensor_id, metric, unit, lab_id, model_id, source FROM series ORDER BY series')).getRowObjectsJS();
  const column = (k: string) => series.map((s) => s[k] ?? null);
  await tx.query(
    `INSERT INTO series(series, sensor_id, metric, unit, lab_id, model_id, source)
     SELECT * FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::text[])`,
    ['series', 'sensor_id', 'metric', 'unit', 'lab_id', 'model_id', 'source'].map(column),
  );
  // Times as integer microseconds both ways: nothing is rounded.
  await copyChunks(duck, `${PARTITION_TABLES.map((t) => `SELECT series, epoch_us(ts)::VARCHAR AS us, value FROM ${t}`).join(' UNION ALL ')}`, (cols) =>
    tx.query(
      `INSERT INTO readings(series, ts, value)
       SELECT s, timestamptz 'epoch' + us * interval '1 microsecond', v FROM unnest($1::integer[], $2::bigint[], $3::double precision[]) AS r(s, us, v)`,
      cols,
    ),
  );
  await copyChunks(duck, 'SELECT fp::VARCHAR, ts, tag FROM replay_fingerprints', (cols) =>
    tx.query('INSERT INTO replay_fingerprints(fp, ts, tag) SELECT * FROM unnest($1::bigint[], $2::integer[], $3::integer[]) ON CONFLICT (fp) DO NOTHING', cols),
  );
  for (const [table, id] of SEQUENCES) {
    await tx.query(`SELECT setval(pg_get_serial_sequence('${table}', '${id}'), greatest((SELECT max(${id}) FROM ${table}), 1), (SELECT count(*) > 0 FROM ${table}))`);
  }
}

/** Streams a DuckDB query's columns to `insert` in chunks of CHUNK rows. */
async function copyChunks(duck: DuckDBConnection, sql: string, insert: (columns: unknown[][]) => Promise<unknown>): Promise<void> {
  const result = await duck.stream(sql);
  let columns: unknown[][] | undefined;
  const flush = async () => {
    if (columns && columns[0]!.length > 0) await insert(columns);
    columns = undefined;
  };
  for (;;) {
    const chunk = await result.fetchChunk();
    if (!chunk || chunk.rowCount === 0) break;
    const got = chunk.getColumns();
    columns ??= got.map(() => []);
    got.forEach((c, i) => columns![i]!.push(...c));
    if (columns[0]!.length >= CHUNK) await flush();
  }
  await flush();
}

/** Counts and sums of the source's operational tables. */
export function sourceChecks(sqlite: Database.Database): MoveReport {
  const one = (sql: string) => Number((sqlite.prepare(sql).get() as { v: number | null }).v ?? 0);
  const counts: Record<string, number> = {};
  for (const [table, select] of TABLES) counts[table] = one(`SELECT count(*) AS v FROM (${select})`);
  return {
    counts,
    sums: {
      'billing.credits': one('SELECT sum(credits) AS v FROM billing'),
      'billing.usage': one('SELECT sum(usage) AS v FROM billing'),
      'billing_ledger.delta': one('SELECT sum(delta) AS v FROM billing_ledger'),
      'devices.records': one('SELECT sum(records) AS v FROM devices'),
    },
  };
}

/** Counts and sums of the source's analytics tables. */
export async function duckChecks(duck: DuckDBConnection): Promise<MoveReport> {
  const one = async (sql: string) => Number((await duck.runAndReadAll(sql)).getRowObjectsJS()[0]!.v ?? 0);
  const readings = `(${PARTITION_TABLES.map((t) => `SELECT value FROM ${t}`).join(' UNION ALL ')})`;
  return {
    counts: {
      series: await one('SELECT count(*) AS v FROM series'),
      readings: await one(`SELECT count(*) AS v FROM ${readings}`),
      replay_fingerprints: await one('SELECT count(DISTINCT fp) AS v FROM replay_fingerprints'),
    },
    sums: { 'readings.value': await one(`SELECT sum(value) AS v FROM ${readings}`) },
  };
}

export async function targetChecks(tx: PgClient): Promise<MoveReport> {
  const one = async (sql: string) => Number((await tx.query<{ v: number | string | null }>(sql)).rows[0]!.v ?? 0);
  const counts: Record<string, number> = {};
  for (const [table] of TABLES) counts[table] = await one(`SELECT count(*) AS v FROM ${table}`);
  for (const table of ['series', 'readings', 'replay_fingerprints']) counts[table] = await one(`SELECT count(*) AS v FROM ${table}`);
  return {
    counts,
    sums: {
      'billing.credits': await one('SELECT sum(credits) AS v FROM billing'),
      'billing.usage': await one('SELECT sum(usage) AS v FROM billing'),
      'billing_ledger.delta': await one('SELECT sum(delta) AS v FROM billing_ledger'),
      'devices.records': await one('SELECT sum(records) AS v FROM devices'),
      'readings.value': await one('SELECT sum(value) AS v FROM readings'),
    },
  };
}
