import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { appendFingerprints, appendReadings, withAppender } from '../analytics/append.js';
import { prepareSchema } from '../analytics/migrate.js';
import { PARTITION_TABLES, partitionOf } from '../analytics/partitions.js';
import { ensureDataDir } from '../data-files.js';
import { openOperationalDb } from '../operational/db.js';
import { RecordBatchBuilder } from '../operational/record-batch.js';
import { foldActivity } from './activity.js';
import type { Pg } from './connect.js';
import { appendSeries, partsOf } from './export.js';
import { assertSame, duckChecks, sourceChecks, targetChecks, TABLES, type MoveReport } from './move-in.js';

const FETCH_ROWS = 50_000;

/**
 * Copies the shared PostgreSQL back into a new embedded data dir (the way back of move-in.ts):
 * every table move-in copies, from one consistent snapshot (a REPEATABLE READ, read-only
 * transaction), then the same counts and sums compared on both sides. The data dir must not exist
 * or be empty; if anything fails, what was written there is removed. PostgreSQL is only read.
 *
 * The work queue's rows keep their ids and state; their readings are in analytics already, so the
 * data dir's ingest state says so (queue_through) and the embedded committer does not carry them
 * again, and their device activity and usage are counted (in devices and billing) already.
 */
export async function moveOut(pool: Pg, dataDir: string): Promise<MoveReport> {
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) throw new Error(`${dataDir} is not empty: move out into a new data dir`);
  ensureDataDir(dataDir);
  // Activity appended by the ingest and not yet folded into the devices would not be in the copy.
  while ((await foldActivity(pool, Date.now() / 1000)) === undefined) await new Promise((r) => setTimeout(r, 100));
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const source = await targetChecks(client);
    const db = openOperationalDb(join(dataDir, 'ocean.db'));
    let maxQueueId = 0;
    try {
      const tables = new Map<string, Array<Record<string, unknown>>>();
      for (const [table, , columns] of TABLES) {
        const order = table === 'users' ? ' ORDER BY seq' : ['billing_ledger', 'device_events', 'telemetry_buffer'].includes(table) ? ' ORDER BY id' : '';
        tables.set(table, (await client.query(`SELECT ${columns} FROM ${table}${order}`)).rows);
      }
      const queue = tables.get('telemetry_buffer')!;
      maxQueueId = queue.reduce((m, r) => Math.max(m, Number(r.id)), 0);
      const empty = new RecordBatchBuilder(0).toBuffer();
      db.transaction(() => {
        for (const [table, , columns] of TABLES) {
          const rows = tables.get(table)!;
          if (table === 'telemetry_buffer') {
            // A row's packed records are only read to carry it into analytics, where it is already.
            const insert = db.prepare(
              `INSERT INTO telemetry_buffer(id, source, sensor_id, ts, data, messages, record_count, records, queued, entry_id, created_at)
               VALUES (@id, @source, @sensor_id, @ts, @data, 1, @record_count, @records, @queued, @entry_id, @created_at)`,
            );
            for (const r of rows) insert.run({ ...r, queued: r.queued ? 1 : 0, records: empty });
            continue;
          }
          const names = columns.split(', ');
          const insert = db.prepare(`INSERT INTO ${table}(${columns}) VALUES (${names.map((n) => `@${n}`).join(', ')})`);
          for (const r of rows) insert.run(r);
        }
        const queued = queue.filter((r) => r.queued).length;
        const counter = db.prepare('INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value');
        counter.run('buffer_rows', queue.length);
        counter.run('work_queue', queued);
        // Their activity and usage are counted already.
        counter.run('activity_applied_through', maxQueueId);
        if (maxQueueId > 0) db.prepare("INSERT INTO sqlite_sequence(name, seq) SELECT 'telemetry_buffer', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'telemetry_buffer')").run(maxQueueId);
      }).immediate();
      const target = sourceChecks(db);
      const duckPath = join(dataDir, 'analytics.duckdb');
      const instance = await DuckDBInstance.create(duckPath);
      const duck = await instance.connect();
      try {
        await prepareSchema(duck, duckPath);
        await duck.run('BEGIN TRANSACTION');
        const series = new Map(
          (await client.query<{ series: number; sensor_id: string; metric: string; unit: string; lab_id: string | null; model_id: number | null; source: string }>('SELECT * FROM series ORDER BY series')).rows.map((s) => [
            s.series,
            { ...s, partition: partitionOf(s.sensor_id) },
          ]),
        );
        await appendSeries(duck, series.values());
        await client.query('DECLARE move_out NO SCROLL CURSOR FOR SELECT series, extract(epoch FROM ts)::float8, value FROM readings');
        for (;;) {
          const { rows } = await client.query<[number, number, number]>({ text: `FETCH ${FETCH_ROWS} FROM move_out`, rowMode: 'array' });
          if (rows.length === 0) break;
          for (const [p, part] of partsOf(rows, series)) await withAppender(duck, PARTITION_TABLES[p]!, (a) => appendReadings(a, [part]));
        }
        const { rows: fps } = await client.query<{ fp: string; ts: number; tag: number }>('SELECT fp::text, ts, tag FROM replay_fingerprints');
        const fp = new Uint8Array(fps.length * 8);
        const view = new DataView(fp.buffer);
        fps.forEach((r, k) => view.setBigInt64(k * 8, BigInt(r.fp), true));
        await withAppender(duck, 'replay_fingerprints', (a) =>
          appendFingerprints(a, { fp, ts: Uint32Array.from(fps.map((r) => r.ts)), tag: Int32Array.from(fps.map((r) => r.tag)) }),
        );
        // The work queue's readings are in analytics: the embedded committer carries only newer rows.
        await duck.run(`UPDATE ingest_state SET queue_through = ${maxQueueId}`);
        await duck.run('COMMIT');
        const analytics = await duckChecks(duck);
        Object.assign(target.counts, analytics.counts);
        Object.assign(target.sums, analytics.sums);
        await duck.run('CHECKPOINT');
      } finally {
        duck.closeSync();
        instance.closeSync();
      }
      assertSame(source, target, 'in PostgreSQL', 'in the data dir');
      await client.query('COMMIT');
      return target;
    } finally {
      db.close();
    }
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  } finally {
    client.release();
  }
}
