/** In-process replay memory: the keys of accepted frames, each kept until its frame leaves the drift window. */
import type { ReplayCheck, ReplayMemory } from './types.js';

/** A replay memory that can answer at once, for one-shot decoding. */
export interface SyncReplayMemory {
  checkOne(item: ReplayCheck): boolean;
}

export interface InMemoryReplayOptions {
  /** Clock in Unix seconds; defaults to the system clock. */
  now?: () => number;
  /** Initial number of slots (rounded up to a power of two); the table grows as needed. */
  initialSlots?: number;
}

/** Per slot: 5 words of fingerprint (tag, then 128 bits), the expiry, 2 spare: 32 bytes, half a cache line. */
const SLOT = 8;
const EXPIRY = 5;
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) HEX['0123456789abcdef'.charCodeAt(i)] = i;

/**
 * Keys made by the decoder (`hh:<MAC hex>`, `hh:frame:<digest hex>`) are kept as fingerprints in an
 * open-addressing table (linear probing, at most half full) in one typed array: no JS object per
 * key, so the garbage collector never walks an hour of them, and a probe touches one cache line.
 * (With a Map of key strings, the replay check cost about half as much as the HMAC.) The
 * fingerprint holds 128 bits of the HMAC or SHA-256: they cannot collide by accident, and a forger
 * cannot choose them. Keys in any other format go to a plain Map.
 */
export class InMemoryReplayMemory implements ReplayMemory, SyncReplayMemory {
  private readonly now: () => number;
  private readonly minSlots: number;
  /** SLOT words per slot; an expiry of 0 marks a slot never used, a past expiry one free for reuse. */
  private table!: Uint32Array;
  /** The table before the last rebuild, reused by the next one when the size has not changed. */
  private spare: Uint32Array | undefined;
  private mask = 0;
  /** Slots written since the last rebuild, live or expired. */
  private used = 0;
  /** Message id by slot, only for frames that came with one. */
  private messageIds = new Map<number, string>();
  private readonly fp = new Uint32Array(5);
  private readonly other = new Map<string, { messageId: string | undefined; expiresAt: number }>();
  private otherSweepAt = 1024;

  constructor(opts: InMemoryReplayOptions = {}) {
    this.now = opts.now ?? (() => Date.now() / 1000);
    this.minSlots = Math.max(16, 2 ** Math.ceil(Math.log2(opts.initialSlots ?? 1024)));
    this.allocate(this.minSlots);
  }

  /** Whether the item is a replay: its key is live under another (or no) message id. Remembers it if asked. */
  checkOne(item: ReplayCheck): boolean {
    const now = this.now();
    if (!this.fingerprint(item.key)) return this.checkOther(item, now);
    const { table, mask, fp } = this;
    let slot = (fp[1]! ^ Math.imul(fp[0]!, 0x9e3779b1)) & mask;
    let free = -1;
    for (;;) {
      const at = slot * SLOT;
      const expiresAt = table[at + EXPIRY]!;
      if (expiresAt === 0) break;
      const same =
        table[at] === fp[0] && table[at + 1] === fp[1] && table[at + 2] === fp[2] && table[at + 3] === fp[3] && table[at + 4] === fp[4];
      if (expiresAt > now) {
        // The same transport message delivered again (e.g. a stream entry after a crash) is not a replay.
        if (same) return item.messageId === undefined || this.messageIds.get(slot) !== item.messageId;
      } else if (same) {
        free = slot; // this very key, expired: take its slot
        break;
      } else if (free < 0) {
        free = slot;
      }
      slot = (slot + 1) & mask;
    }
    // A TTL that is not positive would store an expiry in the past: nothing to remember.
    if (item.remember && item.ttlS > 0) {
      if (free < 0) {
        free = slot;
        this.used++;
      }
      const at = free * SLOT;
      table[at] = fp[0]!;
      table[at + 1] = fp[1]!;
      table[at + 2] = fp[2]!;
      table[at + 3] = fp[3]!;
      table[at + 4] = fp[4]!;
      table[at + EXPIRY] = Math.ceil(now + item.ttlS); // whole seconds; never 0
      if (item.messageId !== undefined) this.messageIds.set(free, item.messageId);
      else if (this.messageIds.size > 0) this.messageIds.delete(free);
      if (this.used * 2 > mask) this.rebuild(now);
    }
    return false;
  }

