/**
 * The shared mode's stream ingest (`npm run bench:pg-ingest`): instances sharing one consumer group
 * drain signed frames from a Redis stream into PostgreSQL as the mode runs it: the stream consumer
 * (read-ahead, group commit of its batches) committing through PgIngest (decode in the decode pool;
 * one transaction per batch: readings with their fingerprints, device activity, usage, dead letters
 * after). Not the HTTP service around it (the mode is not switched on yet).
 *
 * Runs, on the same frames (levels 1 and 2, about three readings each, 1,000 devices): a bare
 * XREADGROUP + XACK drain (the baseline), then 1 and 2 instances (child processes of this script,
 * started and warmed up on an empty stream; the frames are then added, and the time runs until the
 * last is stored). A private redis-server and PostgreSQL are started. Options: --frames N (default
 * 200000), --batch N (INGEST_BATCH_SIZE, default 1000), --cpu-prof DIR (profiles of the instances).
 */
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig, loadNanogridataConfig } from '../src/config.js';
import { DecodePool } from '../src/ingest/decode-pool.js';
import { openPostgres } from '../src/postgres/connect.js';
import { migratePostgres } from '../src/postgres/migrations.js';
import { PgIngest } from '../src/postgres/ingest.js';
import { StreamConsumer } from '../src/ingest/consumer.js';
import { createMetrics } from '../src/metrics.js';
import { waitFor } from '../test/helpers/frames.js';
import { startPostgres } from '../test/helpers/postgres-server.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { load, makeFrames } from './stream-frames.js';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '1000' },
    worker: { type: 'string' },
    'cpu-prof': { type: 'string' },
  },
});
const BATCH = Number(values.batch);

type Entries = Array<[Buffer, Buffer[]]>;
const read = async (redis: Redis, stream: string, group: string, name: string): Promise<Entries> => {
  const reply = (await redis.callBuffer('XREADGROUP', 'GROUP', group, name, 'COUNT', BATCH, 'STREAMS', stream, '>')) as Array<[Buffer, Entries]> | null;
  return reply?.[0]?.[1] ?? [];
};

/** One instance as the shared mode will run it: the stream consumer (read-ahead, claims) committing through PgIngest. Runs until killed. */
async function instance(args: { redisUrl: string; pgUrl: string; stream: string; name: string; secretHex: string }): Promise<void> {
  const env = { NANOGRIDATA_SECRET_10: args.secretHex, INGEST_STREAM: args.stream, INGEST_GROUP: 'g', INGEST_BATCH_SIZE: String(BATCH) };
  const consumer = new StreamConsumer({
    redis: new Redis(args.redisUrl),
    config: loadConfig(env).ingest,
    consumerName: args.name,
    pipeline: new PgIngest({ pool: openPostgres(args.pgUrl, { max: 4 }), decoder: new DecodePool(loadNanogridataConfig(env), pino({ level: 'silent' })) }),
    metrics: createMetrics(),
    logger: pino({ level: 'silent' }),
    claimIdleMs: 30_000,
  });
  await consumer.start();
  process.send?.('started');
}

if (values.worker) {
  await instance(JSON.parse(values.worker) as Parameters<typeof instance>[0]);
} else {
  await main();
}

async function main(): Promise<void> {
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
      // The frames are in the stream before the instances start, behind the group's position ($):
      // the instances start and warm up on one frame, then the group is moved back and the clock runs.
      await load(redis, stream, frames.slice(1));
      await redis.xgroup('CREATE', stream, 'g', '$');
      // The instances start (and warm up) on an empty stream; then the frames are added and timed.
      const children = Array.from({ length: instances }, (_, i) =>
        fork(new URL(import.meta.url).pathname, ['--batch', String(BATCH), '--worker', JSON.stringify({ redisUrl: redisServer.url, pgUrl, stream, name: `i${i}`, secretHex: secret.toString('hex') })], {
          execArgv: ['--import', 'tsx', ...(values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : [])],
        }),
      );
      await Promise.all(children.map((c) => new Promise<void>((resolve) => c.once('message', () => resolve()))));
      await load(redis, stream, frames.slice(0, 1));
      await waitFor(async () => (await pool.query<{ n: number }>('SELECT count(*) AS n FROM replay_fingerprints')).rows[0]!.n === 1, { what: 'warm-up frame' });
      t = performance.now();
      await redis.xgroup('SETID', stream, 'g', '0');
      await waitFor(async () => (await pool.query<{ n: number }>('SELECT count(*) AS n FROM replay_fingerprints')).rows[0]!.n === FRAMES, { what: 'every frame stored', timeoutMs: 600_000, intervalMs: 20 });
      const seconds = (performance.now() - t) / 1000;
      const n = FRAMES;
      for (const c of children) c.kill('SIGTERM');
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
}
