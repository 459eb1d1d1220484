import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { UnavailableError } from '../errors.js';
import type { ReplayCheck, ReplayMemory } from '../nanogridata/types.js';

/**
 * Per key: the message id it was remembered under ('' when unknown). A key is set (with its TTL)
 * only when asked to remember it and it is absent. One script call per batch keeps the check and
 * the write atomic across consumers and costs one command instead of one per frame.
 */
const CHECK_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  local id, ttl, remember = ARGV[i * 3 - 2], ARGV[i * 3 - 1], ARGV[i * 3]
  local previous = redis.call('GET', key)
  if not previous and remember == '1' then redis.call('SET', key, id, 'EX', ttl) end
  out[i] = previous or ''
end
return out
`;

type WithReplayCheck = Redis & { oceanReplayCheck(numKeys: number, ...args: string[]): Promise<string[]> };

/**
 * Replay memory shared through Redis, so that several consumers and restarts agree. Each accepted
 * frame's key holds the transport message id that brought it, with a TTL of the drift window: the
 * same message id again is a redelivery, anything else a replay.
 *
 * The keys of one batch are passed to one script; on Redis Cluster they would need one hash slot
 * (a `{tag}` in the prefix), which this single-node deployment does not need.
 */
export class RedisReplayMemory implements ReplayMemory {
  private readonly redis: WithReplayCheck;

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    if (!('oceanReplayCheck' in redis)) redis.defineCommand('oceanReplayCheck', { lua: CHECK_SCRIPT });
    this.redis = redis as WithReplayCheck;
  }

  async check(items: ReplayCheck[]): Promise<boolean[]> {
    if (items.length === 0) return [];
    // A message without a transport id (HTTP) can never be its own redelivery.
    const ids = items.map((item) => item.messageId ?? `once:${randomUUID()}`);
    const keys = items.map((item) => this.prefix + item.key);
    const args = items.flatMap((item, i) => [ids[i]!, String(Math.max(1, Math.ceil(item.ttlS))), item.remember ? '1' : '0']);
    let previous: string[];
    try {
      previous = await this.redis.oceanReplayCheck(keys.length, ...keys, ...args);
    } catch (err) {
      // Without the shared memory no frame can be accepted safely: the caller answers 503 / retries.
      throw new UnavailableError(`replay memory unavailable (Redis: ${err instanceof Error ? err.message : String(err)})`);
    }
    return previous.map((p, i) => p !== '' && p !== ids[i]);
  }
}
