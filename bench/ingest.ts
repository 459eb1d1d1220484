/**
 * Ingest benchmark (`npm run bench:ingest`): N signed frames (levels 1 and 2, about three records
 * each, 1,000 devices) pre-loaded into a private Redis stream, drained by Ocean Core (the compiled
 * service, `node dist/main.js`, as production runs it) until every record is queryable in DuckDB.
 * The baseline, in the same run: a bare XREADGROUP + XACK drain of an identical stream.
 *
 * Prints per run: frames/s, records/s, the ratio to the baseline, the service's peak and idle RSS,
 * CPU per frame of the service and of Redis, and the p99 of GET /api/ocean/users/:id measured
 * while the drain runs flat out. With --runs N, the medians of N runs.
 *
 * Options: --frames N (default 1000000), --batch N (INGEST_BATCH_SIZE, default 1000), --runs N
 * (default 3), --env K=V,K=V (extra service environment, for experiments).
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { encodeFrame, pressurePayload } from '../src/nanogridata/encoder.js';
import { pressureSecret, waitFor } from '../test/helpers/frames.js';
import { freePort, startRedis } from '../test/helpers/redis-server.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '1000000' },
    batch: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '3' },
    env: { type: 'string', default: '' },
  },
});
const FRAMES = Number(values.frames);
const BATCH = Number(values.batch);
const RUNS = Number(values.runs);
const EXTRA_ENV = Object.fromEntries(values.env.split(',').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const ROOT = new URL('../', import.meta.url).pathname;
const ADMIN = 'bench-admin-token-0123456789';
const TICKS = 100; // clock ticks per second in /proc/<pid>/stat (USER_HZ)

/** Frames of 1 to 5 entries (3 on average), levels 1 and 2 alternately, 1,000 devices, all in the drift window. */
function makeFrames(count: number, secret: Buffer): { frames: Buffer[]; records: number } {
  const now = Math.floor(Date.now() / 1000);
  const frames: Buffer[] = [];
  let records = 0;
  for (let i = 0; i < count; i++) {
    const n = 1 + (i % 5);
    const entries = Array.from({ length: n }, (_, k) => ({ ts: now - 60 + (i % 60) + k / 10, value: 100_000 + i * 3 + k }));
    frames.push(encodeFrame({ modelId: 0x10, level: 1 + (i % 2), timestamp: now, secret, payload: pressurePayload({ deviceId: `P-${i % 1000}`, labId: 'LAB-1', entries }) }));
    records += n;
  }
  return { frames, records };
}

