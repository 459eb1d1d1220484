import type { ReplayItem } from '../nanogridata/types.js';
import type { Db } from '../operational/db.js';
import type { ReplayStore } from './replay-memory.js';
import { SLICE_S, sliceOf } from './replay-window.js';

/**
 * Replay memory in ocean.db, for a service without Redis (frames over HTTP only): it survives a
 * restart. A row per frame, keyed by slice and fingerprint; whole slices are deleted once they
 * have left the window.
 */
export class SqliteReplayStore implements ReplayStore {
  private readonly select;
  private readonly insert;
  private readonly dropBefore;
  private lastPruneAt = 0;

  constructor(
    private readonly db: Db,
    private readonly options: { maxDriftS: number; now: () => number },
  ) {
    this.select = db.prepare<[number, Buffer], { one: number }>('SELECT 1 AS one FROM replay_memory WHERE slice = ? AND fingerprint = ?');
    this.insert = db.prepare<[number, Buffer]>('INSERT OR IGNORE INTO replay_memory(slice, fingerprint) VALUES (?, ?)');
    this.dropBefore = db.prepare<[number]>('DELETE FROM replay_memory WHERE slice < ?');
  }

  async has(items: readonly ReplayItem[]): Promise<boolean[]> {
    return items.map((item) => this.select.get(sliceOf(item), item.fingerprint) !== undefined);
  }

  async add(items: readonly ReplayItem[]): Promise<number> {
    return this.db.transaction(() => items.reduce((already, item) => already + (this.insert.run(sliceOf(item), item.fingerprint).changes === 0 ? 1 : 0), 0))();
  }

  /** At most once a minute: slices whose last second is more than the window behind the clock. */
  prune(): void {
    const now = this.options.now();
    if (now - this.lastPruneAt < 60) return;
    this.lastPruneAt = now;
    this.dropBefore.run(Math.floor((now - this.options.maxDriftS) / SLICE_S) - 1);
  }
}
