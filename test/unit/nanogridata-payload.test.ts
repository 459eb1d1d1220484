import { describe, expect, it } from 'vitest';
import type { NanogridataConfig } from '../../src/config.js';
import { createDecoder } from '../../src/nanogridata/decoder.js';
import { encodeFrame, legacyPressurePayload } from '../../src/nanogridata/encoder.js';
import { encodeCbor, isValidPayloadCbor } from '../../src/nanogridata/payload.js';
import type { DecodeResult } from '../../src/nanogridata/types.js';

const NOW = 1_767_225_600;
const config: NanogridataConfig = { secrets: new Map(), acceptUnsigned: true, maxDriftS: 3600 };

/** Decodes `payload` in a level-0 frame of `modelId`. */
function decodePayload(payload: object | Buffer, modelId = 0x10, payloadType = 1): DecodeResult {
  const frame = encodeFrame({ modelId, payloadType, level: 0, timestamp: NOW, payload });
  return createDecoder({ config, now: () => NOW }).decode(frame);
}

/** CBOR text string header + bytes (short strings only). */
const t = (s: string) => Buffer.concat([Buffer.from([0x60 + Buffer.byteLength(s)]), Buffer.from(s)]);
/** `{device_id: "D", entries: [{value: <raw item>}]}` with the value given as raw CBOR. */
const withRawValue = (item: Buffer) =>
  Buffer.concat([Buffer.from([0xa2]), t('device_id'), t('D'), t('entries'), Buffer.from([0x81, 0xa1]), t('value'), item]);

