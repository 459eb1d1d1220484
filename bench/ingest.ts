/**
 * Ingest benchmark (`npm run bench:ingest`): N signed frames (levels 1 and 2, about three records
 * each, 1,000 devices) pre-loaded into a private Redis stream, drained by Ocean Core (the compiled
 * service, `node dist/main.js`, as production runs it) until every record is queryable in DuckDB.
 * The baseline, in the same run: a bare XREADGROUP + XACK drain of an identical stream.
 *
 * Prints per run: frames/s, records/s, the ratio to the baseline, the service's RSS (idle at start,
 * peak during the drain, idle after the drain and freshness phases), CPU per frame of the service
 * and of Redis, the p99 of GET /api/ocean/users/:id measured while the drain runs flat out, and
 * freshness: after the drain, with the service otherwise idle, 20 frames/s for one sensor and the
 * time from each XADD's reply until GET analytics/sensor/:id/stats counts the frame's records.
 * With --runs N, the medians of N runs.
 *
 * Options: --frames N (default 1000000), --batch N (INGEST_BATCH_SIZE, default 1000), --runs N
 * (default 3), --fresh-seconds N (length of the freshness phase, default 15; 0 skips it),
 * --env K=V,K=V (extra service environment, for experiments), --cpu-prof DIR (profile the drain).
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { encodeFrame, pressurePayload } from '../src/nanogridata/encoder.js';
import { load, makeFrames } from './stream-frames.js';
import { pressureSecret, waitFor } from '../test/helpers/frames.js';
import { freePort, startRedis } from '../test/helpers/redis-server.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '1000000' },
    batch: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '3' },
    'fresh-seconds': { type: 'string', default: '15' },
    env: { type: 'string', default: '' },
    'cpu-prof': { type: 'string' },
  },
});
const FRAMES = Number(values.frames);
const BATCH = Number(values.batch);
const RUNS = Number(values.runs);
const FRESH_SECONDS = Number(values['fresh-seconds']);
const FRESH_RATE = 20; // frames/s in the freshness phase
const FRESH_TIMEOUT_MS = 5000; // a frame not visible this long after its XADD is a miss (and the bench moves on)
const FRESH_SENSOR = 'FRESH-1'; // not one of the drain's P-0…P-999, so its count starts at 0
const IDLE_AFTER_MS = 5000; // quiet time before the idle RSS after the work
const EXTRA_ENV = Object.fromEntries(values.env.split(',').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const ROOT = new URL('../', import.meta.url).pathname;
const ADMIN = 'bench-admin-token-0123456789';
const TICKS = 100; // clock ticks per second in /proc/<pid>/stat (USER_HZ)

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
  rssStart: number;
  rssPeak: number;
  rssIdle: number;
  serviceCpuUsPerFrame: number;
  redisCpuUsPerFrame: number;
  p99: number;
  p50: number;
  probes: number;
  fresh: Freshness;
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

interface Freshness {
  /** ms from each frame's XADD reply until a stats answer counted it; misses excluded. */
  latencies: number[];
  frames: number;
  misses: number;
  /** Stats requests made, and those that failed (non-200, network error or over 10 s). */
  polls: number;
  pollErrors: number;
  /** Each stats request's round trip, ms: how much of a latency the poll itself can be. */
  pollMs: number[];
}

/**
 * Freshness: FRESH_RATE frames/s for FRESH_SECONDS, each one signed frame of 1–3 records for
 * FRESH_SENSOR, XADDed on a fixed schedule; a single poller asks GET analytics/sensor/:id/stats
 * back-to-back (the next request as soon as the previous answers, no sleep) while any frame is
 * unseen. A frame is seen by the first answer whose count reaches the records XADDed up to and
 * including it; its latency runs from its XADD's reply to that answer's arrival, so it includes up
 * to one poll's round trip. The poller is itself load on the service (a DuckDB query per request,
 * one after another), so these figures are for a service that also answers those queries; it
 * pauses when every frame is seen. One sensor's count cannot tell frames apart, so this assumes
 * they become visible in stream order (the consumer reads, and the store commits, in that order).
 */
