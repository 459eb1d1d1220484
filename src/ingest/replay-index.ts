/**
 * In-process index of the replay window (issue 19): which fingerprints were accepted, and from
 * which stream entry. The durable copy lives in the analytics store; this index is rebuilt from it
 * at start and is the only thing consulted per frame.
 *
 * The window. A frame is accepted only while |now − ts| ≤ maxDriftS, so it has to be remembered
 * until now > ts + maxDriftS. The caller (service.ts) forgets with `forgetBefore(now − windowS)`
 * with windowS = maxDriftS plus a small margin for a batch checked just before the window moved and
 * committed just after. (A server clock stepped back by more than that margin could let a copy of a
 * forgotten frame through; the drift check itself trusts the clock just as much.)
 *
 * Layout. Frames are kept per slice of header time (a copy of a frame has the same header time, so a
 * check looks at one slice, and forgetting drops whole slices). Each slice is its own open-addressing
 * table of 32-bit words, three per slot: the fingerprint under a keyed bijective mix (two words) and
 * the stream-entry tag. Probing is Robin Hood linear probing, which keeps a miss — the common case,
 * a new frame — to a few adjacent slots even at the 92 % load we allow. Tables are sized freely (the
 * home slot is taken as the mixed word scaled to the capacity, not masked), so they grow by 1.2×
 * rather than doubling: load stays between 0.77 and 0.92, i.e. 13–15.7 bytes per frame once a
 * slice holds more than a few hundred (a slice starts at 16 slots, 192 bytes, or at the size of the
 * slice before it).
 *
 * No objects, strings or BigInts per frame: slots are words in one Uint32Array per slice.
 */

import { randomFillSync } from 'node:crypto';

export const NEW = 0;
export const REPLAY = 1;
export const REDELIVERY = 2;
export type ReplayVerdict = typeof NEW | typeof REPLAY | typeof REDELIVERY;

/** Highest share of a slice's slots in use before it grows. */
const MAX_LOAD = 0.92;
/** Growth factor: small, so that a table just grown is still 77 % full (12 / 0.767 ≈ 15.7 bytes a frame). */
const GROWTH = 1.2;
const MIN_CAPACITY = 16;
/** Slices per window: the slice width is windowS / this, rounded up (6 s for the default 310 s window). */
const SLICES_PER_WINDOW = 60;
const WORDS = 3;

/** A 32-bit avalanche (lowbias32); the round function of the key mix. */
function avalanche(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return x ^ (x >>> 16);
}

