/**
 * Nanogridata v1 decoder. `inspectFrame` runs every check of the spec except replay, which needs
 * state that the caller may share between consumers; `createDecoder` adds an in-process replay
 * memory for one-shot decoding. Nothing here throws on any input: rejection is normal traffic.
 */
import { createHash } from 'node:crypto';
import type { NanogridataConfig } from '../config.js';
import { isSensorId } from '../sensor-id.js';
import { HEADER_SIZE, PayloadType, checkHeader } from './frame.js';
import { verifyMac } from './mac.js';
import { decodePayloadMap, isCborMapHeader } from './payload.js';
import { PROFILES } from './profiles.js';
import type { Profile } from './profiles.js';
import { InMemoryReplayMemory } from './replay.js';
import type { SyncReplayMemory } from './replay.js';
import { FINGERPRINT_BYTES } from './types.js';
import type { DecodeResult, DecodedFrame, FrameContext, FrameHeader, Inspection, RejectReason, Rejection } from './types.js';

export interface InspectOptions {
  config: NanogridataConfig;
  /** Server clock, Unix seconds. */
  nowS: number;
  /**
   * Secrets of devices registered with one of their own, by device id. Such a device is
   * authenticated by that secret only: a frame whose payload names it must verify with it,
   * whether or not the transport named the device.
   */
  deviceSecrets?: ReadonlyMap<string, Buffer>;
}

/** An inspection that passed every check up to replay. */
export type PassedInspection = Extract<Inspection, { ok: true }>;

const NO_CONTEXT: FrameContext = Object.freeze({});
const NO_SECRETS: ReadonlyMap<string, Buffer> = new Map();
const rejection = (reason: RejectReason): Rejection => Object.freeze({ ok: false, reason });
const BAD_PAYLOAD = rejection('bad_payload');
const DEVICE_MISMATCH = rejection('device_mismatch');
const REPLAY = rejection('replay');

/**
 * Checks one frame at the start of `buf` (bytes after its MAC are ignored: in a stream they are
 * the next frame). Never throws. The replay check is left to the caller (see resolveReplay); the
 * failures the spec orders after it (bad_payload, device_mismatch) come back as `ok: true` with
 * the rejection in `result`.
 */
export function inspectFrame(buf: Buffer, ctx: FrameContext = NO_CONTEXT, opts: InspectOptions): Inspection {
  const head = checkHeader(buf);
  if (!head.ok) return head;
  const { header, frameLength } = head;

  const profile = PROFILES.get(header.model_id);
  if (profile === undefined) return { ok: false, reason: 'unknown_model', frameLength };

  const level = header.security_level;
  if (level === 0 && !opts.config.acceptUnsigned) return { ok: false, reason: 'unsigned', frameLength };
  const macStart = frameLength - head.macSize;
  const deviceSecrets = opts.deviceSecrets ?? NO_SECRETS;
  // With devices of their own secret registered, the payload is read before the MAC is checked: its
  // device_id says which secret must verify it (the walker that reads it is bounded for any input).
  let decoded: DecodedFrame | null | undefined;
  let ownSecret: Buffer | undefined;
  if (deviceSecrets.size > 0) {
    decoded = decodeSafely(buf, macStart, header, profile);
    ownSecret = (decoded && deviceSecrets.get(decoded.device_id)) ?? (ctx.deviceId !== undefined ? deviceSecrets.get(ctx.deviceId) : undefined);
  }
  if (level === 0) {
    // Nothing authenticates a level-0 frame, so it can never speak for a device with a secret of its own.
    if (ownSecret !== undefined || !verifyMac(0, buf, macStart)) return { ok: false, reason: 'bad_mac', frameLength };
  } else {
    const secret = ownSecret ?? opts.config.secrets.get(header.model_id);
    if (secret === undefined || secret.length === 0) return { ok: false, reason: 'no_secret', frameLength };
    if (!verifyMac(level, buf, macStart, secret)) return { ok: false, reason: 'bad_mac', frameLength };
  }

  if (Math.abs(header.timestamp - opts.nowS) > opts.config.maxDriftS) return { ok: false, reason: 'timestamp_drift', frameLength };

  if (decoded === undefined) decoded = decodeSafely(buf, macStart, header, profile);
  let result: DecodeResult = decoded ?? BAD_PAYLOAD;
  if (decoded && ctx.deviceId !== undefined && decoded.device_id !== ctx.deviceId) result = DEVICE_MISMATCH;
  return { ok: true, frameLength, replay: { fingerprint: fingerprintOf(buf, level, macStart, frameLength), timestamp: header.timestamp }, result };
}

/**
 * Levels 1–3: the first 64 bits of the MAC (a different frame has a different MAC, and a forger
 * cannot choose it). Level 0: of SHA-256 over the whole frame, because two different frames
 * easily share a 2-byte CRC. A copy, so it outlives the frame's buffer.
 */
function fingerprintOf(buf: Buffer, level: number, macStart: number, frameLength: number): Buffer {
  if (level === 0) return createHash('sha256').update(buf.subarray(0, frameLength)).digest().subarray(0, FINGERPRINT_BYTES);
  return Buffer.from(buf.subarray(macStart, macStart + FINGERPRINT_BYTES));
}

/** The decoded payload, or null when it is not the profile's shape; never throws. */
function decodeSafely(frame: Buffer, payloadEnd: number, header: FrameHeader, profile: Profile): DecodedFrame | null {
  try {
    return decodeBody(frame, payloadEnd, header, profile);
  } catch {
    return null; // defensive: a payload that trips anything unforeseen is still only a bad payload
  }
}

