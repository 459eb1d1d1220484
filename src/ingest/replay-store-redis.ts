import type { Redis } from 'ioredis';
import type { ReplayItem } from '../nanogridata/types.js';
import type { ReplayStore } from './replay-memory.js';
import { SLICE_S, sliceExpiresAt, sliceOf } from './replay-window.js';

/**
 * The fingerprints of one slice live in small Redis hashes (field = the 8 fingerprint bytes, value
 * empty), which Redis keeps in its compact listpack encoding: 15 to 25 bytes a frame, where a key
 * per frame took about 200. The number of hashes of a slice grows with it by linear hashing:
 * whenever the slice averages more than FIELDS_PER_HASH fields a hash, the next hash in turn is
 * split in two, so no hash outgrows the listpack encoding whatever the rate, and a lookup scans a
 * few dozen fields. A slice's state is `<prefix><slice>:m` (n = fields, L = level, p = split
 * pointer); its hashes are `<prefix><slice>:<index>`. Every key gets its slice's TTL when it is
 * created.
 *
 * Speed: this process computes which hash holds each fingerprint from the slice's state as it last
 * saw it, so the scripts only look up or insert. Each script checks that state first and computes
 * the hashes itself for a slice that another consumer has split meanwhile; splits run after the
 * inserts of a call. Both scripts are atomic, so consumers never see a half-moved hash.
 *
 * The keys are computed inside the scripts, so this needs a single Redis node, not Cluster.
 */
const COMMON = `
local function bucket(fp, level, split)
  local b1, b2, b3, b4 = string.byte(fp, 1, 4)
  local h = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  local size = 2 ^ level
  local b = h % size
  if b < split then b = h % (2 * size) end
  return b
end
-- ARGV[2]: 'slice,L,p[,ttl,count];...': the level and split pointer the caller addressed the
-- items with (for an add, the shape the slice will have for its count more items).
local function slices(prefix, header)
  local list = {}
  for slice, L, p, ttl, count in string.gmatch(header, '([^,;]+),([^,;]+),([^,;]+),?([^,;]*),?([^,;]*)') do
    local v = redis.call('HMGET', prefix .. slice .. ':m', 'n', 'L', 'p')
    local m = { n = tonumber(v[1]) or 0, L = tonumber(v[2]) or 0, p = tonumber(v[3]) or 0, base = prefix .. slice .. ':', ttl = ttl,
      count = tonumber(count) or 0, claimL = L, claimP = p }
    m.stale = tostring(m.L) ~= L or tostring(m.p) ~= p
    list[#list + 1] = m
  end
  return list
end
-- Items: slice index (u8), key length (u8), the hash's key as the caller computed it, fingerprint (8).
local function each(items, fn)
  local i, n = 1, #items
  while i <= n do
    local k, len = string.byte(items, i, i + 1)
    local key = string.sub(items, i + 2, i + 1 + len)
    local fp = string.sub(items, i + 2 + len, i + 9 + len)
    fn(k + 1, key, fp)
    i = i + 10 + len
  end
end
local function keyOf(m, key, fp)
  if m.stale then return m.base .. bucket(fp, m.L, m.p) end
  return key
end
local function state(list)
  local out = {}
  for k, m in ipairs(list) do out[k] = m.L .. ',' .. m.p .. ',' .. m.n end
  return out
end
`;

/** ARGV: prefix, slices, items. Returns { '0'/'1' per item, slice states 'L,p' }. Runs under maxmemory (no writes). */
const HAS = `#!lua flags=no-writes
${COMMON}
local list = slices(ARGV[1], ARGV[2])
local found, count = {}, 0
each(ARGV[3], function(k, key, fp)
  local m = list[k]
  count = count + 1
  if m.n > 0 and redis.call('HEXISTS', keyOf(m, key, fp), fp) == 1 then found[count] = '1' else found[count] = '0' end
end)
return { table.concat(found), state(list) }
`;

