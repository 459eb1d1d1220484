/**
 * Sensor simulator: pushes signed frames from a simulated fleet at a steady total rate, for a
 * bounded time, to the Redis ingest stream (pipelined XADD) or to the HTTP frames endpoint
 * (several concatenated frames per request). Used by `npm run simulate`, tests and the demo.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createFleet, modelsOf, mulberry32, nextFrame } from './simulated-sensors.js';
import type { SimProfile } from './simulated-sensors.js';

export interface SimulationOptions {
  /** `redis://…` (XADD to `stream`) or `http(s)://…` (POST /api/ocean/telemetry/frames). */
  target: string;
  sensors: number;
  /** Frames per second, all sensors together. */
  rate: number;
  durationS: number;
  profile?: SimProfile;
  /** Security level 0–3 (default 1). */
  level?: number;
  /** Redis stream (default ocean:frames). */
  stream?: string;
  /** Per-model secrets; every model of the profile needs one when level > 0. */
  secrets: ReadonlyMap<number, Buffer>;
  /** Frames per pipeline (Redis) or per request (HTTP); default 50. */
  batchSize?: number;
  seed?: number;
  signal?: AbortSignal;
  /** Called about once a second while running. */
  onProgress?: (p: SimulationProgress) => void;
}

export interface SimulationProgress {
  elapsedS: number;
  sent: number;
  errors: number;
  /** Frames per second delivered since the previous report. */
  rate: number;
}

export interface SimulationSummary {
  target: 'redis' | 'http';
  /** The target with any password masked. */
  url: string;
  stream?: string;
  profile: SimProfile;
  level: number;
  sensors: number;
  /** Frames the target took (XADD answered with an id; HTTP 2xx). */
  sent: number;
  /** Frames that did not get there (command error, HTTP error status, network failure). */
  errors: number;
  /** HTTP only: what the service answered about the frames it took. */
  accepted?: number;
  rejected?: number;
  /** HTTP only: rejected frames by reason (`bad_mac`, `replay`, …), when any were. */
  rejectedReasons?: Record<string, number>;
  elapsedS: number;
  /** Frames sent per second over the run. */
  rate: number;
  firstError?: string;
}

/** Options that cannot work (missing secret, bad target): raised before anything is sent. */
export class SimulationSetupError extends Error {}

interface SendOutcome {
  ok: number;
  failed: number;
  accepted?: number;
  /** Frames the service refused, counted by reason. */
  rejected?: Record<string, number>;
  error?: string;
}

interface Sink {
  send(frames: Buffer[]): Promise<SendOutcome>;
  close(): Promise<void>;
}

async function redisSink(url: string, stream: string): Promise<Sink> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5000 });
  let lastError: string | undefined;
  redis.on('error', (err: Error) => {
    lastError = err.message; // reported through failed sends; ioredis reconnects by itself
  });
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot connect to ${maskUrl(url)}: ${lastError ?? (err as Error).message}`, { cause: err });
  }
  return {
    async send(frames) {
      const pipeline = redis.pipeline();
      for (const frame of frames) pipeline.xadd(stream, '*', 'frame', frame);
      try {
        const replies = (await pipeline.exec()) ?? [];
        const failed = replies.filter(([err]) => err !== null);
        return {
          ok: frames.length - failed.length,
          failed: failed.length,
          error: failed[0]?.[0]?.message,
        };
      } catch (err) {
        return { ok: 0, failed: frames.length, error: (err as Error).message };
      }
    },
    async close() {
      // QUIT flushes what is in flight; a dead server must not hold the simulator open, hence the bound.
      const timer = new AbortController();
      await Promise.race([
        redis.quit().catch(() => undefined),
        sleep(2000, undefined, { signal: timer.signal }).catch(() => undefined),
      ]);
      timer.abort();
      redis.disconnect();
    },
  };
}

function countReasons(reasons: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of reasons) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

function httpSink(base: string): Sink {
  const url = `${base.replace(/\/+$/, '')}/api/ocean/telemetry/frames`;
  return {
    async send(frames) {
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream' },
          body: Buffer.concat(frames),
        });
        const text = await res.text();
        if (!res.ok) return { ok: 0, failed: frames.length, error: `HTTP ${res.status} ${text.slice(0, 200)}` };
        const outcome: SendOutcome = { ok: frames.length, failed: 0 };
        try {
          const body = JSON.parse(text) as { accepted?: unknown; rejected?: Array<{ reason?: unknown }>; rejected_by_reason?: Record<string, number> };
          if (typeof body.accepted === 'number') outcome.accepted = body.accepted;
          // The counts by reason cover every rejected frame; `rejected` lists only the first few.
          if (body.rejected_by_reason && typeof body.rejected_by_reason === 'object') outcome.rejected = body.rejected_by_reason;
          else if (Array.isArray(body.rejected)) outcome.rejected = countReasons(body.rejected.map((r) => String(r.reason)));
        } catch {
          // a 2xx without the expected JSON still delivered the frames
        }
        return outcome;
      } catch (err) {
        // fetch reports "fetch failed" and puts the reason (ECONNREFUSED, a reset, …) in `cause`.
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        const detail = cause?.code ?? cause?.message;
        return { ok: 0, failed: frames.length, error: `${(err as Error).message}${detail ? ` (${detail})` : ''}` };
      }
    },
    async close() {},
  };
}

/** The target as it may be printed: a password in it (redis://:pw@host) is replaced by ***. */
export function maskUrl(target: string): string {
  try {
    const u = new URL(target);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    // Not a URL: still never print what could be credentials before an @.
    return target.replace(/^([^/]*\/\/)?[^@/]*@/, '$1***@');
  }
}

export function missingSecrets(profile: SimProfile, level: number, secrets: ReadonlyMap<number, Buffer>): number[] {
  return level === 0 ? [] : modelsOf(profile).filter((m) => !secrets.has(m));
}

function validate(o: SimulationOptions): void {
  const positive = (name: string, v: number) => {
    if (!Number.isFinite(v) || v <= 0) throw new SimulationSetupError(`${name} must be a positive number, got ${v}`);
  };
  positive('sensors', o.sensors);
  positive('rate', o.rate);
  positive('duration', o.durationS);
  if (!Number.isInteger(o.sensors)) throw new SimulationSetupError(`sensors must be an integer, got ${o.sensors}`);
  if (!/^(rediss?|https?):\/\//.test(o.target)) {
    throw new SimulationSetupError(`target must be redis://… or http://…, got ${maskUrl(o.target)}`);
  }
}

