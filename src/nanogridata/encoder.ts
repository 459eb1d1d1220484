/**
 * Nanogridata v1 encoder, the decoder's inverse for every level and profile (CBOR and legacy).
 * Used by tests, the frame tool, the simulator and benchmarks; it throws on impossible input
 * (unlike the decoder, its input comes from code, not from the network).
 */
import { HEADER_SIZE, MAC_SIZES, MAX_PAYLOAD, ModelId, PayloadType, writeHeader } from './frame.js';
import { computeMac } from './mac.js';
import { LEGACY_GAS, LEGACY_PRESSURE, encodeCbor } from './payload.js';
import type { PayloadMap } from './payload.js';

export interface EncodeFrameInput {
  modelId: number;
  /** Defaults to TELEMETRY (1). */
  payloadType?: number;
  /** Security level 0–3. */
  level: number;
  /** Header timestamp, Unix seconds. */
  timestamp: number;
  /** A map, encoded as CBOR, or the raw payload bytes (legacy layouts, deliberately broken CBOR). */
  payload: object | Uint8Array;
  /** Needed for levels 1–3. */
  secret?: Buffer;
  /** Allows payloads over 1024 bytes (up to 65535), to build `payload_too_large` frames in tests. */
  allowOversize?: boolean;
}

export function encodeFrame(input: EncodeFrameInput): Buffer {
  const { modelId, level, timestamp } = input;
  const payloadType = input.payloadType ?? PayloadType.TELEMETRY;
  if (!Number.isInteger(level) || level < 0 || level > 3) throw new RangeError(`security level must be 0–3, got ${level}`);
  if (!Number.isInteger(modelId) || modelId < 0 || modelId > 0xff) throw new RangeError(`model id must be a byte, got ${modelId}`);
  if (!Number.isInteger(payloadType) || payloadType < 0 || payloadType > 0xff) {
    throw new RangeError(`payload type must be a byte, got ${payloadType}`);
  }
  if (!Number.isInteger(timestamp) || timestamp < 0 || timestamp > 0xffffffff) {
    throw new RangeError(`timestamp must be a u32 of Unix seconds, got ${timestamp}`);
  }
  if (level > 0 && (input.secret === undefined || input.secret.length === 0)) {
    throw new Error(`security level ${level} needs a secret`);
  }
  const payload = input.payload instanceof Uint8Array ? input.payload : encodeCbor(input.payload);
  const limit = input.allowOversize ? 0xffff : MAX_PAYLOAD;
  if (payload.length > limit) throw new RangeError(`payload of ${payload.length} bytes exceeds ${limit}`);

  const macStart = HEADER_SIZE + payload.length;
  const frame = Buffer.allocUnsafe(macStart + MAC_SIZES[level]!);
  writeHeader(frame, { modelId, payloadType, level, timestamp, length: payload.length });
  frame.set(payload, HEADER_SIZE);
  computeMac(level, frame.subarray(0, macStart), input.secret).copy(frame, macStart);
  return frame;
}

export interface EntryInput {
  /** Unix seconds; omitted, the decoder uses the header timestamp. */
  ts?: number;
  value: number;
}

interface DeviceInput {
  deviceId: string;
  /** Omitted (or null) leaves the key out. */
  labId?: string | null;
}

function withDevice(d: DeviceInput, rest: PayloadMap): PayloadMap {
  return d.labId == null ? { device_id: d.deviceId, ...rest } : { device_id: d.deviceId, lab_id: d.labId, ...rest };
}

const entry = (e: EntryInput, valueKey: string): PayloadMap =>
  e.ts === undefined ? { [valueKey]: e.value } : { ts: e.ts, [valueKey]: e.value };

/** 0x10 NANO-ESP32-PRESSURE: `{device_id, lab_id?, entries: [{ts, value}]}`, values in Pa. */
export function pressurePayload(p: DeviceInput & { entries: EntryInput[] }): PayloadMap {
  return withDevice(p, { entries: p.entries.map((e) => entry(e, 'value')) });
}

/** 0x20 NANO-STM32-GAS: `{device_id, lab_id?, gas_type, entries: [{ts, ppm}]}`. */
export function gasPayload(p: DeviceInput & { gasType: string; entries: EntryInput[] }): PayloadMap {
  return withDevice(p, { gas_type: p.gasType, entries: p.entries.map((e) => entry(e, 'ppm')) });
}

export interface SensorInput {
  type: string;
  unit: string;
  entries: EntryInput[];
}

/** 0x30 / 0x40 / 0xFF: `{device_id, lab_id?, sensors: [{type, unit, entries: [{ts, value}]}]}`. */
export function multiPayload(p: DeviceInput & { sensors: SensorInput[] }): PayloadMap {
  return withDevice(p, {
    sensors: p.sensors.map((s) => ({ type: s.type, unit: s.unit, entries: s.entries.map((e) => entry(e, 'value')) })),
  });
}

/** 0x10 legacy binary layout; `labId` may be empty or null (decodes as null). */
export function legacyPressurePayload(p: { deviceId: string; labId?: string | null; ts: number; pressurePa: number }): Buffer {
  return LEGACY_PRESSURE.encode({
    deviceId: p.deviceId,
    labId: p.labId ?? null,
    metric: 'pressure',
    ts: p.ts,
    value: p.pressurePa,
  });
}

/** 0x20 legacy binary layout (no lab_id; ppm as f32). */
export function legacyGasPayload(p: { deviceId: string; gasType: string; ts: number; ppm: number }): Buffer {
  return LEGACY_GAS.encode({ deviceId: p.deviceId, labId: null, metric: p.gasType, ts: p.ts, value: p.ppm });
}

export interface ReadingInput extends DeviceInput {
  ts?: number;
  value: number;
  /** Gas (0x20) or sensor type (multi models); defaults `CO2` / `temperature`. */
  metric?: string;
  /** Multi models only; defaults `°C`. */
  unit?: string;
  /** Use the legacy binary layout (0x10 and 0x20 only). */
  legacy?: boolean;
}

/** The payload of one reading in the shape of `modelId`'s profile (the frame tool's `encode`). */
export function readingPayload(modelId: number, r: ReadingInput): PayloadMap | Buffer {
  const entries = [{ ts: r.ts, value: r.value }];
  if (r.legacy) {
    if (r.ts === undefined) throw new Error('a legacy payload needs a ts');
    if (modelId === ModelId.ESP32_PRESSURE) return legacyPressurePayload({ ...r, ts: r.ts, pressurePa: r.value });
    if (modelId === ModelId.STM32_GAS) return legacyGasPayload({ ...r, ts: r.ts, gasType: r.metric ?? 'CO2', ppm: r.value });
    throw new Error(`model 0x${modelId.toString(16)} has no legacy layout`);
  }
  if (modelId === ModelId.ESP32_PRESSURE) return pressurePayload({ ...r, entries });
  if (modelId === ModelId.STM32_GAS) return gasPayload({ ...r, gasType: r.metric ?? 'CO2', entries });
  return multiPayload({ ...r, sensors: [{ type: r.metric ?? 'temperature', unit: r.unit ?? '°C', entries }] });
}
