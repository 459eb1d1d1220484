import type { Redis } from 'ioredis';
import type { ReplayItem } from '../nanogridata/types.js';
import type { ReplayStore } from './replay-memory.js';
import { sliceExpiresAt, sliceOf } from './replay-window.js';

/**
 * The fingerprints of one slice live in small Redis hashes (field = the 8 fingerprint bytes,
 * value empty), which Redis keeps in its compact listpack encoding: about 12 bytes a frame, where
 * a key per frame took about 200. The number of hashes of a slice grows with it by linear
 * hashing: whenever the slice averages more than LOAD fields a hash, the next hash in turn is
 * split in two, so no hash outgrows the listpack limit whatever the rate. A slice's state is
 * `<prefix><slice>:m` (n = fields, L = level, p = split pointer); its hashes are
 * `<prefix><slice>:<index>`. Every key of a slice expires with it.
 *
 * The keys are computed inside the scripts, so this needs a single Redis node, not Cluster.
 */
const BUCKET = `
local function bucket(fp, level, split)
  local b1, b2, b3, b4 = string.byte(fp, 1, 4)
  local h = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  local size = 2 ^ level
  local b = h % size
  if b < split then b = h % (2 * size) end
  return b
end
local function meta(prefix, slice, cache)
  local m = cache[slice]
  if m == nil then
    local v = redis.call('HMGET', prefix .. slice .. ':m', 'n', 'L', 'p')
    m = { n = tonumber(v[1]) or 0, L = tonumber(v[2]) or 0, p = tonumber(v[3]) or 0 }
    cache[slice] = m
  end
  return m
end
`;

/** ARGV: prefix, then slice and fingerprint per item. Returns 1/0 per item. Runs under maxmemory (no writes). */
const HAS = `#!lua flags=no-writes
${BUCKET}
local prefix = ARGV[1]
local cache, out = {}, {}
for i = 2, #ARGV, 2 do
  local slice, fp = ARGV[i], ARGV[i + 1]
  local m = meta(prefix, slice, cache)
  if m.n == 0 then
    out[#out + 1] = 0
  else
    out[#out + 1] = redis.call('HEXISTS', prefix .. slice .. ':' .. bucket(fp, m.L, m.p), fp)
  end
end
return out
`;

/** ARGV: prefix, load, then slice, fingerprint and TTL (ms) per item. Returns how many were there already. */
const ADD = `#!lua
${BUCKET}
local prefix, load = ARGV[1], tonumber(ARGV[2])
local cache, ttls, touched = {}, {}, {}
local already = 0
local function touch(key, ttl)
  if not touched[key] then
    redis.call('PEXPIRE', key, ttl)
    touched[key] = true
  end
end
local function split(slice, m, ttl)
  local size = 2 ^ m.L
  local from = prefix .. slice .. ':' .. m.p
  local to = prefix .. slice .. ':' .. (m.p + size)
  local fields = redis.call('HGETALL', from)
  local moved, names = {}, {}
  for i = 1, #fields, 2 do
    local fp = fields[i]
    if bucket(fp, m.L + 1, 0) ~= m.p then
      moved[#moved + 1] = fp
      moved[#moved + 1] = ''
      names[#names + 1] = fp
    end
  end
  if #names > 0 then
    redis.call('HSET', to, unpack(moved))
    redis.call('HDEL', from, unpack(names))
    touch(to, ttl)
  end
  m.p = m.p + 1
  if m.p == size then
    m.L, m.p = m.L + 1, 0
  end
end
for i = 3, #ARGV, 3 do
  local slice, fp, ttl = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local m = meta(prefix, slice, cache)
  ttls[slice] = ttl
  local key = prefix .. slice .. ':' .. bucket(fp, m.L, m.p)
  if redis.call('HSETNX', key, fp, '') == 0 then
    already = already + 1
  else
    touch(key, ttl)
    m.n = m.n + 1
    while m.n > load * (2 ^ m.L + m.p) do split(slice, m, ttl) end
  end
end
for slice, m in pairs(cache) do
  if ttls[slice] then
    local key = prefix .. slice .. ':m'
    redis.call('HSET', key, 'n', m.n, 'L', m.L, 'p', m.p)
    redis.call('PEXPIRE', key, ttls[slice])
  end
end
return already
`;

type WithScripts = Redis & {
  oceanReplayHas(...args: Array<string | Buffer>): Promise<number[]>;
  oceanReplayAdd(...args: Array<string | Buffer>): Promise<number>;
};

export interface RedisReplayStoreOptions {
  prefix: string;
  maxDriftS: number;
  /** Unix seconds; TTLs are computed from it. */
  now: () => number;
  /** Milliseconds of Redis time per second of `now` (1 unless a benchmark runs an accelerated clock). */
  msPerSecond?: number;
}

/** Replay memory shared through Redis, so that several consumers and restarts agree. */
export class RedisReplayStore implements ReplayStore {
  private readonly redis: WithScripts;
  private load: number | undefined;

  constructor(
    redis: Redis,
    private readonly options: RedisReplayStoreOptions,
  ) {
    if (!('oceanReplayHas' in redis)) {
      redis.defineCommand('oceanReplayHas', { lua: HAS, numberOfKeys: 0 });
      redis.defineCommand('oceanReplayAdd', { lua: ADD, numberOfKeys: 0 });
    }
    this.redis = redis as WithScripts;
  }

  async has(items: readonly ReplayItem[]): Promise<boolean[]> {
    if (items.length === 0) return [];
    const args: Array<string | Buffer> = [this.options.prefix];
    for (const item of items) args.push(String(sliceOf(item)), item.fingerprint);
    const found = await this.redis.oceanReplayHas(...args);
    return found.map((f) => f === 1);
  }

  async add(items: readonly ReplayItem[]): Promise<number> {
    const now = this.options.now();
    const msPerSecond = this.options.msPerSecond ?? 1000;
    const args: Array<string | Buffer> = [this.options.prefix, String(await this.fieldsPerHash())];
    for (const item of items) {
      const slice = sliceOf(item);
      const ttlMs = Math.ceil((sliceExpiresAt(slice, this.options.maxDriftS) - now) * msPerSecond) + 1000;
      if (ttlMs > 1000) args.push(String(slice), item.fingerprint, String(ttlMs));
    }
    return args.length > 2 ? this.redis.oceanReplayAdd(...args) : 0;
  }

  /**
   * Average fields per hash: about a third of the server's listpack limit, so that a hash that
   * has not been split yet this round (up to twice the average) stays inside it.
   */
  private async fieldsPerHash(): Promise<number> {
    if (this.load === undefined) {
      let limit = 128; // Redis's default, when CONFIG is not allowed
      try {
        const reply = (await this.redis.config('GET', 'hash-max-listpack-entries')) as string[];
        if (reply[1] !== undefined && Number(reply[1]) > 0) limit = Number(reply[1]);
      } catch {
        // managed Redis often disables CONFIG
      }
      this.load = Math.max(4, Math.floor(Math.min(limit, 1024) * 0.3));
    }
    return this.load;
  }
}
