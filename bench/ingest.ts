/**
 * Ingest benchmark (`npm run bench:ingest`): 200,000 signed frames pre-loaded into a private Redis
 * stream, drained by Ocean Core (a child process: decode → SQLite buffer → DuckDB) until every
 * record is in DuckDB; as the baseline, in the same run, a bare XREADGROUP + XACK drain of an
 * identical stream. Prints frames/s, records/s, the ratio to the baseline and the service's peak RSS.
 * The service is the compiled build (`npm run build` runs first), as `npm start` and the image run it.
 *
 * Options: --frames N (default 200000), --batch N (INGEST_BATCH_SIZE, default 1000).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { pressureFrames, pressureSecret, waitFor } from '../test/helpers/frames.js';
import { freePort, startRedis } from '../test/helpers/redis-server.js';

const { values } = parseArgs({ options: { frames: { type: 'string', default: '200000' }, batch: { type: 'string', default: '1000' } } });
const FRAMES = Number(values.frames);
const BATCH = Number(values.batch);
const ROOT = new URL('../', import.meta.url).pathname;

async function load(redis: Redis, stream: string, frames: Buffer[]): Promise<void> {
  for (let i = 0; i < frames.length; i += 2000) {
    const pipeline = redis.pipeline();
    for (const frame of frames.slice(i, i + 2000)) pipeline.xadd(stream, '*', 'frame', frame);
    await pipeline.exec();
  }
}

/** The baseline: the least any consumer must do — read a batch, acknowledge it. */
async function bareDrain(redis: Redis, stream: string, total: number): Promise<number> {
  await redis.xgroup('CREATE', stream, 'bare', '0');
  const started = performance.now();
  let seen = 0;
  while (seen < total) {
    const reply = (await redis.callBuffer('XREADGROUP', 'GROUP', 'bare', 'c', 'COUNT', BATCH, 'STREAMS', stream, '>')) as
      | Array<[Buffer, Array<[Buffer, Buffer[]]>]>
      | null;
    const entries = reply?.[0]?.[1] ?? [];
    if (entries.length === 0) break;
    await redis.xack(stream, 'bare', ...entries.map(([id]) => id));
    seen += entries.length;
  }
  return (performance.now() - started) / 1000;
}

const peakRssMb = (pid: number) => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

async function serviceDrain(redisUrl: string, stream: string, secretEnv: Record<string, string>) {
  const dataDir = await mkdtemp(join(tmpdir(), 'ocean-bench-ingest-'));
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : []), 'dist/main.js'], {
    cwd: ROOT,
    env: { ...process.env, ...secretEnv, PORT: String(port), DATA_DIR: dataDir, REDIS_URL: redisUrl, INGEST_STREAM: stream, INGEST_BATCH_SIZE: String(BATCH), ADMIN_TOKEN: 'bench-admin-token-0123456789', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const status = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/api/ocean/status`).catch(() => undefined);
    return res?.ok ? ((await res.json()) as { telemetry_buffer: { rows: number; unprocessed: number } }) : undefined;
  };
  try {
    // The consumer starts reading as soon as the service is up; the clock starts at spawn.
    const started = performance.now();
    await waitFor(async () => {
      const s = await status();
      return s !== undefined && s.telemetry_buffer.rows === FRAMES && s.telemetry_buffer.unprocessed === 0;
    }, { timeoutMs: 600_000, intervalMs: 20, what: 'all frames in DuckDB' });
    const seconds = (performance.now() - started) / 1000;
    const rss = peakRssMb(child.pid!);
    const startup = await measureStartup(secretEnv);
    return { seconds, rss, startup };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Time from spawn to a healthy /health with nothing to ingest, subtracted from the drain time. */
async function measureStartup(secretEnv: Record<string, string>): Promise<number> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ocean-bench-start-'));
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: ROOT,
    env: { ...process.env, ...secretEnv, PORT: String(port), DATA_DIR: dataDir, ADMIN_TOKEN: 'bench-admin-token-0123456789', LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.ok, { timeoutMs: 60_000, intervalMs: 20 });
    return (performance.now() - started) / 1000;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(dataDir, { recursive: true, force: true });
  }
}

// The service runs as in production: compiled, `node dist/main.js`.
execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
const server = await startRedis();
const redis = new Redis(server.url);
try {
  const { secret, env: secretEnv } = pressureSecret();
  console.log(`generating ${FRAMES} level-1 pressure frames…`);
  const { frames, records } = pressureFrames({ count: FRAMES, devices: 1000, secret });
  await load(redis, 'bench:bare', frames);
  await load(redis, 'bench:frames', frames);
  const bare = await bareDrain(redis, 'bench:bare', FRAMES);
  const service = await serviceDrain(server.url, 'bench:frames', secretEnv);
  const drain = service.seconds - service.startup;
  const fps = FRAMES / drain;
  const rows = [
    { case: 'bare XREADGROUP+XACK (baseline)', seconds: bare.toFixed(2), 'frames/s': Math.round(FRAMES / bare), 'records/s': '', ratio: '1.00', 'peak RSS MB': '' },
    {
      case: 'Ocean Core → SQLite → DuckDB',
      seconds: drain.toFixed(2),
      'frames/s': Math.round(fps),
      'records/s': Math.round(records / drain),
      ratio: (fps / (FRAMES / bare)).toFixed(2),
      'peak RSS MB': service.rss.toFixed(0),
    },
  ];
  console.table(rows);
  console.log(`(service time excludes its start-up of ${service.startup.toFixed(2)} s, measured separately; batch ${BATCH})`);
} finally {
  redis.disconnect();
  await server.stop();
}
