import { BIGINT, VARCHAR, type DuckDBConnection } from '@duckdb/node-api';
import { readRecordBatch } from '../operational/record-batch.js';
import { appendFingerprints, appendReadings, withAppender, type ReadingsPart } from './append.js';
import type { CommitRequest } from './commit-types.js';
import { PARTITIONS, PARTITION_TABLES, partitionOf } from './partitions.js';
import type { SeriesIndex } from './series.js';

/**
 * One commit of the ingest path as one DuckDB transaction on the writer connection (the caller
 * serialises): new series, history purges, readings, fingerprints, side effects, ingest state.
 * Appenders take part in the connection's transaction, so a ROLLBACK takes back all of it.
 */

const nonNegative = (what: string, v: number | undefined) => {
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new RangeError(`${what} must be a non-negative integer, got ${v}`);
};

function check(request: CommitRequest): void {
  nonNegative('queueThrough', request.queueThrough);
  nonNegative('effectsAppliedThrough', request.effectsAppliedThrough);
  if (request.forgetBefore !== undefined && !Number.isFinite(request.forgetBefore)) throw new RangeError(`forgetBefore must be finite, got ${request.forgetBefore}`);
  for (const p of request.purges ?? []) nonNegative('a purge id', p.id);
}

/**
 * Each segment's readings, grouped by partition (a counting sort of record indexes, so that each
 * partition gets one appender and its records stay in arrival order).
 */
function readingsByPartition(request: CommitRequest, series: SeriesIndex): ReadingsPart[][] {
  const parts: ReadingsPart[][] = Array.from({ length: PARTITIONS }, () => []);
  for (const segment of request.segments) {
    const c = readRecordBatch(segment.records);
    if (c.length === 0) continue;
    const resolved = series.resolve(c, segment.source);
    const counts = new Uint32Array(PARTITIONS + 1);
    for (let i = 0; i < c.length; i++) counts[resolved.partition[i]! + 1]!++;
    for (let p = 1; p <= PARTITIONS; p++) counts[p]! += counts[p - 1]!;
    const starts = counts.slice();
    const order = new Uint32Array(c.length);
    for (let i = 0; i < c.length; i++) order[counts[resolved.partition[i]!]!++] = i;
    for (let p = 0; p < PARTITIONS; p++) {
      if (starts[p] === starts[p + 1]) continue;
      parts[p]!.push({ ts: c.ts, value: c.value, series: resolved.series, indexes: order.subarray(starts[p], starts[p + 1]) });
    }
  }
  return parts;
}

/** Commits `request` as batch `batch`; on any failure rolls back (and forgets the series it made) and throws. */
export async function commitBatch(w: DuckDBConnection, series: SeriesIndex, request: CommitRequest, batch: number): Promise<void> {
  let open = false;
  try {
    check(request);
    const parts = readingsByPartition(request, series);
    await w.run('BEGIN TRANSACTION');
    open = true;
    await series.insertFresh(w);
    // Before this batch's readings: a purge takes what the sensor had so far, not what arrives with
    // it; and only once (a purge id already done must not take the readings that came since).
    for (const purge of request.purges ?? []) {
      const fresh = await w.runAndReadAll('INSERT INTO purges_done VALUES ($1) ON CONFLICT DO NOTHING RETURNING id', [purge.id], [BIGINT]);
      if (fresh.currentRowCount === 0) continue;
      await w.run(`DELETE FROM ${PARTITION_TABLES[partitionOf(purge.sensorId)]} WHERE series IN (SELECT series FROM series WHERE sensor_id = $1)`, [purge.sensorId], [VARCHAR]);
    }
    for (let p = 0; p < PARTITIONS; p++) {
      if (parts[p]!.length === 0) continue;
      await withAppender(w, PARTITION_TABLES[p]!, (a) => appendReadings(a, parts[p]!));
    }
    if (request.fingerprints && request.fingerprints.ts.length > 0) {
      const f = request.fingerprints;
      await withAppender(w, 'replay_fingerprints', (a) => appendFingerprints(a, f));
    }
    if (request.effects !== undefined) await w.run('INSERT INTO ingest_effects VALUES ($1, $2)', [batch, request.effects], [BIGINT, VARCHAR]);
    if (request.effectsAppliedThrough !== undefined) await w.run('DELETE FROM ingest_effects WHERE batch <= $1', [request.effectsAppliedThrough], [BIGINT]);
    if (request.forgetBefore !== undefined) await w.run('DELETE FROM replay_fingerprints WHERE ts < $1', [Math.floor(request.forgetBefore)], [BIGINT]);
    await w.run(
      'UPDATE ingest_state SET batch = $1, queue_through = greatest(queue_through, $2), position = coalesce($3, position)',
      [batch, request.queueThrough ?? 0, request.position ?? null],
      [BIGINT, BIGINT, VARCHAR],
    );
    await w.run('COMMIT');
    series.committed();
  } catch (err) {
    series.rolledBack();
    if (open) await w.run('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
