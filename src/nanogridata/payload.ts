/**
 * Frame payloads: CBOR maps (decoded by cbor-x after a walk over the raw bytes that enforces the
 * spec's limits, which cbor-x does not know) and the fixed binary layouts of the C firmware.
 */
import { isUtf8 } from 'node:buffer';
import { Decoder, Encoder } from 'cbor-x';
import type { Options as CborOptions } from 'cbor-x';
import { MAX_MEASUREMENT } from './types.js';

export const MAX_STRING_BYTES = 256;
export const MAX_ARRAY_ITEMS = 64;
export const MAX_MAP_KEYS = 20;
/** Containers may sit at most this many levels below the top-level map. */
export const MAX_NESTING = 4;

export type PayloadMap = Record<string, unknown>;

/** Whether `byte` starts a CBOR map (major type 5, any length encoding). */
export function isCborMapHeader(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0xa0 && byte <= 0xbf;
}

/**
 * Walks one CBOR item at `pos` and returns the position after it, or -1 when it breaks a limit
 * or is malformed. `depth` is the item's depth, the top-level map being 0. Recursion is bounded
 * by MAX_NESTING, so hostile input cannot exhaust the stack.
 */
function walk(b: Buffer, pos: number, end: number, depth: number): number {
  if (pos >= end) return -1;
  const initial = b[pos++]!;
  const major = initial >> 5;
  const info = initial & 0x1f;
  let arg: number;
  if (info < 24) arg = info;
  else if (info === 24) {
    if (pos + 1 > end) return -1;
    arg = b[pos]!;
    pos += 1;
  } else if (info === 25) {
    if (pos + 2 > end) return -1;
    arg = b.readUInt16BE(pos);
    pos += 2;
  } else if (info === 26) {
    if (pos + 4 > end) return -1;
    arg = b.readUInt32BE(pos);
    pos += 4;
  } else if (info === 27) {
    if (pos + 8 > end) return -1;
    // Only needed exactly for lengths, and any length with a high word is far beyond the limits.
    arg = b.readUInt32BE(pos) > 0 ? Number.MAX_SAFE_INTEGER : b.readUInt32BE(pos + 4);
    pos += 8;
  } else {
    return -1; // 28–30 are reserved; 31 is indefinite length (or a stray break), which the spec forbids
  }
  switch (major) {
    case 0:
    case 1:
      return pos;
    case 2:
    case 3: {
      if (arg > MAX_STRING_BYTES || arg > end - pos) return -1;
      const stop = pos + arg;
      if (major === 3 && !isAsciiOrUtf8(b, pos, stop)) return -1;
      return stop;
    }
    case 4:
      if (arg > MAX_ARRAY_ITEMS || depth > MAX_NESTING) return -1;
      for (let i = 0; i < arg; i++) if ((pos = walk(b, pos, end, depth + 1)) < 0) return -1;
      return pos;
    case 5: {
      if (arg > MAX_MAP_KEYS || depth > MAX_NESTING) return -1;
      const keys: string[] = [];
      for (let i = 0; i < 2 * arg; i++) {
        const start = pos;
        if ((pos = walk(b, pos, end, depth + 1)) < 0) return -1;
        if (i % 2 === 1) continue;
        const key = keyOf(b, start, pos);
        if (keys.includes(key)) return -1; // a repeated key: cbor-x would keep the last one silently
        keys.push(key);
      }
      return pos;
    }
    case 6:
      return -1; // tags are forbidden
    default:
      // major 7: false, true, null, undefined (20–23) and floats (25–27); other simple values are not data
      return (info >= 20 && info <= 23) || info >= 25 ? pos : -1;
  }
}

/**
 * What a walked map key `b[start..stop)` is compared by, to find repeats: text by its bytes, an
 * integer by its decimal text (cbor-x makes `1` and `"1"` the same object key), anything else by
 * its raw bytes.
 */
function keyOf(b: Buffer, start: number, stop: number): string {
  const major = b[start]! >> 5;
  const info = b[start]! & 0x1f;
  if (major === 3) return b.toString('latin1', start + (info < 24 ? 1 : info === 24 ? 2 : info === 25 ? 3 : info === 26 ? 5 : 9), stop);
  if (major === 0 || major === 1) {
    const arg =
      info < 24 ? info : info === 24 ? b[start + 1]! : info === 25 ? b.readUInt16BE(start + 1) : info === 26 ? b.readUInt32BE(start + 1) : Number(b.readBigUInt64BE(start + 1));
    return String(major === 0 ? arg : -1 - arg);
  }
  return `\uffff${b.toString('latin1', start, stop)}`; // latin1 text never holds \uffff: no clash with a text key
}

/** Text strings must be valid UTF-8; most are ASCII, which is checked without allocating. */
function isAsciiOrUtf8(b: Buffer, start: number, stop: number): boolean {
  for (let i = start; i < stop; i++) if (b[i]! >= 0x80) return isUtf8(b.subarray(start, stop));
  return true;
}

/** Whether `b[start..end)` is exactly one CBOR map within every limit of the spec. */
export function isValidPayloadCbor(b: Buffer, start = 0, end = b.length): boolean {
  return isCborMapHeader(b[start]) && walk(b, start, end, 0) === end;
}

// int64AsNumber (supported, missing from cbor-x's types): integers beyond 2^53 become (rounded)
// numbers rather than BigInt, which JSON cannot carry. copyBuffers: byte strings are copies, not
// views of the scratch buffer below.
const decoderOptions: CborOptions & { int64AsNumber: boolean } = {
  useRecords: false,
  mapsAsObjects: true,
  int64AsNumber: true,
  copyBuffers: true,
};
// cbor-x's types omit decode's second parameter, the end of the data in the source.
const decoder = new Decoder(decoderOptions) as unknown as { decode(source: Uint8Array, end: number): unknown };
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true });

