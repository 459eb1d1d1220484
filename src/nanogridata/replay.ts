/** In-process replay memory: the keys of accepted frames, each kept until its frame leaves the drift window. */
import type { ReplayCheck, ReplayMemory } from './types.js';

/** A replay memory that can answer at once, for one-shot decoding. */
export interface SyncReplayMemory {
  checkOne(item: ReplayCheck): boolean;
}

/** Expiry time alone when the frame came without a message id (no object to allocate), else both. */
type Entry = number | { messageId: string; expiresAt: number };
const expiryOf = (e: Entry) => (typeof e === 'number' ? e : e.expiresAt);

export interface InMemoryReplayOptions {
  /** Clock in Unix seconds; defaults to the system clock. */
  now?: () => number;
  /** No sweep below this many entries (sweeping a tiny map costs more than it saves). */
  minSweepSize?: number;
}

export class InMemoryReplayMemory implements ReplayMemory, SyncReplayMemory {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly minSweepSize: number;
  private sweepAt: number;

  constructor(opts: InMemoryReplayOptions = {}) {
    this.now = opts.now ?? (() => Date.now() / 1000);
    this.minSweepSize = opts.minSweepSize ?? 1024;
    this.sweepAt = this.minSweepSize;
  }

  /** Whether the item is a replay: its key is live under another (or no) message id. Remembers it if asked. */
  checkOne(item: ReplayCheck): boolean {
    const now = this.now();
    const known = this.entries.get(item.key);
    if (known !== undefined && expiryOf(known) > now) {
      // The same transport message delivered again (e.g. a stream entry after a crash) is not a replay.
      return item.messageId === undefined || typeof known === 'number' || known.messageId !== item.messageId;
    }
    if (item.remember) {
      const expiresAt = now + item.ttlS;
      this.entries.set(item.key, item.messageId === undefined ? expiresAt : { messageId: item.messageId, expiresAt });
      if (this.entries.size >= this.sweepAt) this.sweep(now);
    } else if (known !== undefined) {
      this.entries.delete(item.key);
    }
    return false;
  }

  /** Items are answered in order, so an earlier item of the batch counts for a later one. */
  async check(items: ReplayCheck[]): Promise<boolean[]> {
    return items.map((item) => this.checkOne(item));
  }

  /** Live and not yet swept entries. */
  get size(): number {
    return this.entries.size;
  }

  /** Drops expired entries now (otherwise done lazily as the map grows). */
  prune(): void {
    this.sweep(this.now());
  }

  /**
   * Sweeping whenever the map has doubled since the last sweep keeps the cost amortised O(1) per
   * insert and the map within about twice the number of frames accepted in one drift window.
   */
  private sweep(now: number): void {
    for (const [key, entry] of this.entries) if (expiryOf(entry) <= now) this.entries.delete(key);
    this.sweepAt = Math.max(this.minSweepSize, 2 * this.entries.size);
  }
}
