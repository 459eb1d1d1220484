/**
 * Decodes a batch of frames into what the pipeline stores: per frame, its verdict up to the
 * replay check; for the frames that passed, their fingerprints; for the telemetry among them,
 * their records packed by column. Pure and synchronous: the decode worker runs it off the main
 * thread, and its input and output are plain data that cross threads cheaply.
 */
import type { NanogridataConfig } from '../config.js';
import { inspectFrame, type InspectOptions } from '../nanogridata/decoder.js';
import { FINGERPRINT_BYTES, type RejectReason } from '../nanogridata/types.js';
import { RecordBatchBuilder } from '../operational/record-batch.js';

export interface DecodeRequest {
  /** Every frame's bytes, one after the other; when the array spans its whole buffer, that buffer moves to the worker. */
  bytes: Uint8Array;
  /** End offset of each frame in `bytes`. */
  ends: Uint32Array;
  /** The device the transport named for each frame (null: none); null when the transport named none for any. */
  deviceIds: Array<string | null> | null;
  /** Server clock, Unix seconds. */
  nowS: number;
}

/** A frame that passed every check up to replay. */
export interface PassedFrame {
  /** Header timestamp. */
  timestamp: number;
  /** What the frame becomes if it is not a replay: accepted, or one of the reasons the spec orders after replay. */
  later: 'bad_payload' | 'device_mismatch' | null;
  deviceId: string;
  labId: string | null;
  modelId: number;
  payloadType: number;
  /** Records of this frame in `records` (telemetry only). */
  recordCount: number;
  /** The payload map of a non-telemetry frame (kept as a device event). */
  event?: Record<string, unknown>;
}

export type FrameVerdict = { reason: RejectReason } | PassedFrame;

export interface DecodedBatch {
  verdicts: FrameVerdict[];
  /** FINGERPRINT_BYTES per frame (zeros for rejected ones). */
  fingerprints: Uint8Array;
  /** Packed records of the telemetry frames that passed, in frame order. */
  records: Uint8Array;
}

const PAYLOAD_TELEMETRY = 1;
const EMPTY = Buffer.alloc(0);

export function decodeBatch(request: DecodeRequest, config: NanogridataConfig, deviceSecrets: ReadonlyMap<string, Buffer>): DecodedBatch {
  const opts: InspectOptions = { config, nowS: request.nowS, deviceSecrets };
  const count = request.ends.length;
  const all = Buffer.from(request.bytes.buffer, request.bytes.byteOffset, request.bytes.byteLength);
  const fingerprints = new Uint8Array(count * FINGERPRINT_BYTES);
  const records = new RecordBatchBuilder(count * 2);
  const verdicts: FrameVerdict[] = new Array(count);
  let start = 0;
  for (let i = 0; i < count; i++) {
    const end = request.ends[i]!;
    const frame = end > start ? all.subarray(start, end) : EMPTY;
    start = end;
    const deviceId = request.deviceIds?.[i];
    const inspection = inspectFrame(frame, deviceId == null ? {} : { deviceId }, opts);
    if (!inspection.ok) {
      verdicts[i] = { reason: inspection.reason };
      continue;
    }
    fingerprints.set(inspection.replay.fingerprint, i * FINGERPRINT_BYTES);
    const result = inspection.result;
    if (!result.ok) {
      verdicts[i] = { timestamp: inspection.replay.timestamp, later: result.reason as PassedFrame['later'], deviceId: '', labId: null, modelId: 0, payloadType: 0, recordCount: 0 };
      continue;
    }
    const { header } = result;
    const verdict: PassedFrame = {
      timestamp: header.timestamp,
      later: null,
      deviceId: result.device_id,
      labId: result.lab_id,
      modelId: header.model_id,
      payloadType: header.payload_type,
      recordCount: 0,
    };
    if (header.payload_type === PAYLOAD_TELEMETRY) {
      for (const r of result.records) records.add(r, result.lab_id, header.model_id);
      verdict.recordCount = result.records.length;
    } else {
      verdict.event = result.event ?? {};
    }
    verdicts[i] = verdict;
  }
  return { verdicts, fingerprints, records: records.toBuffer() };
}

export const isPassed = (v: FrameVerdict): v is PassedFrame => !('reason' in v);
