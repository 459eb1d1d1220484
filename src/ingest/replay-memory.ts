import type { Logger } from 'pino';
import { UnavailableError } from '../errors.js';
import type { ReplayItem } from '../nanogridata/types.js';
import type { Db } from '../operational/db.js';
import { itemKey, packItems, unpackItems } from './replay-window.js';

/** Where accepted frames are remembered for the drift window (Redis, shared; or SQLite, this process). */
export interface ReplayStore {
  /** Which items are remembered. */
  has(items: readonly ReplayItem[]): Promise<boolean[]>;
  /** Remembers the items; resolves with how many were there already (a frame another consumer took meanwhile). */
  add(items: readonly ReplayItem[]): Promise<number>;
  /** Drops what has left the window (stores without expiry of their own). */
  prune?(): void;
}

interface LocalEntry {
  /** Sequence number of the add that carries it; undefined until one is sent. */
  addSeq?: number;
  /** Set once that add succeeded. */
  stored?: boolean;
}

export interface ReplayMemoryStatus {
  /** Accepted frames not yet in the store (Redis refusing writes, or unreachable). */
  backlog: number;
  last_error: string | null;
  /** Frames another consumer accepted between our check and our add. */
  races: number;
}

/**
 * Replay protection with the rule "a frame counts as accepted only once its records are stored".
 *
 * 1. `lookup` asks the store, outside any transaction, which frames it already remembers.
 * 2. `claim`, inside the ingest transaction, settles each frame: taken if the store had it or this
 *    process took it since (including earlier in the same batch); the others are staged — written
 *    to `replay_pending` in that transaction, so they are remembered exactly when the batch commits.
 * 3. `flush`, after the commit, moves the pending frames into the store. If the store refuses
 *    (Redis full, or away), they stay pending, in SQLite and here, and are retried; a restart
 *    reloads them.
 *
 * A lookup may have been answered before a frame it should have seen reached the store; such a
 * frame stays in the local set until every lookup issued before its add was sent has been claimed.
 */
export class ReplayMemory {
  private readonly local = new Map<string, LocalEntry>();
  /** Tokens of lookups not yet claimed: the number of adds sent when each was issued. */
  private readonly openLookups = new Map<number, number>();
  private addsSent = 0;
  private flushing: Promise<void> | undefined;
  private lastError: string | null = null;
  private races = 0;
  private readonly insertPending;
  private readonly deletePending;
  private readonly selectPending;
  private staged: string[] = [];

  constructor(
    private readonly store: ReplayStore,
    private readonly db: Db,
    private readonly logger: Logger,
  ) {
    this.insertPending = db.prepare<[Buffer]>('INSERT INTO replay_pending(items) VALUES (?)');
    this.deletePending = db.prepare<[number]>('DELETE FROM replay_pending WHERE id = ?');
    this.selectPending = db.prepare<[], { id: number; items: Buffer }>('SELECT id, items FROM replay_pending ORDER BY id');
    for (const row of this.selectPending.all()) for (const item of unpackItems(row.items)) this.local.set(itemKey(item), {});
  }

  /** Step 1: what the store remembers. The token goes to `claim`. */
  async lookup(items: readonly ReplayItem[]): Promise<{ known: boolean[]; token: number }> {
    const token = this.addsSent;
    this.openLookups.set(token, (this.openLookups.get(token) ?? 0) + 1);
    try {
      return { known: await this.store.has(items), token };
    } catch (err) {
      this.release(token);
      // Without the memory no frame can be accepted safely: the caller answers 503 / retries. The
      // cause (Redis internals) is logged, never sent.
      this.logger.warn({ error: err instanceof Error ? err.message : String(err) }, 'replay memory unreachable');
      throw new UnavailableError('replay memory unavailable; retry later');
    }
  }

  /** After the lookup's batch was claimed (or failed): the lookup no longer needs the local set. */
  release(token: number): void {
    const n = (this.openLookups.get(token) ?? 1) - 1;
    if (n <= 0) this.openLookups.delete(token);
    else this.openLookups.set(token, n);
    this.sweep();
  }

  /**
   * Step 2, inside the ingest transaction: which items are replays. `known` is what the lookup
   * answered; `accept[i]` false means the frame fails anyway (it is only checked, never remembered).
   * The others not taken are staged. Then `release` the lookup's token.
   */
  claim(items: readonly ReplayItem[], accept: readonly boolean[], known: readonly boolean[]): boolean[] {
    const taken: boolean[] = new Array(items.length);
    const stage: ReplayItem[] = [];
    const batch = new Set<string>();
    items.forEach((item, i) => {
      const key = itemKey(item);
      taken[i] = known[i] === true || this.local.has(key) || batch.has(key);
      if (!taken[i] && accept[i]) {
        batch.add(key);
        stage.push(item);
      }
    });
    if (stage.length > 0) {
      this.insertPending.run(packItems(stage));
      this.staged.push(...batch);
    }
    return taken;
  }

  /** A message whose savepoint rolled back inside a transaction that commits: its items were not accepted. */
  unstage(items: readonly ReplayItem[]): void {
    const drop = new Set(items.map(itemKey));
    this.staged = this.staged.filter((key) => !drop.has(key));
  }

  /** After the ingest transaction committed: its staged items are now taken. */
  committed(): void {
    for (const key of this.staged) this.local.set(key, {});
    this.staged = [];
    this.sweep();
  }

  /** After the ingest transaction rolled back: nothing it staged was accepted. */
  rolledBack(): void {
    this.staged = [];
  }

  /** Step 3: moves every pending item into the store. One flush runs at a time. */
  flush(): Promise<void> {
    this.flushing ??= this.flushPending().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  status(): ReplayMemoryStatus {
    let backlog = 0;
    for (const e of this.local.values()) if (!e.stored) backlog++;
    return { backlog, last_error: this.lastError, races: this.races };
  }

  private async flushPending(): Promise<void> {
    let rows: Array<{ id: number; items: Buffer }>;
    try {
      rows = this.selectPending.all();
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      return; // the database is closing or gone: a later flush, or the next start, retries
    }
    if (rows.length === 0) return;
    const items = rows.flatMap((row) => unpackItems(row.items));
    const seq = ++this.addsSent;
    const keys = items.map(itemKey);
    for (const key of keys) {
      const entry = this.local.get(key);
      if (entry) entry.addSeq = seq;
    }
    try {
      const already = await this.store.add(items);
      if (already > 0) {
        // Another consumer accepted the same frame between our lookup and this add: both stored it.
        this.races += already;
        this.logger.warn({ frames: already }, 'a frame was accepted by two consumers at once (replay race)');
      }
      this.lastError = null;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      // The error's message only: a Redis reply error carries the command's arguments.
      this.logger.warn({ error: this.lastError, frames: items.length }, 'replay memory refused writes; the frames stay pending and are retried');
      return;
    }
    try {
      this.db.transaction(() => {
        for (const row of rows) this.deletePending.run(row.id);
      })();
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      return; // kept pending: adding them again is harmless
    }
    for (const key of keys) {
      const entry = this.local.get(key);
      if (entry && entry.addSeq === seq) entry.stored = true;
    }
    this.store.prune?.();
    this.sweep();
  }

  /** Forgets stored items that no open lookup can have missed. */
  private sweep(): void {
    let oldest = Infinity;
    for (const token of this.openLookups.keys()) oldest = Math.min(oldest, token);
    for (const [key, e] of this.local) if (e.stored && e.addSeq! <= oldest) this.local.delete(key);
  }
}
