/**
 * Experiment for the shared mode's ingest (`npm run bench:pg-ingest`): how fast can instances
 * sharing one consumer group drain signed frames from a Redis stream into PostgreSQL, with the
 * shape the mode will have: XREADGROUP a batch, decode it off the main thread (the service's decode
 * pool), store its readings with their fingerprints in one transaction (postgres/readings.ts), XACK.
 * It leaves out what the service adds around that (devices' activity, claims, usage, dead letters),
 * so it is the path's ceiling, not the service's figure.
 *
 * Runs, on the same frames (levels 1 and 2, about three readings each, 1,000 devices): a bare
 * XREADGROUP + XACK drain (the baseline), then the path with 1 and with 2 instances (child
 * processes of this script, each its own pool and decode pool). A private redis-server and
 * PostgreSQL are started. Options: --frames N (default 200000), --batch N (default 1000), --ahead N
 * (batches read and decoded ahead of the one being stored, default 2), --cpu-prof DIR (profiles of the instances).
 */
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadNanogridataConfig } from '../src/config.js';
import { PASSED } from '../src/ingest/decode-batch.js';
import { DecodePool } from '../src/ingest/decode-pool.js';
import { FINGERPRINT_BYTES } from '../src/nanogridata/types.js';
import { inTransaction, openPostgres } from '../src/postgres/connect.js';
import { migratePostgres } from '../src/postgres/migrations.js';
import { PgSeries, prepareReadings, storeReadings } from '../src/postgres/readings.js';
import { startPostgres } from '../test/helpers/postgres-server.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { load, makeFrames } from './stream-frames.js';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '1000' },
    worker: { type: 'string' },
    ahead: { type: 'string', default: '2' },
    'cpu-prof': { type: 'string' },
  },
});
const BATCH = Number(values.batch);
const AHEAD = Math.max(1, Number(values.ahead));

type Entries = Array<[Buffer, Buffer[]]>;
const read = async (redis: Redis, stream: string, group: string, name: string): Promise<Entries> => {
  const reply = (await redis.callBuffer('XREADGROUP', 'GROUP', group, name, 'COUNT', BATCH, 'STREAMS', stream, '>')) as Array<[Buffer, Entries]> | null;
  return reply?.[0]?.[1] ?? [];
};

/** One instance: read, decode, store, acknowledge, until the stream has nothing new. */
async function instance(args: { redisUrl: string; pgUrl: string; stream: string; name: string; secretHex: string }): Promise<void> {
  const redis = new Redis(args.redisUrl);
  const pool = openPostgres(args.pgUrl, { max: 4 });
  const decoder = new DecodePool(loadNanogridataConfig({ NANOGRIDATA_SECRET_10: args.secretHex }), pino({ level: 'silent' }));
  await decoder.ready();
  const series = new PgSeries(pool);
  let stored = 0;
  /** Reads and decodes one batch; null when the stream has nothing new. */
  const next = async () => {
    const entries = await read(redis, args.stream, 'g', args.name);
    if (entries.length === 0) return null;
    const frames = entries.map(([, fields]) => fields[1]!);
    const bytes = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    const ends = new Uint32Array(frames.length);
    let at = 0;
    frames.forEach((f, i) => {
      bytes.set(f, at);
      ends[i] = at += f.length;
    });
    const decoded = await decoder.decode({ bytes, ends, deviceIds: null, nowS: Date.now() / 1000 });
    const passed = [...decoded.status.keys()].filter((i) => decoded.status[i] === PASSED && decoded.recordCounts[i]! > 0);
    const fingerprints = new Uint8Array(passed.length * FINGERPRINT_BYTES);
    passed.forEach((i, k) => fingerprints.set(decoded.fingerprints.subarray(i * FINGERPRINT_BYTES, (i + 1) * FINGERPRINT_BYTES), k * FINGERPRINT_BYTES));
    const prepared = await prepareReadings(series, [
      {
        source: 'stream',
        records: decoded.records,
        frames: {
          fingerprints,
          timestamps: Uint32Array.from(passed.map((i) => decoded.timestamps[i]!)),
          tags: new Int32Array(passed.length).fill(1),
          recordCounts: Uint16Array.from(passed.map((i) => decoded.recordCounts[i]!)),
        },
      },
    ]);
    return { entries, prepared, frames: passed.length };
  };
  try {
    // The next batch is read and decoded while this one is stored (--ahead batches in flight).
    const ahead: Array<ReturnType<typeof next>> = [];
    for (let k = 0; k < AHEAD; k++) ahead.push(next());
    for (;;) {
      const batch = await ahead.shift()!;
      if (!batch) break;
      ahead.push(next());
      await inTransaction(pool, (client) => storeReadings(client, batch.prepared));
      await redis.xack(args.stream, 'g', ...batch.entries.map(([id]) => id));
      stored += batch.frames;
    }
    await Promise.all(ahead);
  } finally {
    await decoder.close();
    await pool.end();
    redis.disconnect();
  }
  process.send?.({ stored });
}

if (values.worker) {
  await instance(JSON.parse(values.worker) as Parameters<typeof instance>[0]);
  process.exit(0);
}

const FRAMES = Number(values.frames);
const redisServer = await startRedis();
const pgServer = await startPostgres();
const redis = new Redis(redisServer.url);
try {
  const secret = Buffer.alloc(32, 7);
  const { frames } = makeFrames(FRAMES, secret);
  console.log(`${FRAMES.toLocaleString('en')} frames, batches of ${BATCH}`);

  await load(redis, 'bare', frames);
  await redis.xgroup('CREATE', 'bare', 'g', '0');
  let t = performance.now();
  for (;;) {
    const entries = await read(redis, 'bare', 'g', 'c');
    if (entries.length === 0) break;
    await redis.xack('bare', 'g', ...entries.map(([id]) => id));
  }
  const bare = FRAMES / ((performance.now() - t) / 1000);
  console.log(`baseline: bare XREADGROUP + XACK     ${bare.toFixed(0).padStart(8)} frames/s`);

  for (const instances of [1, 2]) {
    const stream = `frames-${instances}`;
    const pgUrl = await pgServer.createDatabase();
    const pool = openPostgres(pgUrl);
    await migratePostgres(pool);
    await load(redis, stream, frames);
    await redis.xgroup('CREATE', stream, 'g', '0');
    t = performance.now();
    const children = Array.from({ length: instances }, (_, i) =>
      fork(new URL(import.meta.url).pathname, ['--batch', String(BATCH), '--ahead', String(AHEAD), '--worker', JSON.stringify({ redisUrl: redisServer.url, pgUrl, stream, name: `i${i}`, secretHex: secret.toString('hex') })], {
        execArgv: ['--import', 'tsx', ...(values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : [])],
      }),
    );
    await Promise.all(children.map((c) => new Promise<void>((resolve, reject) => c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`instance exited ${code}`)))))));
    const seconds = (performance.now() - t) / 1000;
    const { n } = (await pool.query<{ n: number }>('SELECT count(*) AS n FROM replay_fingerprints')).rows[0]!;
    await pool.end();
    console.log(
      `${instances} instance${instances > 1 ? 's' : ' '} → PostgreSQL           ${(FRAMES / seconds).toFixed(0).padStart(8)} frames/s  (${(FRAMES / seconds / bare).toFixed(2)} × baseline; ${n.toLocaleString('en')} frames stored)`,
    );
  }
} finally {
  redis.disconnect();
  await pgServer.stop();
  await redisServer.stop();
}
