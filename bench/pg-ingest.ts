/**
 * Stream ingest end to end through the built service (`npm run bench:pg-ingest`): signed frames in
 * a Redis stream, drained by Ocean Core processes (dist/main.js, as `npm start` runs it) until every
 * entry is acknowledged, which each does only after its batch is committed. In one run, on the same
 * frames (levels 1 and 2, about three readings each, 1,000 devices):
 *
 *   - the baseline: a bare XREADGROUP + XACK drain;
 *   - one embedded instance (SQLite + DuckDB in a temp DATA_DIR);
 *   - one and two instances of the shared mode (DATABASE_URL) on one PostgreSQL, one stream group.
 *
 * Each run starts its instances on an empty group position ($) and warms them up on one frame; then
 * the group is moved back to the start of the stream and the clock runs until nothing is pending or
 * undelivered. A private redis-server and PostgreSQL are started. Options: --frames N (default
 * 200000), --batch N (INGEST_BATCH_SIZE, default 1000).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { stop } from '../test/helpers/child-process.js';
import { waitFor } from '../test/helpers/frames.js';
import { startPostgres } from '../test/helpers/postgres-server.js';
import { freePort, startRedis } from '../test/helpers/redis-server.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';
import { load, makeFrames } from './stream-frames.js';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '1000' },
  },
});
const FRAMES = Number(values.frames);
const BATCH = Number(values.batch);
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';

type Entries = Array<[Buffer, Buffer[]]>;

/** The group's entries not yet delivered (lag) and delivered but not acknowledged (pending). */
async function groupState(redis: Redis, stream: string): Promise<{ lag: number; pending: number }> {
  const groups = (await redis.call('XINFO', 'GROUPS', stream)) as unknown[][];
  const fields = new Map<string, unknown>();
  for (let i = 0; i < groups[0]!.length; i += 2) fields.set(String(groups[0]![i]), groups[0]![i + 1]);
  return { lag: Number(fields.get('lag')), pending: Number(fields.get('pending')) };
}

/** A service process on a free port, started until its consumer is connected. */
async function startInstance(env: Record<string, string>): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/main.js'], {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port), ADMIN_TOKEN, LOG_LEVEL: 'warn', INGEST_BATCH_SIZE: String(BATCH), ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitFor(
    async () => {
      try {
        const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { ingest?: { consumer_connected?: boolean } };
        return health.ingest?.consumer_connected === true;
      } catch {
        return false;
      }
    },
    { what: 'the instance serving with its consumer connected', timeoutMs: 60_000, intervalMs: 100 },
  );
  return child;
}

const redisServer = await startRedis();
const pgServer = await startPostgres();
const redis = new Redis(redisServer.url);
const dirs: Array<{ cleanup(): Promise<void> }> = [];
try {
  const secret = Buffer.alloc(32, 7);
  const { frames, records } = makeFrames(FRAMES, secret);
  console.log(`${FRAMES.toLocaleString('en')} frames (${records.toLocaleString('en')} readings), batches of ${BATCH}; the service as built (dist/)`);

  await load(redis, 'bare', frames);
  await redis.xgroup('CREATE', 'bare', 'g', '0');
  let t = performance.now();
  for (;;) {
    const reply = (await redis.callBuffer('XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', BATCH, 'STREAMS', 'bare', '>')) as Array<[Buffer, Entries]> | null;
    const entries = reply?.[0]?.[1] ?? [];
    if (entries.length === 0) break;
    await redis.xack('bare', 'g', ...entries.map(([id]) => id));
  }
  const bare = FRAMES / ((performance.now() - t) / 1000);
  console.log(`baseline: bare XREADGROUP + XACK        ${bare.toFixed(0).padStart(8)} frames/s`);

  const runs: Array<{ name: string; instances: number; shared: boolean }> = [
    { name: '1 embedded instance (SQLite + DuckDB)', instances: 1, shared: false },
    { name: '1 instance, shared mode (PostgreSQL)', instances: 1, shared: true },
    { name: '2 instances, shared mode (PostgreSQL)', instances: 2, shared: true },
  ];
  for (const run of runs) {
    const stream = `frames-${run.instances}-${run.shared ? 'pg' : 'embedded'}`;
    const databaseUrl = run.shared ? await pgServer.createDatabase() : undefined;
    // The frames are in the stream before the instances start, behind the group's position ($).
    await load(redis, stream, frames.slice(1));
    await redis.xgroup('CREATE', stream, 'g', '$');
    const children = await Promise.all(
      Array.from({ length: run.instances }, async (_, i) => {
        const dir = await makeTempDir('ocean-bench-');
        dirs.push(dir);
        return startInstance({
          REDIS_URL: redisServer.url,
          INGEST_STREAM: stream,
          INGEST_GROUP: 'g',
          INGEST_CONSUMER: `i${i}`,
          DATA_DIR: dir.path,
          NANOGRIDATA_SECRET_10: secret.toString('hex'),
          ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
        });
      }),
    );
    // Warm-up: one frame through; then every frame from the start of the stream (the warm-up frame again: a replay).
    await load(redis, stream, frames.slice(0, 1));
    await waitFor(async () => Object.values(await groupState(redis, stream)).every((n) => n === 0), { what: 'warm-up frame', timeoutMs: 60_000 });
    t = performance.now();
    await redis.xgroup('SETID', stream, 'g', '0');
    await waitFor(
      async () => {
        const { lag, pending } = await groupState(redis, stream);
        return lag === 0 && pending === 0;
      },
      { what: 'every entry acknowledged', timeoutMs: 600_000, intervalMs: 20 },
    );
    const seconds = (performance.now() - t) / 1000;
    await Promise.all(children.map((c) => stop(c, { signal: 'SIGTERM' })));
    console.log(`${run.name.padEnd(40)} ${(FRAMES / seconds).toFixed(0).padStart(8)} frames/s  (${(FRAMES / seconds / bare).toFixed(3)} × baseline)`);
  }
} finally {
  redis.disconnect();
  await pgServer.stop();
  await redisServer.stop();
  for (const d of dirs) await d.cleanup();
}
