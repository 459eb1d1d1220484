import { AppError } from '../errors.js';
import { framesResult, type FramesResult } from './frames-result.js';
import { MAX_BAD_MACS_PER_BODY, type CommitOptions, type IngestUnit, type UnitOutcome } from './pipeline.js';
import type { Reading } from './reading.js';
import { splitFrames } from './split-frames.js';

/** What the HTTP routes ingest through, in either mode (the embedded pipeline or the shared one). */
export interface HttpIngest {
  /** A body of concatenated frames; each frame is its own message (an identical repeat is a replay). */
  frames(body: Buffer, options: { deviceId?: string | undefined; maxFrames: number }): Promise<FramesResult>;
  /** One JSON reading, of `owner` (a user) or else the admin. */
  reading(reading: Reading, owner: string | undefined): Promise<UnitOutcome>;
  /** JSON readings stored together or not at all (403 when one names another's sensor). */
  readings(readings: readonly Reading[], owner: string | undefined): Promise<UnitOutcome[]>;
}

/** A pipeline that decodes and commits a batch of units (ingest/pipeline.ts, postgres/ingest.ts). */
export interface UnitIngest {
  ingest(units: readonly IngestUnit[], options: CommitOptions & { maxBadMacs?: number }): Promise<UnitOutcome[]>;
}

/**
 * A frame body through either pipeline. A body of more than `maxFrames` frames is refused whole
 * (413) before any is decoded; the MACs are checked until MAX_BAD_MACS_PER_BODY fail.
 */
export async function ingestFrameBody(pipeline: UnitIngest, body: Buffer, options: { deviceId?: string | undefined; maxFrames: number }): Promise<FramesResult> {
  const { frames, unreadable, tooMany } = splitFrames(body, options.maxFrames);
  if (tooMany) {
    throw new AppError('too_many_frames', 413, `the body holds more than ${options.maxFrames} frames: send at most ${options.maxFrames} per request`);
  }
  const { deviceId } = options;
  const units: IngestUnit[] = frames.map((bytes) => ({ kind: 'frame', bytes, ...(deviceId !== undefined ? { deviceId } : {}) }));
  if (unreadable) units.push({ kind: 'invalid', reason: unreadable.reason });
  return framesResult(await pipeline.ingest(units, { source: 'http_frames', maxBadMacs: MAX_BAD_MACS_PER_BODY }));
}

export const ownerOption = (owner: string | undefined) => (owner !== undefined ? { owner } : {});
