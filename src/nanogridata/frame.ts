/** Nanogridata v1 frame header: constants, enums and the header checks, in the spec's order. */
import type { FrameHeader, RejectReason } from './types.js';

export const MAGIC = 0xc153;
export const VERSION = 0x01;
export const HEADER_SIZE = 14;
export const MAX_PAYLOAD = 1024;

export const PayloadType = {
  TELEMETRY: 1,
  CONFIG: 2,
  EVENT: 3,
  COMMAND: 4,
  CALIBRATION: 5,
} as const;
export type PayloadType = (typeof PayloadType)[keyof typeof PayloadType];

export const ModelId = {
  ESP32_PRESSURE: 0x10,
  STM32_GAS: 0x20,
  ASIC_MULTI: 0x30,
  RPI_NODE: 0x40,
  CUSTOM: 0xff,
} as const;
export type ModelId = (typeof ModelId)[keyof typeof ModelId];

export const SecurityLevel = { NONE: 0, STANDARD: 1, HIGH: 2, MILITARY: 3 } as const;
export type SecurityLevel = (typeof SecurityLevel)[keyof typeof SecurityLevel];

/** MAC bytes after the payload, by security level: CRC-16, HMAC/16, HMAC, HMAC. */
export const MAC_SIZES: readonly number[] = [2, 16, 32, 32];

export function isPayloadType(n: number): n is PayloadType {
  return n >= 1 && n <= 5;
}

export type HeaderCheck =
  | { ok: true; header: FrameHeader; macSize: number; frameLength: number }
  | { ok: false; reason: RejectReason; frameLength?: number };

/**
 * The checks that need only the header, in the spec's order: truncated → bad_magic → bad_version →
 * bad_flags → bad_reserved → payload_too_large → truncated (full length) → bad_payload_type.
 * `frameLength` is reported once every header field is valid (magic through length): before that
 * the bytes may not be a v1 frame at all, so the length field is not trusted for resync.
 */
export function checkHeader(buf: Buffer): HeaderCheck {
  if (buf.length < HEADER_SIZE) return { ok: false, reason: 'truncated' };
  if (buf.readUInt16BE(0) !== MAGIC) return { ok: false, reason: 'bad_magic' };
  if (buf[2] !== VERSION) return { ok: false, reason: 'bad_version' };
  const flags = buf[5];
  const level = flags & 0x0f;
  if (flags & 0xf0 || level > 3) return { ok: false, reason: 'bad_flags' };
  if (buf.readUInt16BE(12) !== 0) return { ok: false, reason: 'bad_reserved' };
  const length = buf.readUInt16BE(6);
  if (length > MAX_PAYLOAD) return { ok: false, reason: 'payload_too_large' };
  const macSize = MAC_SIZES[level];
  const frameLength = HEADER_SIZE + length + macSize;
  if (buf.length < frameLength) return { ok: false, reason: 'truncated', frameLength };
  const payloadType = buf[4];
  if (!isPayloadType(payloadType)) return { ok: false, reason: 'bad_payload_type', frameLength };
  return {
    ok: true,
    header: {
      model_id: buf[3],
      payload_type: payloadType,
      security_level: level,
      timestamp: buf.readUInt32BE(8),
      length,
    },
    macSize,
    frameLength,
  };
}

/** Writes the 14 header bytes (reserved = 0) at the start of `target`. */
export function writeHeader(
  target: Buffer,
  h: { modelId: number; payloadType: number; level: number; timestamp: number; length: number },
): void {
  target.writeUInt16BE(MAGIC, 0);
  target[2] = VERSION;
  target[3] = h.modelId;
  target[4] = h.payloadType;
  target[5] = h.level;
  target.writeUInt16BE(h.length, 6);
  target.writeUInt32BE(h.timestamp >>> 0, 8);
  target.writeUInt16BE(0, 12);
}