/**
 * Labels (lab, metric, unit) with U+0000 are refused as a bad payload: no label means one, and
 * PostgreSQL's text cannot hold it (the shared mode would fail the whole batch on it).
 */
const hasNul = (texts: ReadonlyArray<string | null>) => texts.some((t) => t !== null && t.includes('\u0000'));

function decodeBody(frame: Buffer, payloadEnd: number, header: FrameHeader, profile: Profile): DecodedFrame | null {
  const decoded = decodeFields(frame, payloadEnd, header, profile);
  if (decoded === null || !decoded.ok) return decoded;
  if (hasNul([decoded.lab_id]) || decoded.records.some((r) => hasNul([r.metric, r.unit]))) return null;
  return decoded;
}

function decodeFields(frame: Buffer, payloadEnd: number, header: FrameHeader, profile: Profile): DecodedFrame | null {
  if (payloadEnd === HEADER_SIZE || !isCborMapHeader(frame[HEADER_SIZE])) {
    // Only telemetry has a legacy layout; other payload types must be CBOR maps.
    if (header.payload_type !== PayloadType.TELEMETRY || profile.legacy === undefined) return null;
    const r = profile.legacy.decode(frame.subarray(HEADER_SIZE, payloadEnd));
    if (r === null || !isSensorId(r.deviceId)) return null;
    return {
      ok: true,
      header,
      device_id: r.deviceId,
      lab_id: r.labId,
      records: [{ sensor_id: r.deviceId, metric: r.metric, unit: r.unit, ts: r.ts, value: r.value }],
    };
  }
  const map = decodePayloadMap(frame, HEADER_SIZE, payloadEnd);
  if (map === null) return null;
  const deviceId = map.device_id;
  if (typeof deviceId !== 'string' || !isSensorId(deviceId)) return null;
  const lab = map.lab_id;
  if (lab !== undefined && lab !== null && typeof lab !== 'string') return null;
  const labId = lab ?? null;
  if (header.payload_type !== PayloadType.TELEMETRY) {
    return { ok: true, header, device_id: deviceId, lab_id: labId, records: [], event: map };
  }
  const records = profile.records(map, deviceId, header.timestamp);
  if (records === null) return null;
  return { ok: true, header, device_id: deviceId, lab_id: labId, records };
}

/** The final result of a passed inspection once the replay memory has answered. */
export function resolveReplay(inspection: PassedInspection, isReplay: boolean): DecodeResult {
  return isReplay ? REPLAY : inspection.result;
}

export interface FrameInspection {
  /** Position of the frame in the body, from 0. */
  index: number;
  /** Byte offset of the frame in the body. */
  offset: number;
  inspection: Inspection;
}

/**
 * Inspects the concatenated frames of a body (HTTP, TCP), in order. When a frame's length cannot
 * be known (truncated header, bad_magic, bad_version, bad_flags, bad_reserved, payload_too_large)
 * that frame is yielded as rejected and iteration stops: there is no way to find where the next
 * frame starts, and guessing would turn garbage into frames. Likewise a frame truncated by the end
 * of the body is the last one. An empty body yields nothing.
 */
export function* inspectFrames(body: Buffer, ctx: FrameContext, opts: InspectOptions): Generator<FrameInspection> {
  let offset = 0;
  for (let index = 0; offset < body.length; index++) {
    const inspection = inspectFrame(offset === 0 ? body : body.subarray(offset), ctx, opts);
    yield { index, offset, inspection };
    if (inspection.frameLength === undefined) return;
    offset += inspection.frameLength;
  }
}

export interface DecoderOptions {
  config: NanogridataConfig;
  /** Clock in Unix seconds; defaults to the system clock. */
  now?: () => number;
  /** Replay memory; defaults to a fresh in-process one on the same clock; null disables replay detection. */
  replay?: SyncReplayMemory | null;
  deviceSecrets?: ReadonlyMap<string, Buffer>;
}

export interface FrameDecoder {
  /** Decodes the frame at the start of `buf` (trailing bytes ignored) and records it if accepted. */
  decode(buf: Buffer, ctx?: FrameContext): DecodeResult;
  /** Decodes every frame of a body of concatenated frames (see inspectFrames for where it stops). */
  decodeAll(body: Buffer, ctx?: FrameContext): Array<{ index: number; offset: number; result: DecodeResult }>;
}

/** Synchronous one-shot decoding with in-process replay memory (tools, tests, benchmarks). */
export function createDecoder(opts: DecoderOptions): FrameDecoder {
  const { config } = opts;
  const now = opts.now ?? (() => Date.now() / 1000);
  const replay = opts.replay === undefined ? new InMemoryReplayMemory({ now, maxDriftS: config.maxDriftS }) : opts.replay;
  const inspect = (): InspectOptions => ({ config, nowS: now(), ...(opts.deviceSecrets ? { deviceSecrets: opts.deviceSecrets } : {}) });

  const finish = (inspection: Inspection): DecodeResult => {
    if (!inspection.ok) return { ok: false, reason: inspection.reason };
    // Only frames that end up accepted are remembered.
    const isReplay = replay !== null && replay.checkOne(inspection.replay, inspection.result.ok);
    return resolveReplay(inspection, isReplay);
  };

  return {
    decode(buf, ctx = NO_CONTEXT) {
      return finish(inspectFrame(buf, ctx, inspect()));
    },
    decodeAll(body, ctx = NO_CONTEXT) {
      return [...inspectFrames(body, ctx, inspect())].map((f) => ({ index: f.index, offset: f.offset, result: finish(f.inspection) }));
    },
  };
}