  /** Items are answered in order, so an earlier item of the batch counts for a later one. */
  async check(items: ReplayCheck[]): Promise<boolean[]> {
    return items.map((item) => this.checkOne(item));
  }

  /** Keys held, live or expired but not yet reclaimed. */
  get size(): number {
    return this.used + this.other.size;
  }

  /** Reclaims expired keys now (otherwise done as the table fills). */
  prune(): void {
    const now = this.now();
    this.rebuild(now);
    for (const [key, e] of this.other) if (e.expiresAt <= now) this.other.delete(key);
  }

  /**
   * Fills `fp` from a key in the decoder's format — two hex digits of model, `:`, optionally
   * `frame:`, then 32 or 64 hex digits — and returns false for any other key. The fingerprint is
   * the model, the kind and length of key, and 128 bits of the MAC or digest (a 256-bit one folded
   * by XOR, so that every bit counts).
   */
  private fingerprint(key: string): boolean {
    const hi = HEX[key.charCodeAt(0)] ?? -1;
    const lo = HEX[key.charCodeAt(1)] ?? -1;
    if (hi < 0 || lo < 0 || key.charCodeAt(2) !== 58 /* : */) return false;
    const whole = key.startsWith('frame:', 3);
    const start = whole ? 9 : 3;
    const digits = key.length - start;
    if (digits !== 32 && digits !== 64) return false;
    const fp = this.fp;
    fp[0] = (hi << 4) | lo | (whole ? 0x100 : 0) | (digits << 9);
    for (let w = 0; w < digits / 8; w++) {
      let v = 0;
      for (let c = start + 8 * w, end = c + 8; c < end; c++) {
        const d = HEX[key.charCodeAt(c)] ?? -1;
        if (d < 0) return false;
        v = (v << 4) | d;
      }
      if (w < 4) fp[w + 1] = v;
      else fp[w - 3] ^= v;
    }
    return true;
  }

  private checkOther(item: ReplayCheck, now: number): boolean {
    const known = this.other.get(item.key);
    if (known !== undefined && known.expiresAt > now) {
      return item.messageId === undefined || known.messageId !== item.messageId;
    }
    if (item.remember) {
      this.other.set(item.key, { messageId: item.messageId, expiresAt: now + item.ttlS });
      // Swept whenever it has doubled since the last sweep: amortised O(1), bounded by the window.
      if (this.other.size >= this.otherSweepAt) {
        for (const [key, e] of this.other) if (e.expiresAt <= now) this.other.delete(key);
        this.otherSweepAt = Math.max(1024, 2 * this.other.size);
      }
    }
    return false;
  }

  private allocate(slots: number): void {
    // At a steady size, rebuilds swap between two tables rather than allocate megabytes each time.
    const spare = this.spare;
    this.spare = undefined;
    this.table = spare !== undefined && spare.length === slots * SLOT ? spare.fill(0) : new Uint32Array(slots * SLOT);
    this.mask = slots - 1;
    this.used = 0;
    this.messageIds = new Map();
  }

  /**
   * Copies the live keys into a new table of three to six times their number, dropping expired
   * ones; at least half the live count is inserted before the next rebuild, so the cost is
   * amortised O(1) per insert, and memory (this table and the spare) stays within a few hundred
   * bytes per key live in one drift window.
   */
  private rebuild(now: number): void {
    const { table: old, messageIds: oldIds } = this;
    let live = 0;
    for (let at = EXPIRY; at < old.length; at += SLOT) if (old[at]! > now) live++;
    this.allocate(Math.max(this.minSlots, 2 ** Math.ceil(Math.log2(live * 3 + 1))));
    const { table, mask } = this;
    for (let from = 0; from < old.length; from += SLOT) {
      if (!(old[from + EXPIRY]! > now)) continue;
      let slot = (old[from + 1]! ^ Math.imul(old[from]!, 0x9e3779b1)) & mask;
      while (table[slot * SLOT + EXPIRY] !== 0) slot = (slot + 1) & mask;
      const to = slot * SLOT;
      for (let w = 0; w <= EXPIRY; w++) table[to + w] = old[from + w]!;
      if (oldIds.size > 0) {
        const id = oldIds.get(from / SLOT);
        if (id !== undefined) this.messageIds.set(slot, id);
      }
    }
    this.used = live;
    this.spare = old;
  }
}
