/** In-process replay memory for one-shot decoding (frame tool, tests, benchmarks). */
import type { ReplayItem } from './types.js';

/** A replay memory that answers at once. */
export interface SyncReplayMemory {
  /** Whether the frame was accepted before within the window; remembers it when `remember` and it is new. */
  checkOne(item: ReplayItem, remember: boolean): boolean;
}

export interface InMemoryReplayOptions {
  /** Clock in Unix seconds; defaults to the system clock. */
  now?: () => number;
  /** A frame is remembered until its header time is this far behind the clock. */
  maxDriftS: number;
  /** Initial number of slots (rounded up to a power of two); the table grows as needed. */
  initialSlots?: number;
}

/** Per slot: the fingerprint's two words and the expiry (Unix seconds; 0 = never used). */
const SLOT = 3;
const EXPIRY = 2;

/**
 * Fingerprints in an open-addressing table (linear probing, at most half full) in one typed
 * array: no JS object per frame, so the garbage collector never walks a window of them. Expired
 * slots are reused in place and dropped when the table is rebuilt.
 */
export class InMemoryReplayMemory implements SyncReplayMemory {
  private readonly now: () => number;
  private readonly maxDriftS: number;
  private readonly minSlots: number;
  private table!: Uint32Array;
  private mask = 0;
  /** Slots written since the last rebuild, live or expired. */
  private used = 0;

  constructor(opts: InMemoryReplayOptions) {
    this.now = opts.now ?? (() => Date.now() / 1000);
    this.maxDriftS = opts.maxDriftS;
    this.minSlots = Math.max(16, 2 ** Math.ceil(Math.log2(opts.initialSlots ?? 1024)));
    this.allocate(this.minSlots);
  }

  checkOne(item: ReplayItem, remember: boolean): boolean {
    const now = this.now();
    const fp = item.fingerprint;
    const hi = fp.readUInt32BE(0);
    const lo = fp.readUInt32BE(4);
    const { table, mask } = this;
    let slot = (lo ^ Math.imul(hi, 0x9e3779b1)) & mask;
    let free = -1;
    for (;;) {
      const at = slot * SLOT;
      const expiresAt = table[at + EXPIRY]!;
      if (expiresAt === 0) break;
      const same = table[at] === hi && table[at + 1] === lo;
      if (expiresAt > now) {
        if (same) return true;
      } else if (same) {
        free = slot; // this very fingerprint, expired: take its slot
        break;
      } else if (free < 0) {
        free = slot;
      }
      slot = (slot + 1) & mask;
    }
    const expiresAt = Math.ceil(item.timestamp + this.maxDriftS);
    if (remember && expiresAt > now) {
      if (free < 0) {
        free = slot;
        this.used++;
      }
      const at = free * SLOT;
      table[at] = hi;
      table[at + 1] = lo;
      table[at + EXPIRY] = expiresAt;
      if (this.used * 2 > mask) this.rebuild(now);
    }
    return false;
  }

  /** Slots held, live or expired but not yet reclaimed. */
  get size(): number {
    return this.used;
  }

  /** Reclaims expired slots now (otherwise done as the table fills). */
  prune(): void {
    this.rebuild(this.now());
  }

  private allocate(slots: number): void {
    this.table = new Uint32Array(slots * SLOT);
    this.mask = slots - 1;
    this.used = 0;
  }

  /** Copies the live slots into a table of three to six times their number. */
  private rebuild(now: number): void {
    const old = this.table;
    let live = 0;
    for (let at = EXPIRY; at < old.length; at += SLOT) if (old[at]! > now) live++;
    this.allocate(Math.max(this.minSlots, 2 ** Math.ceil(Math.log2(live * 3 + 1))));
    const { table, mask } = this;
    for (let from = 0; from < old.length; from += SLOT) {
      if (!(old[from + EXPIRY]! > now)) continue;
      let slot = (old[from + 1]! ^ Math.imul(old[from]!, 0x9e3779b1)) & mask;
      while (table[slot * SLOT + EXPIRY] !== 0) slot = (slot + 1) & mask;
      table.set(old.subarray(from, from + SLOT), slot * SLOT);
    }
    this.used = live;
  }
}