/**
 * cbor-x decodes from offset 0 and caches a DataView on the source object; giving it a fresh
 * subarray per frame costs a DataView and a property added to a typed array each time, about a
 * third of its decoding time on small payloads. A payload is copied here instead (≤ 1024 bytes;
 * decoding is synchronous, so one scratch buffer serves every call).
 */
const scratch = Buffer.alloc(1024) as Buffer & { dataView?: DataView };
scratch.dataView = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength);

/** The map in `b[start..end)`, or null when it is not a CBOR map within the spec's limits. */
export function decodePayloadMap(b: Buffer, start = 0, end = b.length): PayloadMap | null {
  if (end - start > scratch.length || !isValidPayloadCbor(b, start, end)) return null;
  try {
    const value: unknown = decoder.decode(scratch, b.copy(scratch, 0, start, end));
    return isPlainMap(value) ? value : null;
  } catch {
    return null; // e.g. a map used as a map key, which cbor-x refuses
  }
}

export function isPlainMap(v: unknown): v is PayloadMap {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

/** CBOR for a payload value; maps use the shortest length encoding. The result is a fresh copy. */
export function encodeCbor(value: unknown): Buffer {
  return Buffer.from(encoder.encode(value));
}

/** One reading in a legacy binary payload. */
export interface LegacyReading {
  deviceId: string;
  labId: string | null;
  metric: string;
  unit: string;
  ts: number;
  value: number;
}

/** A fixed binary layout of the C firmware, which has no CBOR encoder. */
export interface LegacyLayout {
  /** The reading, or null when the payload does not fill the layout exactly. */
  decode(payload: Buffer): LegacyReading | null;
  encode(reading: Omit<LegacyReading, 'unit'>): Buffer;
}

/** Reads `u8 len, bytes[len]` as UTF-8 text; null when it overruns or is not UTF-8. */
function readShortText(p: Buffer, pos: number): { text: string; next: number } | null {
  if (pos >= p.length) return null;
  const len = p[pos]!;
  const next = pos + 1 + len;
  if (next > p.length || !isAsciiOrUtf8(p, pos + 1, next)) return null;
  return { text: p.toString('utf8', pos + 1, next), next };
}

function shortTextBytes(text: string, what: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > 255) throw new RangeError(`legacy ${what} is longer than 255 bytes`);
  return bytes;
}

/**
 * The first byte is the device_id length; 160–191 would read as a CBOR map header, so the spec
 * caps a legacy device_id below 160 bytes (both ways: longer ones are not encoded nor accepted).
 */
const LEGACY_DEVICE_MAX = 159;

function legacyDeviceBytes(deviceId: string): Buffer {
  const bytes = shortTextBytes(deviceId, 'device_id');
  if (bytes.length > LEGACY_DEVICE_MAX) throw new RangeError('a legacy device_id must be shorter than 160 bytes');
  return bytes;
}

/** The leading device_id of a legacy layout: not empty, under 160 bytes. */
function readLegacyDevice(p: Buffer): { text: string; next: number } | null {
  const device = readShortText(p, 0);
  return device && device.text !== '' && device.next - 1 <= LEGACY_DEVICE_MAX ? device : null;
}

/** 0x10: `u8 len, device_id, u8 len, lab_id, u32 ts, u32 pressure_pa`. */
export const LEGACY_PRESSURE: LegacyLayout = {
  decode(p) {
    const device = readLegacyDevice(p);
    if (!device) return null;
    const lab = readShortText(p, device.next);
    if (!lab || lab.next + 8 !== p.length) return null;
    return {
      deviceId: device.text,
      // The layout has no "absent": an empty lab_id is the firmware's way to say there is none.
      labId: lab.text === '' ? null : lab.text,
      metric: 'pressure',
      unit: 'Pa',
      ts: p.readUInt32BE(lab.next),
      value: p.readUInt32BE(lab.next + 4),
    };
  },
  encode(r) {
    const device = legacyDeviceBytes(r.deviceId);
    const lab = shortTextBytes(r.labId ?? '', 'lab_id');
    const out = Buffer.allocUnsafe(2 + device.length + lab.length + 8);
    let pos = 0;
    out[pos++] = device.length;
    pos += device.copy(out, pos);
    out[pos++] = lab.length;
    pos += lab.copy(out, pos);
    out.writeUInt32BE(r.ts >>> 0, pos);
    out.writeUInt32BE(r.value >>> 0, pos + 4);
    return out;
  },
};

/** 0x20: `u8 len, device_id, u8 len, gas_type, u32 ts, f32 ppm`; no lab_id. */
export const LEGACY_GAS: LegacyLayout = {
  decode(p) {
    const device = readLegacyDevice(p);
    if (!device) return null;
    const gas = readShortText(p, device.next);
    if (!gas || gas.text === '' || gas.next + 8 !== p.length) return null;
    const value = p.readFloatBE(gas.next + 4);
    if (!(Math.abs(value) <= MAX_MEASUREMENT)) return null;
    return {
      deviceId: device.text,
      labId: null,
      metric: gas.text,
      unit: 'ppm',
      ts: p.readUInt32BE(gas.next),
      value,
    };
  },
  encode(r) {
    const device = legacyDeviceBytes(r.deviceId);
    const gas = shortTextBytes(r.metric, 'gas_type');
    const out = Buffer.allocUnsafe(2 + device.length + gas.length + 8);
    let pos = 0;
    out[pos++] = device.length;
    pos += device.copy(out, pos);
    out[pos++] = gas.length;
    pos += gas.copy(out, pos);
    out.writeUInt32BE(r.ts >>> 0, pos);
    out.writeFloatBE(r.value, pos + 4);
    return out;
  },
};
