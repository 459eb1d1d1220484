/**
 * Experiment for the shared mode (`npx tsx bench/pg-commit.ts`): how fast can one PostgreSQL on
 * this machine take the ingest path's commits (readings `(series, ts, value)` plus each frame's
 * replay fingerprint, the fingerprint's uniqueness deciding which frames land), by statement shape:
 *
 *   unnest-cte  one statement: INSERT fingerprints ON CONFLICT DO NOTHING RETURNING, feeding
 *               INSERT readings from unnest() arrays joined on the fresh fingerprints
 *   two-step    INSERT fingerprints … RETURNING, then readings of the fresh frames (unnest)
 *
 * A third shape, COPY readings FROM STDIN (text, pg-copy-streams) after the fingerprints, measured
 * 69k frames/s beside unnest-cte's 82k and two-step's 64k (2 writers, 1,000-frame batches): COPY is
 * not faster at these batch sizes, so it was dropped with its dependency.
 *
 * Batches of --batch frames (3 readings each, as bench:ingest), --writers concurrent connections
 * (two instances), for --seconds each. A private PostgreSQL is started (test/helpers).
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { openPostgres, type Pg } from '../src/postgres/connect.js';
import { startPostgres } from '../test/helpers/postgres-server.js';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '1000' },
    writers: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '8' },
    shapes: { type: 'string', default: 'unnest-cte,two-step' },
  },
});
const BATCH = Number(values.batch);
const WRITERS = Number(values.writers);
const SECONDS = Number(values.seconds);
const PER_FRAME = 3;

interface Batch {
  fp: string[];
  fts: number[];
  /** per reading */
  rfp: string[];
  series: number[];
  ts: string[];
  value: number[];
}

let seq = 0n;
function makeBatch(): Batch {
  const b: Batch = { fp: [], fts: [], rfp: [], series: [], ts: [], value: [] };
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < BATCH; i++) {
    const fp = (BigInt.asIntN(64, BigInt('0x' + randomBytes(8).toString('hex'))) ^ seq++).toString();
    b.fp.push(fp);
    b.fts.push(now);
    for (let k = 0; k < PER_FRAME; k++) {
      b.rfp.push(fp);
      b.series.push(1 + ((i * 7 + k) % 3000));
      b.ts.push(new Date((now - 60 + (i % 60) + k / 10) * 1000).toISOString());
      b.value.push(100_000 + i * 3 + k);
    }
  }
  return b;
}

const SHAPES: Record<string, (pool: Pg, b: Batch) => Promise<void>> = {
  async 'unnest-cte'(pool, b) {
    await pool.query(
      `WITH fresh AS (
         INSERT INTO fingerprints(fp, ts) SELECT * FROM unnest($1::bigint[], $2::int[]) ON CONFLICT DO NOTHING RETURNING fp)
       INSERT INTO readings(series, ts, value)
       SELECT r.series, r.ts, r.value FROM unnest($3::bigint[], $4::int[], $5::timestamptz[], $6::float8[]) AS r(fp, series, ts, value)
       JOIN fresh USING (fp)`,
      [b.fp, b.fts, b.rfp, b.series, b.ts, b.value],
    );
  },
  async 'two-step'(pool, b) {
    const rfp = b.rfp; // another writer may give the batch new fingerprints while this one waits
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      const { rows } = await c.query<{ fp: string }>('INSERT INTO fingerprints(fp, ts) SELECT * FROM unnest($1::bigint[], $2::int[]) ON CONFLICT DO NOTHING RETURNING fp::text', [b.fp, b.fts]);
      const fresh = new Set(rows.map((r) => r.fp));
      const keep = rfp.map((fp) => fresh.has(fp));
      const pick = <T>(a: T[]) => a.filter((_, i) => keep[i]);
      await c.query('INSERT INTO readings(series, ts, value) SELECT * FROM unnest($1::int[], $2::timestamptz[], $3::float8[])', [pick(b.series), pick(b.ts), pick(b.value)]);
      await c.query('COMMIT');
    } finally {
      c.release();
    }
  },
};

const server = await startPostgres();
try {
  console.log(`batch ${BATCH} frames × ${PER_FRAME} readings, ${WRITERS} writers, ${SECONDS} s per shape`);
  for (const shape of values.shapes.split(',')) {
    const url = await server.createDatabase();
    const pool = openPostgres(url, { max: WRITERS });
    await pool.query(`CREATE TABLE readings (series integer NOT NULL, ts timestamptz NOT NULL, value double precision NOT NULL);
      CREATE INDEX readings_series_ts ON readings(series, ts);
      CREATE TABLE fingerprints (fp bigint PRIMARY KEY, ts integer NOT NULL);`);
    const batches = Array.from({ length: 50 }, makeBatch);
    const run = SHAPES[shape]!;
    let frames = 0;
    let next = 1;
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    const deadline = start + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, w) => {
        let i = w;
        while (performance.now() < deadline) {
          const b = batches[i++ % batches.length]!;
          // Fresh fingerprints each time, so that every frame lands.
          const base = next;
          next += BATCH;
          b.fp = b.fp.map((_, j) => String(base + j));
          b.rfp = b.rfp.map((_, j) => String(base + Math.floor(j / PER_FRAME)));
          await run(pool, b);
          frames += BATCH;
        }
      }),
    );
    const s = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const stored = (await pool.query('SELECT count(*) AS n FROM readings')).rows[0].n as number;
    console.log(
      `${shape.padEnd(11)} ${(frames / s).toFixed(0).padStart(7)} frames/s  ${(stored / s).toFixed(0).padStart(8)} readings/s  client CPU ${(((cpu.user + cpu.system) / 1e6 / s) * 100).toFixed(0)} %`,
    );
    await pool.end();
  }
} finally {
  await server.stop();
}
