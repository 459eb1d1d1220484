/**
 * What the ingest path hands the analytics store to commit, and what the store keeps for it. One
 * commit is one DuckDB transaction: the readings, the accepted frames' fingerprints, the side
 * effects still owed to SQLite, queued history purges and the ingest position, all or nothing.
 */
import type { IngestSource } from '../operational/buffer.js';

/** Packed records (operational/record-batch.ts, the one record form from decode to append) that share a source. */
export interface CommitSegment {
  source: IngestSource;
  /** Moves to the analytics worker (its buffer is the caller's to give). */
  records: Uint8Array;
}

/** Accepted frames' replay fingerprints: n frames, column by column. */
export interface CommitFingerprints {
  /** 8 bytes per frame (FINGERPRINT_BYTES), little-endian u64 when read as two u32 words (lo, hi). */
  fp: Uint8Array;
  /** Frame header time, Unix seconds (the replay window is measured on it). */
  ts: Uint32Array;
  /** Tag of the stream entry the frame came in (a 32-bit hash of its id; 0 over HTTP). */
  tag: Int32Array;
}

export interface CommitRequest {
  segments: CommitSegment[];
  fingerprints?: CommitFingerprints;
  /** Rows of the SQLite work queue (telemetry_buffer) up to this id are in `segments` or were committed before. */
  queueThrough?: number;
  /** Side effects owed to SQLite (devices, usage, events) as JSON text; kept in DuckDB until applied. */
  effects?: string;
  /** Side effects of batches up to this number are applied in SQLite: their rows may go. */
  effectsAppliedThrough?: number;
  /** Last stream entry id of the batch (the stream position, for backups). */
  position?: string;
  /** Fingerprints of frames older than this (Unix seconds) are forgotten. */
  forgetBefore?: number;
  /** History purges (admin gave a claimed sensor to another party): every reading of the sensor so far goes. */
  purges?: Array<{ id: number; sensorId: string }>;
}

export interface CommitResult {
  /** Number of this commit (1, 2, …); `effects` are kept under it. */
  batch: number;
}

/** What the store holds of the ingest path, read once at start. */
export interface IngestState {
  /** Last batch number committed (0: none). */
  batch: number;
  /** Work-queue (telemetry_buffer) id through which rows are in analytics (0: none); a v2 file's high_water. */
  queueThrough: number;
  /** Last stream entry id committed, or null. */
  position: string | null;
  /** Ids of history purges already run. */
  purgesDone: number[];
  /** Side effects of batches whose rows are still kept: [batch, effects JSON], oldest first. */
  effects: Array<[batch: number, effects: string]>;
}