/** One slice: a Robin Hood table. The all-zero mixed key marks an empty slot, so that one key is kept aside. */
class Slice {
  table: Uint32Array;
  capacity: number;
  /** capacity / 2^32: home slot of mixed word k1 is floor(k1 · scale), exact in doubles. */
  scale: number;
  /** Keys in `table` (not counting the all-zero key). */
  count = 0;
  limit: number;
  hasZero = false;
  zeroTag = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.table = new Uint32Array(capacity * WORDS);
    this.scale = capacity / 4294967296;
    this.limit = Math.floor(capacity * MAX_LOAD);
  }

  get size(): number {
    return this.count + (this.hasZero ? 1 : 0);
  }

  /** Slot of (k1, k2), or -1. The key is not all-zero. */
  find(k1: number, k2: number): number {
    const t = this.table;
    const cap = this.capacity;
    const scale = this.scale;
    let i = (k1 * scale) >>> 0;
    for (let d = 0; ; d++) {
      const p = i * WORDS;
      const a = t[p]!;
      const b = t[p + 1]!;
      if (a === k1 && b === k2) return i;
      if ((a | b) === 0) return -1;
      // A resident nearer its home than we are to ours: Robin Hood would have put us here.
      const h = (a * scale) >>> 0;
      if ((i >= h ? i - h : i + cap - h) < d) return -1;
      if (++i === cap) i = 0;
    }
  }

  /**
   * Inserts a key (not all-zero) unless it is there; the table has room. Returns the slot that was
   * empty and is now filled, or -1 when the key was there. A key present sits before any slot whose resident is nearer its home than we are to
   * ours, so it is only looked for until the first swap.
   */
  insert(k1: number, k2: number, tag: number): number {
    const t = this.table;
    const cap = this.capacity;
    const scale = this.scale;
    let i = (k1 * scale) >>> 0;
    let swapped = false;
    for (let d = 0; ; d++) {
      const p = i * WORDS;
      const a = t[p]!;
      const b = t[p + 1]!;
      if ((a | b) === 0) {
        t[p] = k1;
        t[p + 1] = k2;
        t[p + 2] = tag;
        this.count++;
        return i;
      }
      if (!swapped && a === k1 && b === k2) return -1;
      const h = (a * scale) >>> 0;
      const rd = i >= h ? i - h : i + cap - h;
      if (rd < d) {
        // Take the slot from the richer resident and carry it on.
        const c = t[p + 2]!;
        t[p] = k1;
        t[p + 1] = k2;
        t[p + 2] = tag;
        k1 = a;
        k2 = b;
        tag = c;
        d = rd;
        swapped = true;
      }
      if (++i === cap) i = 0;
    }
  }

  /** Removes the key in slot i, shifting its followers back (no tombstones, so misses stay short). */
  removeAt(i: number): void {
    const t = this.table;
    const cap = this.capacity;
    const scale = this.scale;
    let j = i + 1 === cap ? 0 : i + 1;
    for (;;) {
      const q = j * WORDS;
      const a = t[q]!;
      const b = t[q + 1]!;
      if ((a | b) === 0 || ((a * scale) >>> 0) === j) break;
      const p = i * WORDS;
      t[p] = a;
      t[p + 1] = b;
      t[p + 2] = t[q + 2]!;
      i = j;
      if (++j === cap) j = 0;
    }
    const p = i * WORDS;
    t[p] = 0;
    t[p + 1] = 0;
    t[p + 2] = 0;
    this.count--;
  }

  /**
   * Rebuilds 1.2× larger. The old table holds its keys in order of home slot, hence of k1, hence of
   * home slot in the new table too (both are k1 scaled), so nearly every key goes straight to
   * max(home, last placed + 1) — what Robin Hood insertion would do, without its probing. The
   * few out of order (equal old homes, wrap-around) take the general insert.
   */
  grow(): void {
    const old = this.table;
    const oldCap = this.capacity;
    const capacity = Math.max(oldCap + 1, Math.ceil(oldCap * GROWTH));
    this.capacity = capacity;
    const t = (this.table = new Uint32Array(capacity * WORDS));
    const scale = (this.scale = capacity / 4294967296);
    this.limit = Math.floor(capacity * MAX_LOAD);
    this.count = 0;
    // Start just after an empty slot, where a cluster starts: keys wrapped round the end come last.
    let start = 0;
    while ((old[start * WORDS]! | old[start * WORDS + 1]!) !== 0) start++;
    let last = -1;
    let lastHome = 0;
    for (let n = 0, i = start + 1; n < oldCap; n++, i++) {
      if (i === oldCap) i = 0;
      const q = i * WORDS;
      const a = old[q]!;
      const b = old[q + 1]!;
      if ((a | b) === 0) continue;
      const h = (a * scale) >>> 0;
      if (h >= lastHome) {
        const at = h > last ? h : last + 1;
        if (at < capacity) {
          const p = at * WORDS;
          t[p] = a;
          t[p + 1] = b;
          t[p + 2] = old[q + 2]!;
          this.count++;
          last = at;
          lastHome = h;
          continue;
        }
      }
      const filled = this.insert(a, b, old[q + 2]!);
      if (filled > last) last = filled;
    }
  }
}

export class ReplayIndex {
  /** Width of a slice, seconds. */
  readonly sliceS: number;
  private readonly slices = new Map<number, Slice>();
  /** The slice last used: frames arrive mostly in header-time order, so this spares the map lookup. */
  private lastNo = NaN;
  private last: Slice | undefined;
  private count = 0;
  // Key of the mix, random per index: not cryptographic, but fingerprints cannot be picked offline
  // to pile onto one probe run of a known layout.
  private readonly s1: number;
  private readonly s2: number;
  private readonly c1: number;
  private readonly c2: number;
  // The mixed key of the frame in hand (set by `mix`, to avoid returning a pair).
  private k1 = 0;
  private k2 = 0;

  /**
   * @param options.windowS how long after its header time a frame must be remembered (2 × maxDriftS,
   *   see the top of this file). The index uses it only to size its slices; forgetting is the caller's
   *   `forgetBefore(now − windowS)`.
   */
  constructor(options: { windowS: number }) {
    const { windowS } = options;
    if (!(windowS > 0) || !Number.isFinite(windowS)) throw new RangeError(`windowS must be a positive number of seconds, not ${windowS}`);
    this.sliceS = Math.max(1, Math.ceil(windowS / SLICES_PER_WINDOW));
    const seed = randomFillSync(new Uint32Array(2));
    this.s1 = seed[0]! | 0;
    this.s2 = seed[1]! | 0;
    // Round constants chosen so that each round function maps 0 to 0: fingerprint 0 mixes to the
    // empty marker, which keeps the set-aside key a fixed, testable one.
    this.c1 = avalanche(this.s1);
    this.c2 = avalanche(this.s2);
  }

  /** Frames remembered. */
  get size(): number {
    return this.count;
  }

