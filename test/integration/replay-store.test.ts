import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisReplayStore } from '../../src/ingest/replay-store-redis.js';
import type { ReplayItem } from '../../src/nanogridata/types.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const NOW = 1_767_225_600;
const items = (n: number, timestamp = NOW): ReplayItem[] => Array.from({ length: n }, () => ({ fingerprint: randomBytes(8), timestamp }));

async function usedMemory(redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
}

async function addAll(store: RedisReplayStore, all: ReplayItem[]): Promise<number> {
  let already = 0;
  for (let i = 0; i < all.length; i += 1000) already += await store.add(all.slice(i, i + 1000));
  return already;
}

describe('replay memory in Redis', () => {
  let server: RedisServer;
  let redis: Redis;
  let n = 0;
  const store = (prefix: string, maxDriftS = 300) => new RedisReplayStore(redis, { prefix, maxDriftS, now: () => NOW });

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
  });

  it('remembers what it was given, across instances (consumers), and nothing else', async () => {
    const prefix = `r${n++}:`;
    const a = store(prefix);
    const b = store(prefix);
    const seen = items(5000);
    expect(await addAll(a, seen)).toBe(0);
    expect(await b.has(seen.slice(0, 1000))).toEqual(Array(1000).fill(true));
    expect(await b.has(items(1000))).toEqual(Array(1000).fill(false));
    // Adding again reports each as already there (a frame two consumers took at once).
    expect(await b.add(seen.slice(0, 10))).toBe(10);
  });

  it('takes at most 32 bytes of Redis memory per remembered frame, and keeps every hash compact', async () => {
    const prefix = `r${n++}:`;
    const s = store(prefix);
    const before = await usedMemory(redis);
    // 200,000 frames spread over a minute of header times (six slices), as a steady 3,300 frames/s would leave.
    const all = Array.from({ length: 200_000 }, (_, i) => ({ fingerprint: randomBytes(8), timestamp: NOW - 60 + Math.floor((i * 60) / 200_000) }));
    await addAll(s, all);
    const perFrame = ((await usedMemory(redis)) - before) / all.length;
    expect(perFrame).toBeLessThanOrEqual(32);
    const keys = await redis.keys(`${prefix}*`);
    const encodings = new Set(await Promise.all(keys.map((k) => redis.object('ENCODING', k))));
    expect(encodings).toEqual(new Set(['listpack']));
    // Every frame is still found after all the splitting.
    const sample = all.filter((_, i) => i % 97 === 0);
    expect((await s.has(sample)).every(Boolean)).toBe(true);
    console.log(`replay memory: ${perFrame.toFixed(1)} bytes per remembered frame (${all.length} frames, ${keys.length} keys)`);
  });

  it('expires a slice once its frames have left the drift window', async () => {
    // A new slice that takes many frames at once is split before the inserts; the hashes the
    // inserts create need their TTL too, wherever the first fingerprint lands (20 slices, so a
    // key left without one cannot slip through by luck).
    for (let round = 0; round < 20; round++) {
      const prefix = `r${n++}:`;
      const s = new RedisReplayStore(redis, { prefix, maxDriftS: 2, now: () => Date.now() / 1000 });
      const now = Math.floor(Date.now() / 1000);
      await s.add(items(100, now));
      const keys = await redis.keys(`${prefix}*`);
      expect(keys.length).toBeGreaterThan(2);
      const ttls = await Promise.all(keys.map((k) => redis.pttl(k)));
      // A slice is 10 s of header time: kept until its end plus the window, here at most 10 + 2 s (+1 s margin).
      for (const ttl of ttls) expect(ttl).toBeGreaterThan(0);
      for (const ttl of ttls) expect(ttl).toBeLessThanOrEqual(13_000);
    }
  });
});