async function freshness(redis: Redis, stream: string, base: string, secret: Buffer): Promise<Freshness> {
  const statsUrl = `${base}/api/ocean/analytics/sensor/${FRESH_SENSOR}/stats`;
  const headers = { authorization: `Bearer ${ADMIN}` };
  let polls = 0;
  let pollErrors = 0;
  const pollMs: number[] = [];
  const count = async (): Promise<number | undefined> => {
    polls++;
    try {
      const t0 = performance.now();
      const res = await fetch(statsUrl, { headers, signal: AbortSignal.timeout(10_000) });
      const body = await res.text();
      pollMs.push(performance.now() - t0);
      if (res.status === 200) return (JSON.parse(body) as { count: number }).count;
    } catch {
      // counted below; the frames' own timeouts keep the phase bounded
    }
    pollErrors++;
    return undefined;
  };
  const start = await count();
  if (start === undefined) throw new Error('freshness: the stats route did not answer');
  const total = Math.round(FRESH_SECONDS * FRESH_RATE);
  /** Frames XADDed and not yet seen or missed: the count that shows each, and its XADD reply time. */
  const pending: Array<{ expected: number; at: number }> = [];
  const latencies: number[] = [];
  let misses = 0;
  let produced = false;
  let wake: (() => void) | undefined;

  const produce = async () => {
    let expected = start;
    const t0 = performance.now();
    for (let i = 0; i < total; i++) {
      const delay = t0 + (i * 1000) / FRESH_RATE - performance.now();
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      // Encoded now: the header's timestamp must be within the drift window of the service's clock.
      const now = Date.now() / 1000;
      const n = 1 + (i % 3);
      const entries = Array.from({ length: n }, (_, k) => ({ ts: now + k / 1000, value: 200_000 + i * 3 + k }));
      const frame = encodeFrame({ modelId: 0x10, level: 1, timestamp: Math.floor(now), secret, payload: pressurePayload({ deviceId: FRESH_SENSOR, labId: 'LAB-1', entries }) });
      await redis.xadd(stream, '*', 'frame', frame);
      expected += n;
      pending.push({ expected, at: performance.now() });
      wake?.();
    }
    produced = true;
    wake?.();
  };

  const poll = async () => {
    while (!produced || pending.length > 0) {
      if (pending.length === 0) {
        // Nothing unseen: wait for the next XADD rather than query for nothing.
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      const c = await count();
      const now = performance.now();
      while (pending.length > 0) {
        const p = pending[0]!;
        if (c !== undefined && c >= p.expected) latencies.push(now - p.at);
        else if (now - p.at > FRESH_TIMEOUT_MS) misses++;
        else break;
        pending.shift();
      }
    }
  };

  await Promise.all([produce(), poll()]);
  return { latencies, frames: total, misses, polls, pollErrors, pollMs };
}

/** Milliseconds (a tenth below 100); a dash when there is no figure (no frame seen). */
const ms = (x: number) => (!Number.isFinite(x) ? '–' : x < 100 ? x.toFixed(1) : x.toFixed(0));

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

async function run(frames: Buffer[], secret: Buffer, secretEnv: Record<string, string>): Promise<RunResult> {
  const server = await startRedis();
  const redis = new Redis(server.url);
  const { path: dataDir, cleanup: removeDataDir } = await makeTempDir('ocean-bench-ingest-');
  try {
    await load(redis, 'bench:bare', frames);
    const bare = await bareDrain(redis, 'bench:bare', frames.length);
    await redis.del('bench:bare');
    const port = await freePort();
    const env = { ...process.env, ...secretEnv, PORT: String(port), DATA_DIR: dataDir, ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'warn', ...EXTRA_ENV };
    // First without Redis: the idle service at start (RSS), a user to probe, then the same data dir with the stream.
    const idle = spawn(process.execPath, ['dist/main.js'], { cwd: ROOT, env, stdio: 'inherit' });
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${base}/health`).catch(() => undefined))?.ok, { timeoutMs: 60_000, intervalMs: 50 });
    const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    const user = (await (await fetch(`${base}/api/ocean/users`, { method: 'POST', headers: admin, body: JSON.stringify({ username: 'bench', email: 'bench@example.com' }) })).json()) as { id: string };
    const session = (await (await fetch(`${base}/api/ocean/sessions/create`, { method: 'POST', headers: admin, body: JSON.stringify({ user_id: user.id, username: 'bench' }) })).json()) as { token: string };
    await new Promise((r) => setTimeout(r, 3000));
    const rssStart = procStatus(idle.pid!, 'VmRSS');
    idle.kill('SIGTERM');
    await new Promise((r) => idle.once('exit', r));

    const lastId = await load(redis, 'bench:frames', frames);
    const redisCpu0 = await redisCpu(redis);
    // --cpu-prof DIR: a CPU profile of every thread of the draining service (bench/profile-top.ts reads them).
    const profile = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']] : [];
    const child = spawn(process.execPath, [...profile, 'dist/main.js'], { cwd: ROOT, env: { ...env, REDIS_URL: server.url, INGEST_STREAM: 'bench:frames', INGEST_BATCH_SIZE: String(BATCH) }, stdio: 'inherit' });
    try {
      const status = async () => {
        const res = await fetch(`${base}/api/ocean/status`, { headers: { authorization: `Bearer ${ADMIN}` } }).catch(() => undefined);
        return res?.ok ? ((await res.json()) as { ingest: { committer: { position: string | null } } }) : undefined;
      };
      await waitFor(async () => (await fetch(`${base}/health`).catch(() => undefined))?.ok, { timeoutMs: 60_000, intervalMs: 20 });
      // The clock starts when the service answers: its start-up (worker threads, stores) is not ingest.
      const started = performance.now();
      const cpu0 = cpuSeconds(child.pid!);
      let done = false;
      const probing = probeHttp(port, user.id, session.token, () => done);
      // The last entry's batch committed: every record is queryable (the commit is one DuckDB transaction).
      await waitFor(async () => (await status())?.ingest.committer.position === lastId, { timeoutMs: 900_000, intervalMs: 20, what: 'all frames in DuckDB' });
      const seconds = (performance.now() - started) / 1000;
      done = true;
      const latencies = await probing;
      const serviceCpu = cpuSeconds(child.pid!) - cpu0;
      const redisCpuUsPerFrame = (((await redisCpu(redis)) - redisCpu0) / frames.length) * 1e6;
      // The drain's peak: read before the freshness phase, though that phase is far lighter.
      const rssPeak = procStatus(child.pid!, 'VmHWM');
      const stats = (await redis.info('commandstats'))
        .split('\n')
        .map((l) => /cmdstat_(\w+):calls=(\d+),usec=(\d+)/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ command: m[1]!, calls: Number(m[2]), usec: Number(m[3]) }))
        .sort((a, b) => b.usec - a.usec)
        .slice(0, 6);
      console.log(`      Redis time by command: ${stats.map((c) => `${c.command} ${((c.usec / frames.length)).toFixed(1)} µs/frame (${c.calls} calls)`).join(', ')}`);
      const fresh = FRESH_SECONDS > 0 ? await freshness(redis, 'bench:frames', base, secret) : { latencies: [], frames: 0, misses: 0, polls: 0, pollErrors: 0, pollMs: [] };
      // What the service keeps once the work is done: RSS after a quiet spell (no requests, no frames).
      await new Promise((r) => setTimeout(r, IDLE_AFTER_MS));
      const rssIdle = procStatus(child.pid!, 'VmRSS');
      if (FRESH_SECONDS > 0) {
        console.log(`      freshness: ${fresh.frames} frames for ${FRESH_SENSOR}, ${fresh.misses} not visible within ${FRESH_TIMEOUT_MS / 1000} s; ${fresh.polls} stats requests (${fresh.pollErrors} failed), each p50 ${percentile(fresh.pollMs, 0.5).toFixed(1)} ms, p99 ${percentile(fresh.pollMs, 0.99).toFixed(1)} ms`);
      }
      return {
        bare,
        seconds,
        rssStart,
        rssPeak,
        rssIdle,
        serviceCpuUsPerFrame: (serviceCpu / frames.length) * 1e6,
        redisCpuUsPerFrame,
        p99: percentile(latencies, 0.99),
        p50: percentile(latencies, 0.5),
        probes: latencies.length,
        fresh,
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
/** Columns, each right-aligned under its header (values wider than their header push the line). */
const columns: Array<[header: string, value: (r: RunResult, run: number) => string]> = [
  ['run', (_, run) => String(run)],
  ['bare fr/s', (r) => String(Math.round(FRAMES / r.bare))],
  ['service fr/s', (r) => String(Math.round(FRAMES / r.seconds))],
  ['records/s', (r) => String(Math.round(records / r.seconds))],
  ['ratio', (r) => (r.bare / r.seconds).toFixed(2)],
  ['RSS MB start/peak/idle', (r) => `${r.rssStart.toFixed(0)}/${r.rssPeak.toFixed(0)}/${r.rssIdle.toFixed(0)}`],
  ['CPU µs/fr svc+redis', (r) => `${r.serviceCpuUsPerFrame.toFixed(1)}+${r.redisCpuUsPerFrame.toFixed(1)}`],
  ['users/:id ms p50/p99 (probes)', (r) => `${r.p50.toFixed(1)}/${r.p99.toFixed(1)} (${r.probes})`],
  ['fresh ms p50/p99/max (misses)', (r) => `${ms(percentile(r.fresh.latencies, 0.5))}/${ms(percentile(r.fresh.latencies, 0.99))}/${ms(Math.max(...r.fresh.latencies))} (${r.fresh.misses}/${r.fresh.frames})`],
];
const row = (cells: string[]) => '  ' + cells.map((c, i) => c.padStart(columns[i]![0].length)).join('  ');
console.log(row(columns.map(([h]) => h)));
const results: RunResult[] = [];
for (let i = 0; i < RUNS; i++) {
  const r = await run(frames, secret, secretEnv);
  results.push(r);
  console.log(row(columns.map(([, value]) => value(r, i + 1))));
}
const fps = median(results.map((r) => FRAMES / r.seconds));
const bare = median(results.map((r) => FRAMES / r.bare));
const rss = Math.max(...results.map((r) => r.rssPeak));
const p99 = median(results.map((r) => r.p99));
const fresh = (f: (r: RunResult) => number) => ms(median(results.map(f)));
console.log(
  `\nmedians: ${Math.round(fps)} frames/s (target ≥ 60,000), ${(median(results.map((r) => r.bare / r.seconds))).toFixed(2)}× the bare drain of ${Math.round(bare)} (target ≥ 0.4); ` +
    `users/:id p99 ${p99.toFixed(1)} ms during the drain (target ≤ 20)\n` +
    `         RSS: ${median(results.map((r) => r.rssStart)).toFixed(0)} MB idle at start, peak ${rss.toFixed(0)} MB at most (target ≤ 200; idle ≤ 120), ` +
    `${median(results.map((r) => r.rssIdle)).toFixed(0)} MB idle after the work\n` +
    (FRESH_SECONDS > 0
      ? `         freshness (${FRESH_RATE} frames/s for ${FRESH_SECONDS} s after the drain): p50 ${fresh((r) => percentile(r.fresh.latencies, 0.5))} ms, ` +
        `p99 ${fresh((r) => percentile(r.fresh.latencies, 0.99))} ms, max ${fresh((r) => Math.max(...r.fresh.latencies))} ms (target p99 ≤ 20); ` +
        `${results.reduce((n, r) => n + r.fresh.misses, 0)} of ${results.reduce((n, r) => n + r.fresh.frames, 0)} frames not visible within ${FRESH_TIMEOUT_MS / 1000} s`
      : '         freshness: skipped (--fresh-seconds 0)'),
);
