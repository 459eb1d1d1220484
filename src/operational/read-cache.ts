/**
 * A small in-process cache for rows read on every request (sessions, users). One process owns
 * ocean.db, so the stores that write a row drop it here in the same call (write-through
 * invalidation). Entries also age out after `maxAgeMs`, which bounds how long a change made
 * behind the store's back (another connection, the sqlite3 shell) can go unseen.
 * Bounded: past `max` entries the least recently used goes first (a Map keeps insertion order);
 * `max` 0 keeps nothing.
 */
export class ReadCache<K, V> {
  private readonly map = new Map<K, { value: V; at: number }>();

  constructor(
    private readonly max: number,
    private readonly maxAgeMs: number,
    private readonly clockMs: () => number = Date.now,
  ) {}

  get(key: K): V | undefined {
    const entry = this.map.get(key);
    if (!entry) return undefined;
    this.map.delete(key);
    if (this.clockMs() - entry.at >= this.maxAgeMs) return undefined;
    this.map.set(key, entry); // most recently used last
    return entry.value;
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, { value, at: this.clockMs() });
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  /** Drops every entry whose value matches (rare writes: revocation by id, a user's change). */
  deleteWhere(match: (value: V) => boolean): void {
    for (const [key, entry] of this.map) if (match(entry.value)) this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }
}

/** Entries per cache: a few MB at most. */
export const READ_CACHE_ENTRIES = 10_000;
/** Safety net for writes that bypass the store; the store's own writes invalidate at once. */
export const READ_CACHE_MAX_AGE_MS = 5_000;