async function load(redis: Redis, stream: string, frames: Buffer[]): Promise<void> {
  for (let i = 0; i < frames.length; i += 5000) {
    const pipeline = redis.pipeline();
    for (const frame of frames.slice(i, i + 5000)) pipeline.xadd(stream, '*', 'frame', frame);
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

const procStatus = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
/** CPU seconds (user + system) of a process, all its threads. */
const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
};
const redisCpu = async (redis: Redis) => {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
};

interface RunResult {
  bare: number;
  seconds: number;
  rssPeak: number;
  rssIdle: number;
  serviceCpuUsPerFrame: number;
  redisCpuUsPerFrame: number;
  p99: number;
  p50: number;
  probes: number;
}

/** GET users/:id again and again, as a user of the API would, while the drain runs: latencies in ms. */
async function probeHttp(port: number, userId: string, token: string, until: () => boolean): Promise<number[]> {
  const latencies: number[] = [];
  while (!until()) {
    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}/api/ocean/users/${userId}`, { headers: { authorization: `Bearer ${token}` } });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`users/:id answered ${res.status}`);
    latencies.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 20));
  }
  return latencies;
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

async function run(frames: Buffer[], secretEnv: Record<string, string>): Promise<RunResult> {
  const server = await startRedis();
  const redis = new Redis(server.url);
  const { path: dataDir, cleanup: removeDataDir } = await makeTempDir('ocean-bench-ingest-');
  try {
    await load(redis, 'bench:bare', frames);
    const bare = await bareDrain(redis, 'bench:bare', frames.length);
    await redis.del('bench:bare');
    const port = await freePort();
    const env = { ...process.env, ...secretEnv, PORT: String(port), DATA_DIR: dataDir, ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'warn', ...EXTRA_ENV };
    // First without Redis: the idle service (RSS), a user to probe, then the same data dir with the stream.
    const idle = spawn(process.execPath, ['dist/main.js'], { cwd: ROOT, env, stdio: 'inherit' });
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${base}/health`).catch(() => undefined))?.ok, { timeoutMs: 60_000, intervalMs: 50 });
    const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    const user = (await (await fetch(`${base}/api/ocean/users`, { method: 'POST', headers: admin, body: JSON.stringify({ username: 'bench', email: 'bench@example.com' }) })).json()) as { id: string };
    const session = (await (await fetch(`${base}/api/ocean/sessions/create`, { method: 'POST', headers: admin, body: JSON.stringify({ user_id: user.id, username: 'bench' }) })).json()) as { token: string };
    await new Promise((r) => setTimeout(r, 3000));
    const rssIdle = procStatus(idle.pid!, 'VmRSS');
    idle.kill('SIGTERM');
    await new Promise((r) => idle.once('exit', r));

    await load(redis, 'bench:frames', frames);
    const redisCpu0 = await redisCpu(redis);
    const child = spawn(process.execPath, ['dist/main.js'], { cwd: ROOT, env: { ...env, REDIS_URL: server.url, INGEST_STREAM: 'bench:frames', INGEST_BATCH_SIZE: String(BATCH) }, stdio: 'inherit' });
    try {
      const status = async () => {
        const res = await fetch(`${base}/api/ocean/status`, { headers: { authorization: `Bearer ${ADMIN}` } }).catch(() => undefined);
        return res?.ok ? ((await res.json()) as { telemetry_buffer: { rows: number; unprocessed: number } }) : undefined;
      };
      await waitFor(async () => (await fetch(`${base}/health`).catch(() => undefined))?.ok, { timeoutMs: 60_000, intervalMs: 20 });
      // The clock starts when the service answers: its start-up (worker threads, stores) is not ingest.
      const started = performance.now();
      const cpu0 = cpuSeconds(child.pid!);
      let done = false;
      const probing = probeHttp(port, user.id, session.token, () => done);
      await waitFor(async () => {
        const s = await status();
        return s !== undefined && s.telemetry_buffer.rows === frames.length && s.telemetry_buffer.unprocessed === 0;
      }, { timeoutMs: 900_000, intervalMs: 20, what: 'all frames in DuckDB' });
      const seconds = (performance.now() - started) / 1000;
      done = true;
      const latencies = await probing;
      const serviceCpu = cpuSeconds(child.pid!) - cpu0;
      const stats = (await redis.info('commandstats'))
        .split('\n')
        .map((l) => /cmdstat_(\w+):calls=(\d+),usec=(\d+)/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ command: m[1]!, calls: Number(m[2]), usec: Number(m[3]) }))
        .sort((a, b) => b.usec - a.usec)
        .slice(0, 6);
      console.log(`      Redis time by command: ${stats.map((c) => `${c.command} ${((c.usec / frames.length)).toFixed(1)} µs/frame (${c.calls} calls)`).join(', ')}`);
      return {
        bare,
        seconds,
        rssPeak: procStatus(child.pid!, 'VmHWM'),
        rssIdle,
        serviceCpuUsPerFrame: (serviceCpu / frames.length) * 1e6,
        redisCpuUsPerFrame: (((await redisCpu(redis)) - redisCpu0) / frames.length) * 1e6,
        p99: percentile(latencies, 0.99),
        p50: percentile(latencies, 0.5),
        probes: latencies.length,
      };
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  } finally {
    redis.disconnect();
    await server.stop();
    await removeDataDir();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

// The service runs as in production: compiled, `node dist/main.js`.
execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
const { secret, env: secretEnv } = pressureSecret();
console.log(`generating ${FRAMES} frames (levels 1 and 2, 1–5 entries, 1,000 devices)…`);
const { frames, records } = makeFrames(FRAMES, secret);
console.log(`bench:ingest — ${FRAMES} frames, ${records} records, batch ${BATCH}, ${RUNS} run(s)${Object.keys(EXTRA_ENV).length ? `, env ${values.env}` : ''}`);
console.log('  run  bare fr/s   service fr/s   records/s  ratio  RSS peak/idle MB  CPU µs/frame svc+redis  users/:id p50/p99 ms');
const results: RunResult[] = [];
for (let i = 0; i < RUNS; i++) {
  const r = await run(frames, secretEnv);
  results.push(r);
  const fps = FRAMES / r.seconds;
  console.log(
    `  ${String(i + 1).padStart(3)} ${Math.round(FRAMES / r.bare).toString().padStart(10)} ${Math.round(fps).toString().padStart(14)} ${Math.round(records / r.seconds).toString().padStart(11)} ` +
      `${(fps / (FRAMES / r.bare)).toFixed(2).padStart(6)} ${r.rssPeak.toFixed(0).padStart(9)}/${r.rssIdle.toFixed(0).padEnd(6)} ` +
      `${r.serviceCpuUsPerFrame.toFixed(1).padStart(12)}+${r.redisCpuUsPerFrame.toFixed(1).padEnd(8)} ${r.p50.toFixed(1).padStart(8)}/${r.p99.toFixed(1)} (${r.probes} probes)`,
  );
}
const fps = median(results.map((r) => FRAMES / r.seconds));
const bare = median(results.map((r) => FRAMES / r.bare));
const rss = Math.max(...results.map((r) => r.rssPeak));
const p99 = median(results.map((r) => r.p99));
console.log(
  `\nmedians: ${Math.round(fps)} frames/s (target ≥ 50,000), ${(median(results.map((r) => FRAMES / r.seconds / (FRAMES / r.bare)))).toFixed(2)}× the bare drain of ${Math.round(bare)} (target ≥ 0.30); ` +
    `peak RSS ${rss.toFixed(0)} MB at most (target ≤ 200), idle ${median(results.map((r) => r.rssIdle)).toFixed(0)} MB; users/:id p99 ${p99.toFixed(1)} ms during the drain (target ≤ 20)`,
);
