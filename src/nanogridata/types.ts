/** Shapes shared by the Nanogridata decoder, its callers and the replay memory. See shared/design/nanogridata-v1.md. */

export const REJECT_REASONS = [
  'truncated',
  'bad_magic',
  'bad_version',
  'bad_flags',
  'bad_reserved',
  'payload_too_large',
  'bad_payload_type',
  'unknown_model',
  'unsigned',
  'no_secret',
  'bad_mac',
  'timestamp_drift',
  'replay',
  'bad_payload',
  'device_mismatch',
  // Not the decoder's: the frames of an HTTP body left unchecked once too many of its frames
  // failed their MAC (a forged flood costs an HMAC per frame).
  'not_verified',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export interface FrameHeader {
  model_id: number;
  payload_type: number;
  security_level: number;
  timestamp: number;
  length: number;
}

/**
 * The largest magnitude a measurement may have (frames and JSON readings alike): far beyond any
 * physical sensor, and small enough that sums and squares over billions of readings stay finite.
 */
export const MAX_MEASUREMENT = 1e15;

/** One measurement, as it goes to the analytics store. */
export interface MeasurementRecord {
  sensor_id: string;
  metric: string;
  unit: string;
  ts: number;
  value: number;
}

export interface DecodedFrame {
  ok: true;
  header: FrameHeader;
  device_id: string;
  lab_id: string | null;
  records: MeasurementRecord[];
  /** For payload types other than TELEMETRY: the decoded payload map, kept as a device event. */
  event?: Record<string, unknown>;
}

export interface Rejection {
  ok: false;
  reason: RejectReason;
}

export type DecodeResult = DecodedFrame | Rejection;

/** What the transport knows about a frame. */
export interface FrameContext {
  /** Device named by the transport (stream field `device_id`, HTTP header `X-Device-Id`). */
  deviceId?: string;
}

/** Bytes of a frame's replay fingerprint: 64 bits of its MAC (levels 1–3) or of SHA-256 of the whole frame (level 0). */
export const FINGERPRINT_BYTES = 8;

/** What a replay memory is asked about a frame: its fingerprint, and its header time (it is remembered until that leaves the window). */
export interface ReplayItem {
  fingerprint: Buffer;
  /** Header timestamp, Unix seconds. */
  timestamp: number;
}

/**
 * Result of every check except the replay check, which needs shared state and is done by the caller
 * (in a batch, through a replay memory) so that several consumers can agree.
 */
export type Inspection =
  | (Rejection & {
      /** Bytes this frame occupies in a byte stream, when the header allowed it to be known. */
      frameLength?: number;
    })
  | {
      ok: true;
      frameLength: number;
      /** The frame's identity for replay detection. */
      replay: ReplayItem;
      /** The decoded frame, or a failure the spec orders after `replay` (bad_payload, device_mismatch). */
      result: DecodeResult;
    };