  /** Bytes of the typed arrays the index holds. */
  get bytes(): number {
    let n = 0;
    for (const s of this.slices.values()) n += s.table.byteLength;
    return n;
  }

  /** What a frame is; does not change the index. `fp` holds the 8 fingerprint bytes at `offset`. */
  check(fp: Uint8Array, offset: number, ts: number, tag: number): 0 | 1 | 2 {
    const s = this.slice(ts, false);
    if (s === undefined) return NEW;
    this.mix(fp, offset);
    const k1 = this.k1;
    const k2 = this.k2;
    let stored: number;
    if ((k1 | k2) === 0) {
      if (!s.hasZero) return NEW;
      stored = s.zeroTag;
    } else {
      const i = s.find(k1, k2);
      if (i < 0) return NEW;
      stored = s.table[i * WORDS + 2]!;
    }
    // Tag 0 (HTTP) names no entry, so it is never a redelivery.
    tag >>>= 0;
    return tag !== 0 && stored === tag ? REDELIVERY : REPLAY;
  }

  /** Remembers a frame (when the caller takes it into a batch, before that batch commits). A frame already there keeps its first tag. */
  add(fp: Uint8Array, offset: number, ts: number, tag: number): void {
    const s = this.slice(ts, true)!;
    this.mix(fp, offset);
    const k1 = this.k1;
    const k2 = this.k2;
    if ((k1 | k2) === 0) {
      if (s.hasZero) return;
      s.hasZero = true;
      s.zeroTag = tag >>> 0;
      this.count++;
      return;
    }
    if (s.count >= s.limit) {
      if (s.find(k1, k2) >= 0) return;
      s.grow();
    }
    if (s.insert(k1, k2, tag >>> 0) >= 0) this.count++;
  }

  /** Forgets a frame added by `add` whose batch failed to commit; a frame not there is left alone. */
  remove(fp: Uint8Array, offset: number, ts: number): void {
    const s = this.slice(ts, false);
    if (s === undefined) return;
    this.mix(fp, offset);
    const k1 = this.k1;
    const k2 = this.k2;
    if ((k1 | k2) === 0) {
      if (!s.hasZero) return;
      s.hasZero = false;
      s.zeroTag = 0;
      this.count--;
      return;
    }
    const i = s.find(k1, k2);
    if (i < 0) return;
    s.removeAt(i);
    this.count--;
    // Tables do not shrink: removals are rare (failed commits) and the slice will refill or go whole.
  }

  /**
   * Forgets the slices whose every second is before `beforeS`. A frame at or after `beforeS` is
   * never forgotten; frames of the slice that straddles `beforeS` stay until a later call (at most
   * one slice width, sliceS, longer than asked).
   */
  forgetBefore(beforeS: number): void {
    for (const [no, s] of this.slices) {
      if ((no + 1) * this.sliceS <= beforeS) {
        this.count -= s.size;
        this.slices.delete(no);
      }
    }
    this.lastNo = NaN;
    this.last = undefined;
  }

  private slice(ts: number, create: boolean): Slice | undefined {
    const no = Math.floor(ts / this.sliceS);
    if (no === this.lastNo) return this.last;
    let s = this.slices.get(no);
    if (s === undefined) {
      // A miss is not cached: a later add would create the slice behind the cache's back.
      if (!create) return undefined;
      // The slice after the one that filled last starts at that one's size: at a steady rate it
      // then fills without growing, and no rebuild of a large table stalls the caller. Any other
      // new slice (a clock off by more than a slice) starts small.
      const before = this.slices.get(no - 1);
      s = new Slice(before ? Math.max(MIN_CAPACITY, Math.ceil(before.count / MAX_LOAD) + 1) : MIN_CAPACITY);
      this.slices.set(no, s);
    }
    this.lastNo = no;
    this.last = s;
    return s;
  }

  /**
   * Two Feistel rounds over the fingerprint's words (little-endian lo, hi): a bijection, so mixed
   * keys are equal exactly when fingerprints are, and k1 — whose high bits pick the home slot —
   * depends on all 64 bits under the random key.
   */
  private mix(fp: Uint8Array, o: number): void {
    const lo = fp[o]! | (fp[o + 1]! << 8) | (fp[o + 2]! << 16) | (fp[o + 3]! << 24);
    const hi = fp[o + 4]! | (fp[o + 5]! << 8) | (fp[o + 6]! << 16) | (fp[o + 7]! << 24);
    const k1 = hi ^ avalanche(lo ^ this.s1) ^ this.c1;
    this.k1 = k1 >>> 0;
    this.k2 = (lo ^ avalanche(k1 ^ this.s2) ^ this.c2) >>> 0;
  }
}
