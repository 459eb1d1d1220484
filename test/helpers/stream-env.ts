import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { pressureSecret } from './frames.js';

/**
 * A private stream and dead-letter stream (random names), a pressure-model secret, and the service
 * environment that reads them from the Redis at `redisUrl` as consumer c1 of group `ocean`.
 */
export function streamTestEnv(redisUrl: string): { secret: Buffer; stream: string; dead: string; env: Record<string, string> } {
  const s = pressureSecret();
  const prefix = `t${randomUUID().slice(0, 8)}`;
  const stream = `${prefix}:frames`;
  const dead = `${prefix}:dead`;
  return {
    secret: s.secret,
    stream,
    dead,
    env: {
      ...s.env,
      REDIS_URL: redisUrl,
      INGEST_STREAM: stream,
      INGEST_GROUP: 'ocean',
      DEAD_LETTER_STREAM: dead,
      INGEST_BLOCK_MS: '100',
      INGEST_CONSUMER: 'c1',
    },
  };
}

/** XADDs one `frame` entry per frame, 500 per pipeline; the entry ids in order. */
export async function xaddFrames(redis: Redis, stream: string, frames: Buffer[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < frames.length; i += 500) {
    const pipeline = redis.pipeline();
    for (const frame of frames.slice(i, i + 500)) pipeline.xadd(stream, '*', 'frame', frame);
    for (const [err, id] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      ids.push(String(id));
    }
  }
  return ids;
}
