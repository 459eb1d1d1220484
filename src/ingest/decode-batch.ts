/**
 * Decodes a batch of frames into what the pipeline stores: per frame, its verdict up to the
 * replay check; for the frames that passed, their fingerprints; for the telemetry among them,
 * their records packed by column. Pure and synchronous: the decode worker runs it off the main
 * thread. Input and output are typed arrays and a few strings, which cross threads cheaply and
 * leave no object per frame for the garbage collector.
 */
import type { NanogridataConfig } from '../config.js';
import { inspectFrame, type InspectOptions } from '../nanogridata/decoder.js';
import { FINGERPRINT_BYTES, REJECT_REASONS, type RejectReason } from '../nanogridata/types.js';
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
  /** After this many bad_mac frames the rest are not_verified, unchecked. Default: no limit. */
  maxBadMacs?: number;
}

/** `status` of a frame that passed every check up to replay. */
export const PASSED = 0;
/** `later`: what a passed frame becomes if it is not a replay. */
export const LATER: ReadonlyArray<'bad_payload' | 'device_mismatch' | null> = [null, 'bad_payload', 'device_mismatch'];

export interface DecodedBatch {
  /** Per frame: PASSED, or 1 + the index of its rejection in REJECT_REASONS. */
  status: Uint8Array;
  /** Per passed frame: index in LATER (0: accepted unless a replay). */
  later: Uint8Array;
  /** Header timestamps. */
  timestamps: Uint32Array;
  payloadTypes: Uint8Array;
  modelIds: Uint8Array;
  /** Records of each telemetry frame in `records`, in frame order. */
  recordCounts: Uint16Array;
  /** Index of the payload's device_id in `strings`. */
  deviceIds: Uint32Array;
  /** Index of the payload's lab_id in `strings`, or -1. */
  labIds: Int32Array;
  strings: string[];
  /** The payload maps of non-telemetry frames (device events), by frame index. */
  events: Array<[frame: number, body: Record<string, unknown>]>;
  /** FINGERPRINT_BYTES per frame (zeros for rejected ones). */
  fingerprints: Uint8Array;
  /** Packed records of the telemetry frames that passed, in frame order. */
  records: Uint8Array;
}

export const reasonOf = (batch: DecodedBatch, i: number): RejectReason => REJECT_REASONS[batch.status[i]! - 1]!;

const PAYLOAD_TELEMETRY = 1;
const EMPTY = Buffer.alloc(0);

export function decodeBatch(request: DecodeRequest, config: NanogridataConfig, deviceSecrets: ReadonlyMap<string, Buffer>): DecodedBatch {
  const opts: InspectOptions = { config, nowS: request.nowS, deviceSecrets };
  const count = request.ends.length;
  const all = Buffer.from(request.bytes.buffer, request.bytes.byteOffset, request.bytes.byteLength);
  const out: DecodedBatch = {
    status: new Uint8Array(count),
    later: new Uint8Array(count),
    timestamps: new Uint32Array(count),
    payloadTypes: new Uint8Array(count),
    modelIds: new Uint8Array(count),
    recordCounts: new Uint16Array(count),
    deviceIds: new Uint32Array(count),
    labIds: new Int32Array(count).fill(-1),
    strings: [],
    events: [],
    fingerprints: new Uint8Array(count * FINGERPRINT_BYTES),
    records: new Uint8Array(0),
  };
  const stringIndex = new Map<string, number>();
  const intern = (s: string) => {
    let k = stringIndex.get(s);
    if (k === undefined) {
      k = out.strings.push(s) - 1;
      stringIndex.set(s, k);
    }
    return k;
  };
  const records = new RecordBatchBuilder(count * 2);
  const BAD_MAC = REJECT_REASONS.indexOf('bad_mac') + 1;
  let badMacs = request.maxBadMacs ?? Infinity;
  let start = 0;
  for (let i = 0; i < count; i++) {
    if (badMacs <= 0) {
      out.status.fill(REJECT_REASONS.indexOf('not_verified') + 1, i);
      break;
    }
    const end = request.ends[i]!;
    const frame = end > start ? all.subarray(start, end) : EMPTY;
    start = end;
    const deviceId = request.deviceIds?.[i];
    const inspection = inspectFrame(frame, deviceId == null ? {} : { deviceId }, opts);
    if (!inspection.ok) {
      out.status[i] = REJECT_REASONS.indexOf(inspection.reason) + 1;
      if (out.status[i] === BAD_MAC) badMacs--;
      continue;
    }
    out.fingerprints.set(inspection.replay.fingerprint, i * FINGERPRINT_BYTES);
    out.timestamps[i] = inspection.replay.timestamp;
    const result = inspection.result;
    if (!result.ok) {
      out.later[i] = LATER.indexOf(result.reason as 'bad_payload' | 'device_mismatch');
      continue;
    }
    const { header } = result;
    out.payloadTypes[i] = header.payload_type;
    out.modelIds[i] = header.model_id;
    out.deviceIds[i] = intern(result.device_id);
    if (result.lab_id !== null) out.labIds[i] = intern(result.lab_id);
    if (header.payload_type === PAYLOAD_TELEMETRY) {
      for (const r of result.records) records.add(r, result.lab_id, header.model_id);
      out.recordCounts[i] = result.records.length;
    } else {
      out.events.push([i, result.event ?? {}]);
    }
  }
  out.records = records.toBuffer();
  return out;
}

/** The buffers of a decoded batch, to move them between threads. */
export const buffersOf = (b: DecodedBatch): ArrayBuffer[] =>
  [b.status, b.later, b.timestamps, b.payloadTypes, b.modelIds, b.recordCounts, b.deviceIds, b.labIds, b.fingerprints, b.records].map((a) => a.buffer as ArrayBuffer);