/** Runs until `durationS` has passed (or `signal` aborts) and resolves to a summary; never runs unbounded. */
export async function runSimulation(opts: SimulationOptions): Promise<SimulationSummary> {
  validate(opts);
  const profile = opts.profile ?? 'mixed';
  const level = opts.level ?? 1;
  const stream = opts.stream ?? 'ocean:frames';
  const batchSize = Math.max(1, opts.batchSize ?? 50);
  const missing = missingSecrets(profile, level, opts.secrets);
  if (missing.length > 0) {
    const names = missing.map((m) => `NANOGRIDATA_SECRET_${m.toString(16).toUpperCase().padStart(2, '0')}`);
    throw new SimulationSetupError(`level ${level} frames need a secret for every model of profile ${profile}: set ${names.join(', ')} (or use --level 0)`);
  }
  const isRedis = opts.target.startsWith('redis');
  const sink = isRedis ? await redisSink(opts.target, stream) : httpSink(opts.target);

  const rng = mulberry32(opts.seed ?? Date.now());
  const fleet = createFleet(opts.sensors, profile, rng);
  const totals = { sent: 0, errors: 0, accepted: 0, answered: false, firstError: undefined as string | undefined };
  const reasons = new Map<string, number>();
  const start = performance.now();
  const elapsedS = () => (performance.now() - start) / 1000;

  let lastReport = { t: 0, sent: 0 };
  const progress = opts.onProgress
    ? setInterval(() => {
        const t = elapsedS();
        opts.onProgress!({ elapsedS: t, sent: totals.sent, errors: totals.errors, rate: (totals.sent - lastReport.sent) / (t - lastReport.t) });
        lastReport = { t, sent: totals.sent };
      }, 1000)
    : undefined;

  let produced = 0;
  const sendBatch = async (count: number) => {
    const frames: Buffer[] = [];
    const nowS = Math.floor(Date.now() / 1000);
    for (let i = 0; i < count; i++, produced++) {
      const sensor = fleet[produced % fleet.length]!;
      frames.push(nextFrame(sensor, { level, secret: opts.secrets.get(sensor.modelId), nowS, rng }));
    }
    const outcomes = await Promise.all(chunk(frames, batchSize).map((c) => sink.send(c)));
    for (const o of outcomes) {
      totals.sent += o.ok;
      totals.errors += o.failed;
      if (o.accepted !== undefined) {
        totals.accepted += o.accepted;
        totals.answered = true;
      }
      for (const [reason, n] of Object.entries(o.rejected ?? {})) reasons.set(reason, (reasons.get(reason) ?? 0) + n);
      totals.firstError ??= o.error;
    }
  };

  try {
    // At most this many frames per round, so a slow target is not flooded with one huge burst.
    const maxRound = batchSize * 8;
    for (;;) {
      const t = elapsedS();
      const due = Math.floor(Math.min(t, opts.durationS) * opts.rate) - produced;
      if (t >= opts.durationS || opts.signal?.aborted) {
        // Only the rounding residue of the last moment; a backlog from a slow target is dropped.
        if (due > 0 && due <= batchSize && !opts.signal?.aborted) await sendBatch(due);
        break;
      }
      if (due > 0) {
        await sendBatch(Math.min(due, maxRound));
        continue;
      }
      const untilNextS = (produced + 1) / opts.rate - t;
      await sleep(Math.max(1, Math.min(50, untilNextS * 1000)));
    }
  } finally {
    if (progress) clearInterval(progress);
    await sink.close();
  }

  const elapsed = elapsedS();
  return {
    target: isRedis ? 'redis' : 'http',
    url: maskUrl(opts.target),
    ...(isRedis ? { stream } : {}),
    profile,
    level,
    sensors: opts.sensors,
    sent: totals.sent,
    errors: totals.errors,
    ...(totals.answered ? { accepted: totals.accepted, rejected: [...reasons.values()].reduce((a, b) => a + b, 0) } : {}),
    ...(reasons.size > 0 ? { rejectedReasons: Object.fromEntries(reasons) } : {}),
    elapsedS: Math.round(elapsed * 1000) / 1000,
    rate: Math.round((totals.sent / elapsed) * 10) / 10,
    ...(totals.firstError !== undefined ? { firstError: totals.firstError } : {}),
  };
}

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