/**
 * ARGV: prefix, load, slices (with their TTL in ms), items. Returns { how many were there already,
 * slice states }. A split always creates its target (with a placeholder field no fingerprint can
 * equal, being 8 bytes long), so every key is created with its TTL and none outlives its slice
 * even if no write ever comes again.
 */
const ADD = `#!lua
${COMMON}
local load = tonumber(ARGV[3])
local list = slices(ARGV[1], ARGV[2])
local already = 0
local function split(m)
  local size = 2 ^ m.L
  local from = m.base .. m.p
  local to = m.base .. (m.p + size)
  local fields = redis.call('HGETALL', from)
  local moved, names = { '', '' }, {}
  for i = 1, #fields, 2 do
    local fp = fields[i]
    if #fp == 8 and bucket(fp, m.L + 1, 0) ~= m.p then
      moved[#moved + 1] = fp
      moved[#moved + 1] = ''
      names[#names + 1] = fp
    end
  end
  redis.call('HSET', to, unpack(moved))
  redis.call('PEXPIRE', to, m.ttl)
  if #names > 0 then redis.call('HDEL', from, unpack(names)) end
  m.p = m.p + 1
  if m.p == size then
    m.L, m.p = m.L + 1, 0
  end
end
-- Splits first, to the shape the slice needs for all of this call's items, so no hash ever grows
-- past a few times the average (a listpack hash that outgrows its encoding never gets it back).
-- The caller computed the same shape from the count it last saw; if another consumer added
-- meanwhile, this slice's hashes are computed here instead.
for _, m in ipairs(list) do
  while m.n + m.count > load * (2 ^ m.L + m.p) do split(m) end
  m.stale = tostring(m.L) ~= m.claimL or tostring(m.p) ~= m.claimP
end
local written = {}
each(ARGV[4], function(k, given, fp)
  local m = list[k]
  local key = keyOf(m, given, fp)
  if redis.call('HSETNX', key, fp, '') == 0 then
    already = already + 1
  else
    written[key] = m.ttl
    m.n = m.n + 1
  end
end)
-- A hash an insert created (rather than a split) has no TTL yet: give it its slice's, once per
-- hash and call, so that no key outlives its slice.
for key, ttl in pairs(written) do
  if redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, ttl) end
end
for _, m in ipairs(list) do
  local key = m.base .. 'm'
  redis.call('HSET', key, 'n', m.n, 'L', m.L, 'p', m.p)
  redis.call('PEXPIRE', key, m.ttl)
end
return { already, state(list) }
`;

/** Average fields per hash before the next split. */
const FIELDS_PER_HASH = 16;

type WithScripts = Redis & {
  oceanReplayHas(prefix: string, slices: string, items: Buffer): Promise<[string, string[]]>;
  oceanReplayAdd(prefix: string, slices: string, load: string, items: Buffer): Promise<[number, string[]]>;
};

interface Shape {
  L: number;
  p: number;
  n: number;
}
const NEW_SLICE: Shape = { L: 0, p: 0, n: 0 };

/** The shape a slice of `shape.n` fields takes to hold `more` more (the scripts split the same way). */
function grown(shape: Shape, more: number, load: number): Shape {
  let { L, p } = shape;
  while (shape.n + more > load * (2 ** L + p)) {
    p++;
    if (p === 2 ** L) {
      L++;
      p = 0;
    }
  }
  return { L, p, n: shape.n };
}

export interface RedisReplayStoreOptions {
  prefix: string;
  maxDriftS: number;
  /** Unix seconds; TTLs are computed from it. */
  now: () => number;
  /** Milliseconds of Redis time per second of `now` (1000 unless a benchmark runs a faster clock). */
  msPerSecond?: number;
}

/** The same linear-hashing address the scripts compute. */
function bucketOf(fp: Buffer, level: number, split: number): number {
  const h = fp.readUInt32BE(0);
  const size = 2 ** level;
  const b = h % size;
  return b < split ? h % (2 * size) : b;
}

