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
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export interface FrameHeader {
  model_id: number;
  payload_type: number;
  security_level: number;
  timestamp: number;
  length: number;
}

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
  /** That device's own secret, when it is registered with one; wins over the per-model secret. */
  deviceSecret?: Buffer;
  /** Transport message id (Redis stream entry id). The same id seen again is a redelivery, not a replay. */
  messageId?: string;
}

/**
 * Result of every check except the replay check, which needs shared state and is done by the caller
 * (in a batch, through a ReplayMemory) so that several consumers can agree.
 */
export type Inspection =
  | (Rejection & {
      /** Bytes this frame occupies in a byte stream, when the header allowed it to be known. */
      frameLength?: number;
    })
  | {
      ok: true;
      frameLength: number;
      /** Identity of the frame for replay detection (model + MAC for levels 1–3, digest of the whole frame for 0). */
      replayKey: string;
      /** How long the key must be remembered: until the frame's timestamp leaves the drift window. */
      replayTtlS: number;
      /** The decoded frame, or a failure the spec orders after `replay` (bad_payload, device_mismatch). */
      result: DecodeResult;
    };

export interface ReplayCheck {
  key: string;
  messageId?: string;
  ttlS: number;
  /**
   * true when the frame will be accepted if it is not a replay: the key is remembered.
   * false when it fails later anyway: the memory is only consulted, never written.
   */
  remember: boolean;
}

/**
 * Remembers accepted frames. `check` answers, for each item in order, whether it is a replay:
 * the key is known under a different (or no) message id. Items earlier in the batch count.
 */
export interface ReplayMemory {
  check(items: ReplayCheck[]): Promise<boolean[]>;
}
