import type { QueuedReading } from '../operational/buffer.js';
import type { Queryable } from './connect.js';

/**
 * The work queue of JSON readings in the shared PostgreSQL (telemetry/unprocessed and
 * mark-processed): the embedded queue's reads (operational/buffer.ts). Its rows are written by the
 * ingest (postgres/ingest.ts) in the transaction that stores their readings.
 */
export function createPgWorkQueue(db: Queryable) {
  return {
    /** Readings not yet marked processed, oldest first, after the id `after`. */
    async queued(limit: number, after = 0): Promise<QueuedReading[]> {
      const { rows } = await db.query<QueuedReading>(
        'SELECT id, sensor_id, ts, data, source, record_count, created_at FROM telemetry_buffer WHERE queued AND id > $1 ORDER BY id LIMIT $2',
        [after, limit],
      );
      return rows;
    },
    /** Takes readings out of the queue; returns how many were in it. */
    async markProcessed(ids: readonly number[]): Promise<number> {
      const { rowCount } = await db.query('UPDATE telemetry_buffer SET queued = false WHERE id = ANY($1::bigint[]) AND queued', [[...ids]]);
      return rowCount ?? 0;
    },
    /** Rows kept and readings still queued. */
    async counts(): Promise<{ rows: number; queued: number }> {
      const { rows } = await db.query<{ rows: number; queued: number }>('SELECT count(*) AS rows, count(*) FILTER (WHERE queued) AS queued FROM telemetry_buffer');
      return rows[0]!;
    },
    /** Deletes rows marked processed that are older than the cut-off (Unix seconds); returns how many. */
    async prune(olderThanS: number): Promise<number> {
      const { rowCount } = await db.query('DELETE FROM telemetry_buffer WHERE NOT queued AND created_at < $1', [olderThanS]);
      return rowCount ?? 0;
    },
  };
}