/** Replay memory shared through Redis, so that several consumers and restarts agree. */
export class RedisReplayStore implements ReplayStore {
  private readonly redis: WithScripts;
  private load: number | undefined;
  /** Each slice's level, split pointer and field count as this process last saw them. */
  private readonly shapes = new Map<number, Shape>();

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
    const { slices, header, packed } = this.address(items);
    const [found, states] = await this.redis.oceanReplayHas(this.options.prefix, header, packed);
    this.learn(slices, states);
    return Array.from(found, (c) => c === '1');
  }

  async add(items: readonly ReplayItem[]): Promise<number> {
    const now = this.options.now();
    const msPerSecond = this.options.msPerSecond ?? 1000;
    const live = items.filter((item) => sliceExpiresAt(sliceOf(item), this.options.maxDriftS) > now);
    if (live.length === 0) return 0;
    const load = await this.fieldsPerHash();
    const ttl = (slice: number) => Math.ceil((sliceExpiresAt(slice, this.options.maxDriftS) - now) * msPerSecond) + 1000;
    const { slices, header, packed } = this.address(live, { load, ttl });
    const [already, states] = await this.redis.oceanReplayAdd(this.options.prefix, header, String(load), packed);
    this.learn(slices, states);
    return already;
  }

  /**
   * The scripts' arguments, packed (thousands of separate arguments cost the client far more than
   * the script): the slices with the shape the items are addressed with, then per item its
   * slice's position, the key of its hash and its fingerprint. For an add, the shape is the one
   * the slice will have once it holds them (with their TTL and count).
   */
  private address(items: readonly ReplayItem[], add?: { load: number; ttl: (slice: number) => number }) {
    const slices: number[] = [];
    const counts: number[] = [];
    const sliceOfItem = new Uint16Array(items.length);
    const index = new Map<number, number>();
    items.forEach((item, i) => {
      const slice = sliceOf(item);
      let k = index.get(slice);
      if (k === undefined) {
        k = slices.push(slice) - 1;
        counts.push(0);
        index.set(slice, k);
      }
      counts[k]!++;
      sliceOfItem[i] = k;
    });
    const shapes = slices.map((slice, k) => {
      const known = this.shapes.get(slice) ?? NEW_SLICE;
      return add ? grown(known, counts[k]!, add.load) : known;
    });
    if (slices.length > 255) throw new Error('too many replay slices in one call');
    const bases = slices.map((slice) => `${this.options.prefix}${slice}:`);
    const packed = Buffer.allocUnsafe(items.length * (10 + 64));
    let at = 0;
    items.forEach((item, i) => {
      const k = sliceOfItem[i]!;
      const shape = shapes[k]!;
      packed[at] = k;
      const len = packed.write(`${bases[k]}${bucketOf(item.fingerprint, shape.L, shape.p)}`, at + 2, 'latin1');
      packed[at + 1] = len;
      item.fingerprint.copy(packed, at + 2 + len, 0, 8);
      at += 10 + len;
    });
    const header = slices.map((slice, k) => `${slice},${shapes[k]!.L},${shapes[k]!.p}${add ? `,${add.ttl(slice)},${counts[k]}` : ''}`).join(';');
    return { slices, header, packed: packed.subarray(0, at) };
  }

  private learn(slices: readonly number[], states: readonly string[]): void {
    slices.forEach((slice, k) => {
      const [L, p, n] = states[k]!.split(',').map(Number) as [number, number, number];
      this.shapes.set(slice, { L, p, n });
    });
    // Slices past the window are never asked about again.
    if (this.shapes.size > 4 * slices.length + 1000) {
      const oldest = Math.floor((this.options.now() - 2 * this.options.maxDriftS) / SLICE_S);
      for (const slice of this.shapes.keys()) if (slice < oldest) this.shapes.delete(slice);
    }
  }

  /**
   * Average fields per hash: small hashes scan fast (a listpack lookup is linear), and up to twice
   * this (a hash not yet split this round) stays far inside any listpack limit.
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
      this.load = Math.max(2, Math.min(FIELDS_PER_HASH, Math.floor(limit / 4)));
    }
    return this.load;
  }
}