describe('Nanogridata payload rules beyond the shared vectors', () => {
  it('accepts a raw-built payload as a baseline', () => {
    expect(decodePayload(withRawValue(Buffer.from([0x18, 0x2a])))).toMatchObject({ ok: true, records: [{ value: 42, ts: NOW }] });
  });

  it('rejects CBOR simple values other than false/true/null/undefined', () => {
    expect(decodePayload(withRawValue(Buffer.from([0xf0])))).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload(withRawValue(Buffer.from([0xf8, 0x40])))).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('rejects NaN and infinite readings, which the JSON decoded form cannot carry', () => {
    expect(decodePayload(withRawValue(Buffer.from('f97e00', 'hex')))).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload(withRawValue(Buffer.from('fa7f800000', 'hex')))).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', entries: [{ ts: Infinity, value: 1 }] })).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('decodes 64-bit integers as numbers', () => {
    expect(decodePayload(withRawValue(Buffer.from('1b0000000100000000', 'hex')))).toMatchObject({ ok: true, records: [{ value: 2 ** 32 }] });
    expect(decodePayload(withRawValue(Buffer.from('3b0000000100000000', 'hex')))).toMatchObject({ ok: true, records: [{ value: -(2 ** 32) - 1 }] });
  });

  it('rejects text that is not valid UTF-8', () => {
    const bad = Buffer.concat([Buffer.from([0xa2]), t('device_id'), Buffer.from([0x62, 0xc3, 0x28]), t('entries'), Buffer.from([0x80])]);
    expect(isValidPayloadCbor(bad)).toBe(false);
    expect(decodePayload(bad)).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('requires a non-empty text device_id and a text lab_id when there is one', () => {
    expect(decodePayload({ device_id: '', entries: [] })).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 7, entries: [] })).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', lab_id: 3, entries: [] })).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', lab_id: null, entries: [] })).toMatchObject({ ok: true, lab_id: null });
  });

  it('rejects U+0000 in a lab_id, metric or unit (CBOR and legacy layouts), and keeps it in event bodies', () => {
    expect(decodePayload({ device_id: 'D', lab_id: 'L\u0000', entries: [{ value: 1 }] })).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', lab_id: 'L', entries: [{ value: 1 }] })).toMatchObject({ ok: true, lab_id: 'L' });
    expect(decodePayload(legacyPressurePayload({ deviceId: 'D', labId: 'L\u0000', ts: NOW, pressurePa: 1 }))).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', sensors: [{ type: 'gas', unit: 'ppm', entries: [{ value: 1 }] }] }, 0x30)).toMatchObject({ ok: true, records: [{ metric: 'gas', unit: 'ppm' }] });
    expect(decodePayload({ device_id: 'D', sensors: [{ type: 'gas\u0000', unit: 'ppm', entries: [{ value: 1 }] }] }, 0x30)).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', sensors: [{ type: 'gas', unit: 'p\u0000', entries: [{ value: 1 }] }] }, 0x30)).toEqual({ ok: false, reason: 'bad_payload' });
    // An event's body is kept as JSON, where U+0000 is an escape like any other.
    expect(decodePayload({ device_id: 'D', note: 'a\u0000b' }, 0x10, 3)).toMatchObject({ ok: true, event: { note: 'a\u0000b' } });
  });

  it('requires the profile shape for telemetry but only a device_id map for the other payload types', () => {
    expect(decodePayload({ device_id: 'D' })).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', entries: {} })).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', sensors: [{ type: 'x', entries: [] }] }, 0x30)).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload({ device_id: 'D', note: 'rebooted' }, 0x10, 3)).toMatchObject({ ok: true, records: [], event: { device_id: 'D', note: 'rebooted' } });
    expect(decodePayload({ note: 'rebooted' }, 0x10, 3)).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('takes a legacy layout only for telemetry of 0x10 and 0x20', () => {
    const legacy = legacyPressurePayload({ deviceId: 'ESP32-L', labId: '', ts: NOW, pressurePa: 1 });
    expect(decodePayload(legacy)).toMatchObject({ ok: true, lab_id: null });
    expect(decodePayload(legacy, 0x10, 2)).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload(legacy, 0x30)).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload(Buffer.alloc(0))).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('keeps a legacy device_id under 160 bytes, as the spec says, both ways', () => {
    expect(decodePayload(legacyPressurePayload({ deviceId: 'D'.repeat(159), labId: 'L', ts: NOW, pressurePa: 1 }))).toMatchObject({ ok: true });
    expect(() => legacyPressurePayload({ deviceId: 'D'.repeat(200), labId: 'L', ts: NOW, pressurePa: 1 })).toThrow(/shorter than 160/);
    // Hand-made: a 200-byte device_id (length byte 0xC8, which is not a CBOR map header either).
    const id = Buffer.from('D'.repeat(200));
    const tail = Buffer.alloc(8);
    tail.writeUInt32BE(NOW, 0);
    const forged = Buffer.concat([Buffer.from([id.length]), id, Buffer.from([1]), Buffer.from('L'), tail]);
    expect(decodePayload(forged)).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('rejects trailing bytes after the CBOR map and a top level that is not a map', () => {
    const map = encodeCbor({ device_id: 'D', entries: [] });
    expect(decodePayload(Buffer.concat([map, Buffer.from([0x00])]))).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decodePayload(encodeCbor([{ device_id: 'D', entries: [] }]), 0x30)).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('refuses map keys that are not scalars (cbor-x cannot make them object keys)', () => {
    const byteKey = Buffer.concat([Buffer.from([0xa3]), t('device_id'), t('D'), t('entries'), Buffer.from([0x80, 0x41, 0x00, 0x01])]);
    expect(isValidPayloadCbor(byteKey)).toBe(true);
    expect(decodePayload(byteKey)).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('rejects a map whose keys repeat, at any level, however the key is encoded', () => {
    // {device_id: "D", device_id: "E", entries: []}: cbor-x would keep "E".
    const top = Buffer.concat([Buffer.from([0xa3]), t('device_id'), t('D'), t('device_id'), t('E'), t('entries'), Buffer.from([0x80])]);
    expect(isValidPayloadCbor(top)).toBe(false);
    expect(decodePayload(top)).toEqual({ ok: false, reason: 'bad_payload' });
    // An entry {value: 1, value: 666666}.
    const entry = Buffer.concat([Buffer.from([0xa2]), t('device_id'), t('D'), t('entries'), Buffer.from([0x81, 0xa2]), t('value'), Buffer.from([0x01]), t('value'), Buffer.from('1a000a2c2a', 'hex')]);
    expect(decodePayload(entry)).toEqual({ ok: false, reason: 'bad_payload' });
    // The same text with a longer length header, and an integer key beside its decimal text.
    const longHeader = Buffer.concat([Buffer.from([0xa3]), t('device_id'), t('D'), Buffer.from([0x78, 0x09]), Buffer.from('device_id'), t('E'), t('entries'), Buffer.from([0x80])]);
    expect(decodePayload(longHeader)).toEqual({ ok: false, reason: 'bad_payload' });
    const intAndText = Buffer.concat([Buffer.from([0xa4]), t('device_id'), t('D'), t('entries'), Buffer.from([0x80, 0x01, 0x01]), t('1'), Buffer.from([0x02])]);
    expect(decodePayload(intAndText, 0x10, 3)).toEqual({ ok: false, reason: 'bad_payload' });
    // Distinct keys that share a prefix, and the same key in two different maps, are fine.
    const distinct = Buffer.concat([Buffer.from([0xa3]), t('device_id'), t('D'), t('device'), t('E'), t('entries'), Buffer.from([0x82, 0xa1]), t('value'), Buffer.from([0x01, 0xa1]), t('value'), Buffer.from([0x02])]);
    expect(decodePayload(distinct)).toMatchObject({ ok: true, records: [{ value: 1 }, { value: 2 }] });
  });

  it('keeps byte strings of an event intact after later frames are decoded', () => {
    const first = decodePayload({ device_id: 'D', blob: Buffer.from('0102030405', 'hex') }, 0x10, 3);
    decodePayload({ device_id: 'E', blob: Buffer.from('ffffffffff', 'hex') }, 0x10, 3);
    expect(first.ok && Buffer.from(first.event!.blob as Uint8Array).toString('hex')).toBe('0102030405');
  });

  it('ignores a "__proto__" key instead of letting it reach an object prototype', () => {
    const result = decodePayload({ device_id: 'D', entries: [], ['__proto__']: { polluted: true } }, 0x10, 3);
    expect(result).toMatchObject({ ok: true });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
