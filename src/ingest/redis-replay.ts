import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ReplayCheck, ReplayMemory } from '../nanogridata/types.js';

/**
 * Replay memory shared through Redis, so that several consumers and restarts agree. Each accepted
 * frame's key holds the transport message id that brought it, with a TTL of the drift window: the
 * same message id again is a redelivery, anything else a replay. One pipelined round trip per batch.
 */
export class RedisReplayMemory implements ReplayMemory {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async check(items: ReplayCheck[]): Promise<boolean[]> {
    if (items.length === 0) return [];
    const pipeline = this.redis.pipeline();
    // A message without a transport id (HTTP) can never be its own redelivery.
    const ids = items.map((item) => item.messageId ?? `once:${randomUUID()}`);
    items.forEach((item, i) => {
      const key = this.prefix + item.key;
      // SET NX GET (Redis ≥ 7): sets when absent and returns what was there, atomically.
      if (item.remember) pipeline.set(key, ids[i]!, 'EX', Math.max(1, Math.ceil(item.ttlS)), 'NX', 'GET');
      else pipeline.get(key);
    });
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, previous], i) => {
      if (err) throw err;
      return previous !== null && previous !== ids[i];
    });
  }
}
