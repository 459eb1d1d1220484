import type { Db } from './db.js';
import { isoFromS } from './time.js';

export interface QuarantinedRecord {
  buffer_id: number;
  /** Position of the record in its buffer row. */
  record: number;
  content: Record<string, unknown>;
  error: string;
  /** ISO 8601, UTC. */
  quarantined_at: string;
}

/**
 * Records an earlier release's flusher could not store in DuckDB, kept with the error for the
 * admin. Read-only now: the one-commit path stores numbers checked at the edge, which DuckDB
 * cannot refuse.
 */
export function createQuarantine(db: Db) {
  const count = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM quarantine');
  const page = db.prepare<[number, number], { buffer_id: number; record: number; content: string; error: string; created_at: number }>(
    'SELECT buffer_id, record, content, error, created_at FROM quarantine ORDER BY buffer_id DESC, record LIMIT ? OFFSET ?',
  );
  let cached: number | undefined;
  const total = () => (cached ??= count.get()!.n);

  return {
    /** How many records are quarantined (cached: /health asks often, the table changes rarely). */
    count(): number {
      return total();
    },
    list(limit: number, offset = 0): QuarantinedRecord[] {
      return page.all(limit, offset).map((r) => ({
        buffer_id: r.buffer_id,
        record: r.record,
        content: JSON.parse(r.content) as Record<string, unknown>,
        error: r.error,
        quarantined_at: isoFromS(r.created_at),
      }));
    },
  };
}

export type Quarantine = ReturnType<typeof createQuarantine>;
