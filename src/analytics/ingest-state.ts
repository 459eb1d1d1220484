import bindings from '@duckdb/node-bindings';
import { INTEGER, type DuckDBConnection } from '@duckdb/node-api';
import type { CommitFingerprints, IngestState } from './commit-types.js';

/** What the store holds of the ingest path (read once at start, on the writer: it sees every commit). */
export async function readIngestState(c: DuckDBConnection): Promise<IngestState> {
  // Aggregates rather than a plain row read: planned afresh each time (see reader-pool.ts on DuckDB 1.5.6).
  const [state] = (await c.runAndReadAll('SELECT max(batch) AS batch, max(queue_through) AS queue_through, max(position) AS position FROM ingest_state')).getRowObjectsJS();
  const purges = (await c.runAndReadAll('SELECT id FROM purges_done ORDER BY id')).getRowsJS();
  const effects = (await c.runAndReadAll('SELECT batch, effects FROM ingest_effects ORDER BY batch')).getRowsJS();
  return {
    batch: Number(state?.batch ?? 0),
    queueThrough: Number(state?.queue_through ?? 0),
    position: (state?.position as string | null | undefined) ?? null,
    purgesDone: purges.map(([id]) => Number(id)),
    effects: effects.map(([batch, text]) => [Number(batch), String(text)]),
  };
}

/**
 * Every stored fingerprint with ts ≥ sinceS, as columns: each result chunk's vectors are copied
 * into growing typed arrays, so millions of rows make no object per row.
 */
export async function readFingerprints(c: DuckDBConnection, sinceS: number): Promise<CommitFingerprints> {
  const result = await c.stream('SELECT fp, ts, tag FROM replay_fingerprints WHERE ts >= $1', [Math.max(-2147483648, Math.min(2147483647, Math.ceil(sinceS)))], [INTEGER]);
  let capacity = 4096;
  let fp = new Uint8Array(capacity * 8);
  let ts = new Uint32Array(capacity);
  let tag = new Int32Array(capacity);
  let n = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    if (!chunk || chunk.rowCount === 0) break;
    const rows = chunk.rowCount;
    if (n + rows > capacity) {
      while (n + rows > capacity) capacity *= 2;
      const grown = { fp: new Uint8Array(capacity * 8), ts: new Uint32Array(capacity), tag: new Int32Array(capacity) };
      grown.fp.set(fp.subarray(0, n * 8));
      grown.ts.set(ts.subarray(0, n));
      grown.tag.set(tag.subarray(0, n));
      ({ fp, ts, tag } = grown);
    }
    const vector = (i: number, bytes: number) => bindings.vector_get_data(bindings.data_chunk_get_vector(chunk.chunk, i), bytes);
    fp.set(vector(0, rows * 8), n * 8);
    new Uint8Array(ts.buffer).set(vector(1, rows * 4), n * 4);
    new Uint8Array(tag.buffer).set(vector(2, rows * 4), n * 4);
    n += rows;
  }
  // Exact-length copies: their buffers can move to another thread whole.
  return { fp: fp.slice(0, n * 8), ts: ts.slice(0, n), tag: tag.slice(0, n) };
}
