import bindings from '@duckdb/node-bindings';
import { BIGINT, DOUBLE, DuckDBDataChunk, INTEGER, TIMESTAMP, type DuckDBAppender, type DuckDBConnection, type DuckDBType } from '@duckdb/node-api';
import type { CommitFingerprints } from './commit-types.js';

/**
 * Columns into DuckDB data chunks, each column's bytes written in place and copied into its
 * vector once per chunk: no value is converted on its own, no object is made per row.
 */

/** DuckDB's vector size: a data chunk holds at most this many rows. */
const CHUNK_ROWS = 2048;
const READING_TYPES = [INTEGER, TIMESTAMP, DOUBLE];
const FINGERPRINT_TYPES = [BIGINT, INTEGER, INTEGER];

/** Microseconds DuckDB's TIMESTAMP holds (years 290308 BC to 294247): beyond, a record is refused. */
const MAX_TS_S = 9.2e12;

type Vector = ReturnType<typeof bindings.data_chunk_get_vector>;

function copy(vector: Vector, data: ArrayBufferView, byteOffset: number, bytes: number): void {
  bindings.copy_data_to_vector(vector, 0, data.buffer as ArrayBuffer, data.byteOffset + byteOffset, bytes);
}

function chunkOf(types: DuckDBType[]): { chunk: DuckDBDataChunk; vectors: Vector[] } {
  const chunk = DuckDBDataChunk.create(types, CHUNK_ROWS);
  return { chunk, vectors: types.map((_, i) => bindings.data_chunk_get_vector(chunk.chunk, i)) };
}

/** Readings of one segment: its columns, each record's series, and the records that go to this partition. */
export interface ReadingsPart {
  ts: Float64Array;
  value: Float64Array;
  series: Int32Array;
  indexes: Uint32Array;
}

/** Appends readings `(series, ts, value)`; throws on a time DuckDB cannot hold (the caller rolls back). */
export function appendReadings(appender: DuckDBAppender, parts: readonly ReadingsPart[]): void {
  const { chunk, vectors } = chunkOf(READING_TYPES);
  const series = new Int32Array(CHUNK_ROWS);
  // TIMESTAMP as int64 microseconds, written as two 32-bit halves: no BigInt per row.
  const ts = new Int32Array(CHUNK_ROWS * 2);
  const value = new Float64Array(CHUNK_ROWS);
  let n = 0;
  const emit = () => {
    copy(vectors[0]!, series, 0, n * 4);
    copy(vectors[1]!, ts, 0, n * 8);
    copy(vectors[2]!, value, 0, n * 8);
    bindings.data_chunk_set_size(chunk.chunk, n);
    appender.appendDataChunk(chunk);
    n = 0;
  };
  for (const part of parts) {
    for (const i of part.indexes) {
      if (n === CHUNK_ROWS) emit();
      const seconds = part.ts[i]!;
      if (!(Math.abs(seconds) <= MAX_TS_S)) throw new RangeError(`a record's time (${seconds}) is not one DuckDB can store`);
      const micros = Math.round(seconds * 1e6);
      const hi = Math.floor(micros / 4294967296);
      ts[n * 2] = (micros - hi * 4294967296) | 0;
      ts[n * 2 + 1] = hi | 0;
      series[n] = part.series[i]!;
      value[n] = part.value[i]!;
      n++;
    }
  }
  if (n > 0) emit();
}

/** Appends fingerprints `(fp, ts, tag)` straight from the request's columns. */
export function appendFingerprints(appender: DuckDBAppender, f: CommitFingerprints): void {
  const total = f.ts.length;
  if (f.tag.length !== total || f.fp.byteLength !== total * 8) throw new Error(`fingerprint columns disagree: ${f.fp.byteLength / 8} fp, ${total} ts, ${f.tag.length} tag`);
  const { chunk, vectors } = chunkOf(FINGERPRINT_TYPES);
  for (let at = 0; at < total; at += CHUNK_ROWS) {
    const n = Math.min(CHUNK_ROWS, total - at);
    copy(vectors[0]!, f.fp, at * 8, n * 8);
    // Unix seconds as INTEGER: the same bits until 2038.
    copy(vectors[1]!, f.ts, at * 4, n * 4);
    copy(vectors[2]!, f.tag, at * 4, n * 4);
    bindings.data_chunk_set_size(chunk.chunk, n);
    appender.appendDataChunk(chunk);
  }
}

/** An appender on `table` inside the connection's open transaction; closing it flushes into the transaction. */
export async function withAppender(c: DuckDBConnection, table: string, fill: (appender: DuckDBAppender) => void): Promise<void> {
  const appender = await c.createAppender(table);
  try {
    fill(appender);
    appender.closeSync();
  } catch (err) {
    try {
      appender.clear();
      appender.closeSync();
    } catch {
      // The appender is unusable already; the caller's ROLLBACK discards what it wrote.
    }
    throw err;
  }
}
