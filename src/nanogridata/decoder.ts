/**
 * Nanogridata v1 decoder. `inspectFrame` runs every check of the spec except replay, which needs
 * state that the caller may share between consumers; `createDecoder` adds an in-process replay
 * memory for one-shot decoding. Nothing here throws on any input: rejection is normal traffic.
 */
import { createHash } from 'node:crypto';
import type { NanogridataConfig } from '../config.js';
import { HEADER_SIZE, PayloadType, checkHeader } from './frame.js';
import { verifyMac } from './mac.js';
import { decodePayloadMap, isCborMapHeader } from './payload.js';
import { PROFILES } from './profiles.js';
import type { Profile } from './profiles.js';
import { InMemoryReplayMemory } from './replay.js';
import type { SyncReplayMemory } from './replay.js';
import type {
  DecodeResult,
  DecodedFrame,
  FrameContext,
  FrameHeader,
  Inspection,
  RejectReason,
  Rejection,
  ReplayCheck,
} from './types.js';

export interface InspectOptions {
  config: NanogridataConfig;
  /** Server clock, Unix seconds. */
  nowS: number;
}

/** An inspection that passed every check up to replay. */
export type PassedInspection = Extract<Inspection, { ok: true }>;

const NO_CONTEXT: FrameContext = Object.freeze({});
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Scratch for replay keys: `hh:` or `hh:frame:`, then up to 64 hex digits. */
const keyScratch = Buffer.alloc(9 + 64);
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
  let secret: Buffer | undefined;
  if (level === 0) {
    if (!opts.config.acceptUnsigned) return { ok: false, reason: 'unsigned', frameLength };
  } else {
    // A device registered with its own secret wins over the model's secret.
    secret = ctx.deviceSecret ?? opts.config.secrets.get(header.model_id);
    if (secret === undefined || secret.length === 0) return { ok: false, reason: 'no_secret', frameLength };
  }
  const macStart = frameLength - head.macSize;
  if (!verifyMac(level, buf, macStart, secret)) return { ok: false, reason: 'bad_mac', frameLength };

  const maxDriftS = opts.config.maxDriftS;
  if (Math.abs(header.timestamp - opts.nowS) > maxDriftS) return { ok: false, reason: 'timestamp_drift', frameLength };

  return {
    ok: true,
    frameLength,
    replayKey: replayKeyOf(buf, header.model_id, level, macStart, frameLength),
    // Past this the frame's timestamp is outside the window, so a copy would be timestamp_drift anyway.
    replayTtlS: Math.max(1, Math.ceil(header.timestamp + maxDriftS - opts.nowS)),
    result: decodePayload(buf, macStart, header, profile, ctx),
  };
}

/**
 * Levels 1–3: model and MAC (a different frame has a different MAC). Level 0: a digest of the
 * whole frame, because two different frames easily share a 2-byte CRC.
 */
function replayKeyOf(buf: Buffer, model: number, level: number, macStart: number, frameLength: number): string {
  if (level !== 0) return hexKey(model, '', buf, macStart, frameLength);
  const digest = createHash('sha256').update(buf.subarray(0, frameLength)).digest();
  return hexKey(model, 'frame:', digest, 0, digest.length);
}

/**
 * `hh:<prefix><hex of bytes[start..end)>`, written into one flat string: a concatenation would make
 * a rope that every consumer (Map hashing, the replay memory's parser) must flatten again.
 */
function hexKey(model: number, prefix: string, bytes: Uint8Array, start: number, end: number): string {
  const k = keyScratch;
  k[0] = HEX_DIGITS[model >> 4]!;
  k[1] = HEX_DIGITS[model & 15]!;
  k[2] = 0x3a; // ':'
  let p = 3 + k.write(prefix, 3, 'latin1');
  for (let i = start; i < end; i++) {
    const b = bytes[i]!;
    k[p++] = HEX_DIGITS[b >> 4]!;
    k[p++] = HEX_DIGITS[b & 15]!;
  }
  return k.toString('latin1', 0, p);
}

/** The payload is `frame[HEADER_SIZE..payloadEnd)`. */
function decodePayload(frame: Buffer, payloadEnd: number, header: FrameHeader, profile: Profile, ctx: FrameContext): DecodeResult {
  let decoded: DecodedFrame | null;
  try {
    decoded = decodeBody(frame, payloadEnd, header, profile);
  } catch {
    decoded = null; // defensive: a payload that trips anything unforeseen is still only a bad payload
  }
  if (decoded === null) return BAD_PAYLOAD;
  if (ctx.deviceId !== undefined && decoded.device_id !== ctx.deviceId) return DEVICE_MISMATCH;
  return decoded;
}

function decodeBody(frame: Buffer, payloadEnd: number, header: FrameHeader, profile: Profile): DecodedFrame | null {
  if (payloadEnd === HEADER_SIZE || !isCborMapHeader(frame[HEADER_SIZE])) {
    // Only telemetry has a legacy layout; other payload types must be CBOR maps.
    if (header.payload_type !== PayloadType.TELEMETRY || profile.legacy === undefined) return null;
    const r = profile.legacy.decode(frame.subarray(HEADER_SIZE, payloadEnd));
    if (r === null) return null;
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
  if (typeof deviceId !== 'string' || deviceId === '') return null;
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

/** What to ask a ReplayMemory about a passed inspection. */
export function replayCheckOf(inspection: PassedInspection, messageId?: string): ReplayCheck {
  return {
    key: inspection.replayKey,
    messageId,
    ttlS: inspection.replayTtlS,
    // Only frames that end up accepted are remembered.
    remember: inspection.result.ok,
  };
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
  const replay = opts.replay === undefined ? new InMemoryReplayMemory({ now }) : opts.replay;

  const finish = (inspection: Inspection, ctx: FrameContext): DecodeResult => {
    if (!inspection.ok) return { ok: false, reason: inspection.reason };
    const isReplay = replay !== null && replay.checkOne(replayCheckOf(inspection, ctx.messageId));
    return resolveReplay(inspection, isReplay);
  };

  return {
    decode(buf, ctx = NO_CONTEXT) {
      return finish(inspectFrame(buf, ctx, { config, nowS: now() }), ctx);
    },
    decodeAll(body, ctx = NO_CONTEXT) {
      const out: Array<{ index: number; offset: number; result: DecodeResult }> = [];
      for (const f of inspectFrames(body, ctx, { config, nowS: now() })) {
        // A frame's transport identity is the message plus its place in it, so that a repeat
        // inside one body is a replay while a redelivered body is not.
        const frameCtx = ctx.messageId === undefined ? ctx : { ...ctx, messageId: `${ctx.messageId}#${f.index}` };
        out.push({ index: f.index, offset: f.offset, result: finish(f.inspection, frameCtx) });
      }
      return out;
    },
  };
}
