/**
 * Soak benchmark (`npm run bench:soak`): a steady frame rate into Redis for more than a whole drift
 * window, on an accelerated clock, so that the replay memory reaches its steady size and must stay
 * there. The service (openService, as main.ts composes it) and the producer run in this process;
 * Redis is a private redis-server. Every few seconds it prints Redis memory, the in-process replay
 * index (frames remembered, bytes, bytes per frame), the process RSS, the consumer's lag and the
 * rate reached.
 *
 * The clock runs --speed times faster than real time for everything that depends on it: frame
 * timestamps, the drift check and the replay window. With the default 300 s window and --speed 10,
 * a window passes in 30 real seconds.
 *
 * Options: --rate N (frames/s of real time, default 5000), --speed N (default 10), --windows N
 * (how long, in drift windows, default 2.5), --sample S (seconds between samples, default 5).
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { encodeFrame, pressurePayload } from '../src/nanogridata/encoder.js';
import { openService } from '../src/service.js';
import { pressureSecret } from '../test/helpers/frames.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '5000' },
    speed: { type: 'string', default: '10' },
    windows: { type: 'string', default: '2.5' },
    sample: { type: 'string', default: '5' },
  },
});
const RATE = Number(values.rate);
const SPEED = Number(values.speed);
const WINDOWS = Number(values.windows);
const SAMPLE_S = Number(values.sample);
const DRIFT_S = 300;

const realStart = Date.now();
/** The accelerated clock, Unix seconds. */
const now = () => realStart / 1000 + ((Date.now() - realStart) / 1000) * SPEED;

const server = await startRedis();
const redis = new Redis(server.url);
const { path: dataDir, cleanup: removeDataDir } = await makeTempDir('ocean-bench-soak-');
const { secret, env } = pressureSecret();
const config = loadConfig({ ...env, DATA_DIR: dataDir, REDIS_URL: server.url, INGEST_STREAM: 'soak:frames', ADMIN_TOKEN: 'soak-admin-token-0123456789', LOG_LEVEL: 'warn' });
const service = await openService(config, { logger: pino({ level: 'warn' }), now });
await service.start();

const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
/** Frames the service accepted from the stream so far. */
const storedFrames = async () => (await service.metrics.telemetryIngested.get()).values.find((v) => v.labels.source === 'stream')?.value ?? 0;
const baseline = await usedMemory();

let produced = 0;
let seq = 0;
const durationS = (WINDOWS * DRIFT_S) / SPEED;
console.log(
  `bench:soak — ${RATE} frames/s for ${durationS.toFixed(0)} s real (${WINDOWS} drift windows of ${DRIFT_S} s at ${SPEED}× speed); ` +
    `expected remembered frames at steady state ≈ rate × window / speed = ${Math.round((RATE * DRIFT_S) / SPEED)}`,
);
console.log('  t(s)  window  produced   stored   lag   redis MB  replay MB  frames  B/frame  RSS MB  frames/s');

const producer = (async () => {
  while (Date.now() - realStart < durationS * 1000) {
    const due = Math.floor(((Date.now() - realStart) / 1000) * RATE) - produced;
    if (due <= 0) {
      await new Promise((r) => setTimeout(r, 5));
      continue;
    }
    const pipeline = redis.pipeline();
    const ts = Math.floor(now());
    for (let i = 0; i < Math.min(due, 2000); i++) {
      const n = seq++;
      pipeline.xadd('soak:frames', '*', 'frame', encodeFrame({ modelId: 0x10, level: 1, timestamp: ts, secret, payload: pressurePayload({ deviceId: `S-${n % 500}`, entries: [{ value: n }] }) }));
    }
    await pipeline.exec();
    produced += Math.min(due, 2000);
  }
})();

let lastStored = 0;
let lastAt = Date.now();
const samples: Array<{ t: number; redis: number; replay: number; rss: number }> = [];
while (Date.now() - realStart < durationS * 1000 + 1000) {
  await new Promise((r) => setTimeout(r, SAMPLE_S * 1000));
  const t = (Date.now() - realStart) / 1000;
  const stored = await storedFrames();
  const consumer = service.consumer!.status();
  const replay = { bytes: service.replay.bytes, keys: service.replay.size };
  const redisBytes = (await usedMemory()) - baseline;
  const remembered = replay.keys;
  const rss = process.memoryUsage().rss / 1048576;
  samples.push({ t, redis: redisBytes, replay: replay.bytes, rss });
  const rate = ((stored - lastStored) * 1000) / (Date.now() - lastAt);
  lastStored = stored;
  lastAt = Date.now();
  console.log(
    `${t.toFixed(0).padStart(6)} ${((t * SPEED) / DRIFT_S).toFixed(2).padStart(7)} ${String(produced).padStart(9)} ${String(stored).padStart(8)} ` +
      `${String((consumer.lag ?? 0) + (consumer.pending ?? 0)).padStart(5)} ${(redisBytes / 1048576).toFixed(1).padStart(9)} ${(replay.bytes / 1048576).toFixed(1).padStart(10)} ` +
      `${String(replay.keys).padStart(7)} ${(replay.bytes / Math.max(1, remembered)).toFixed(1).padStart(9)} ${rss.toFixed(0).padStart(7)} ${rate.toFixed(0).padStart(9)}`,
  );
}
await producer;

// Flat: the last samples (all past one full window) against the first sample past one window.
const steady = samples.filter((s) => (s.t * SPEED) / DRIFT_S >= 1.2);
if (steady.length >= 2) {
  const first = steady[0]!;
  const last = steady[steady.length - 1]!;
  console.log(
    `\nsteady state (from 1.2 windows on): replay memory ${(first.replay / 1048576).toFixed(1)} → ${(last.replay / 1048576).toFixed(1)} MB, ` +
      `Redis ${(first.redis / 1048576).toFixed(1)} → ${(last.redis / 1048576).toFixed(1)} MB, RSS ${first.rss.toFixed(0)} → ${last.rss.toFixed(0)} MB ` +
      `(RSS includes the producer; bytes per frame are the replay index's typed arrays ÷ frames it remembers)`,
  );
}
await service.close();
redis.disconnect();
await server.stop();
await removeDataDir();
