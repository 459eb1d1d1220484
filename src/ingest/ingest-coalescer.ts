import type { IngestSource } from '../operational/buffer.js';
import type { OperationalStore } from '../operational/store.js';
import type { IngestPipeline, UnitOutcome } from './pipeline.js';
import type { Reading } from './reading.js';

interface Pending {
  readings: Reading[];
  owner: string | undefined;
  resolve: (outcomes: UnitOutcome[]) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for single-reading ingest. Requests that arrive in the same turn of the event loop
 * are written in one SQLite transaction: each request runs in its own savepoint (a 403 for one
 * rolls back only that one), and every request is answered only after the shared COMMIT
 * succeeded. If the COMMIT — or the transaction itself — fails, every request of the group fails:
 * nothing is reported accepted that is not stored.
 *
 * One COMMIT per group instead of per request is what makes single-reading ingest cheap: a commit
 * writes every page the transaction touched to the WAL, and those pages are shared by the group.
 */
export class IngestCoalescer {
  private queue: Pending[] = [];
  private scheduled = false;

  constructor(
    private readonly store: Pick<OperationalStore, 'transaction' | 'db'>,
    private readonly pipeline: Pick<IngestPipeline, 'storeReadings' | 'readingsCommitted'>,
    private readonly source: IngestSource = 'http',
    /** Most requests per transaction; the rest go in the next one. */
    private readonly maxGroup = 256,
  ) {}

  submit(readings: Reading[], owner: string | undefined): Promise<UnitOutcome[]> {
    return new Promise<UnitOutcome[]>((resolve, reject) => {
      this.queue.push({ readings, owner, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private optionsOf(p: Pending) {
    return { source: this.source, ...(p.owner !== undefined ? { owner: p.owner } : {}) };
  }

  private readonly flush = (): void => {
    const group = this.queue.length > this.maxGroup ? this.queue.splice(0, this.maxGroup) : this.queue.splice(0);
    if (this.queue.length > 0) setImmediate(this.flush);
    else this.scheduled = false;

    const outcomes: Array<{ ok: true; result: UnitOutcome[] } | { ok: false; err: unknown }> = [];
    // Alone in its transaction, a request needs no savepoint (a third of a single reading's SQLite cost).
    if (group.length === 1) {
      const p = group[0]!;
      try {
        const result = this.store.transaction(() => this.pipeline.storeReadings(p.readings, this.optionsOf(p)));
        this.pipeline.readingsCommitted(p.readings, this.source);
        p.resolve(result);
      } catch (err) {
        p.reject(err);
      }
      return;
    }
    try {
      this.store.transaction(() => {
        for (const p of group) {
          try {
            outcomes.push({ ok: true, result: this.store.transaction(() => this.pipeline.storeReadings(p.readings, this.optionsOf(p))) });
          } catch (err) {
            outcomes.push({ ok: false, err });
          }
          // An I/O or full-disk error can roll back the whole transaction, not just the savepoint:
          // then nothing of the group is stored, and later statements must not run outside it.
          if (!this.store.db.inTransaction) throw new Error('the ingest transaction was rolled back');
        }
      });
    } catch (err) {
      for (const p of group) p.reject(err);
      return;
    }
    group.forEach((p, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) {
        this.pipeline.readingsCommitted(p.readings, this.source);
        p.resolve(outcome.result);
      } else p.reject(outcome.err);
    });
  };
}
