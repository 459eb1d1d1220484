import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { NanogridataConfig } from '../../src/config.js';
import { createDecoder, inspectFrame, inspectFrames } from '../../src/nanogridata/decoder.js';
import {
  encodeFrame,
  gasPayload,
  legacyGasPayload,
  legacyPressurePayload,
  multiPayload,
  pressurePayload,
} from '../../src/nanogridata/encoder.js';
import type { EntryInput, SensorInput } from '../../src/nanogridata/encoder.js';
import { crc16CcittFalse } from '../../src/nanogridata/mac.js';
import { encodeCbor } from '../../src/nanogridata/payload.js';
import { InMemoryReplayMemory } from '../../src/nanogridata/replay.js';
import { MAX_MEASUREMENT, type MeasurementRecord } from '../../src/nanogridata/types.js';

const NOW = 1_767_225_600;
const MODELS = [0x10, 0x20, 0x30, 0x40, 0xff] as const;

function makeConfig(overrides: Partial<NanogridataConfig> = {}): NanogridataConfig {
  return {
    secrets: new Map(MODELS.map((m) => [m, randomBytes(32 + (m % 48))])),
    acceptUnsigned: true,
    maxDriftS: 3600,
    ...overrides,
  };
}
const fixedClock = () => NOW;

// ---- generators -------------------------------------------------------------------------------

/** Text of whole graphemes (valid UTF-8), within the 256-byte CBOR limit. */
const text = (minLength: number, maxBytes = 256) =>
  fc.string({ unit: 'grapheme', minLength, maxLength: 24 }).filter((s) => Buffer.byteLength(s) <= maxBytes);
const notNegativeZero = (x: number) => !Object.is(x, -0);
// Values within ±MAX_MEASUREMENT (10^15); beyond it a frame is bad_payload (see the test below).
const measurement = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  fc.integer({ min: -MAX_MEASUREMENT, max: MAX_MEASUREMENT }),
  fc.double({ min: -MAX_MEASUREMENT, max: MAX_MEASUREMENT, noNaN: true }).filter(notNegativeZero),
);
const entryTs = fc.option(
  // Entry times in the header's u32 range; outside it an entry is bad_payload (see the test below).
  fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.double({ min: 0, max: 0xffffffff, noNaN: true }).filter(notNegativeZero)),
  { nil: undefined },
);
const entries = fc.array(fc.record({ ts: entryTs, value: measurement }), { maxLength: 6 });
const device = fc.record({ deviceId: text(1), labId: fc.option(text(0), { nil: undefined }) });
const sensors = fc.array(fc.record({ type: text(1), unit: text(0), entries }), { maxLength: 3 });
const level = fc.constantFrom(0, 1, 2, 3);
const headerTs = fc.integer({ min: NOW - 3600, max: NOW + 3600 });

type Reading =
  | { model: 0x10; d: { deviceId: string; labId?: string }; entries: EntryInput[] }
  | { model: 0x20; d: { deviceId: string; labId?: string }; gasType: string; entries: EntryInput[] }
  | { model: 0x30 | 0x40 | 0xff; d: { deviceId: string; labId?: string }; sensors: SensorInput[] };

const reading: fc.Arbitrary<Reading> = fc.oneof(
  fc.record({ model: fc.constant(0x10 as const), d: device, entries }),
  fc.record({ model: fc.constant(0x20 as const), d: device, gasType: text(1), entries }),
  fc.record({ model: fc.constantFrom(0x30 as const, 0x40 as const, 0xff as const), d: device, sensors }),
);

function payloadOf(r: Reading) {
  if (r.model === 0x10) return pressurePayload({ ...r.d, entries: r.entries });
  if (r.model === 0x20) return gasPayload({ ...r.d, gasType: r.gasType, entries: r.entries });
  return multiPayload({ ...r.d, sensors: r.sensors });
}

/** The records the spec promises, computed from the generator's input rather than by the decoder's profiles. */
function expectedRecords(r: Reading, timestamp: number): MeasurementRecord[] {
  const rec = (metric: string, unit: string, e: EntryInput): MeasurementRecord => ({
    sensor_id: r.d.deviceId,
    metric,
    unit,
    ts: e.ts ?? timestamp,
    value: e.value,
  });
  if (r.model === 0x10) return r.entries.map((e) => rec('pressure', 'Pa', e));
  if (r.model === 0x20) return r.entries.map((e) => rec(r.gasType, 'ppm', e));
  return r.sensors.flatMap((s) => s.entries.map((e) => rec(s.type, s.unit, e)));
}

// ---- properties -------------------------------------------------------------------------------

describe('Nanogridata encode → decode round trip', () => {
  it('gives back every reading of every profile, level and payload type', () => {
    const config = makeConfig();
    fc.assert(
      fc.property(reading, level, fc.integer({ min: 1, max: 5 }), headerTs, (r, lvl, payloadType, timestamp) => {
        const payload = payloadOf(r);
        fc.pre(encodeCbor(payload).length <= 1024);
        const frame = encodeFrame({ modelId: r.model, payloadType, level: lvl, timestamp, payload, secret: config.secrets.get(r.model) });
        const result = createDecoder({ config, now: fixedClock }).decode(frame);
        const header = { model_id: r.model, payload_type: payloadType, security_level: lvl, timestamp, length: frame.length - 14 - [2, 16, 32, 32][lvl]! };
        const common = { ok: true, header, device_id: r.d.deviceId, lab_id: r.d.labId ?? null };
        if (payloadType === 1) {
          expect(result).toEqual({ ...common, records: expectedRecords(r, timestamp) });
        } else {
          expect(result).toEqual({ ...common, records: [], event: payload });
        }
      }),
      { numRuns: 300 },
    );
  });

  it('gives back legacy binary pressure and gas readings at every level', () => {
    const config = makeConfig();
    const legacyDevice = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => Buffer.byteLength(s) < 160);
    const legacyText = (min: number) => fc.string({ unit: 'grapheme', minLength: min, maxLength: 30 }).filter((s) => Buffer.byteLength(s) <= 255);
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    const legacy = fc.oneof(
      fc.record({ kind: fc.constant('pressure' as const), deviceId: legacyDevice, labId: legacyText(0), ts: u32, value: u32 }),
      fc.record({
        kind: fc.constant('gas' as const),
        deviceId: legacyDevice,
        gasType: legacyText(1),
        ts: u32,
        value: fc.float({ min: Math.fround(-1e15), max: Math.fround(1e15), noNaN: true }).filter((v) => notNegativeZero(v) && Math.abs(v) <= 1e15),
      }),
    );
    fc.assert(
      fc.property(legacy, level, headerTs, (l, lvl, timestamp) => {
        const modelId = l.kind === 'pressure' ? 0x10 : 0x20;
        const payload =
          l.kind === 'pressure'
            ? legacyPressurePayload({ deviceId: l.deviceId, labId: l.labId, ts: l.ts, pressurePa: l.value })
            : legacyGasPayload({ deviceId: l.deviceId, gasType: l.gasType, ts: l.ts, ppm: l.value });
        const frame = encodeFrame({ modelId, level: lvl, timestamp, payload, secret: config.secrets.get(modelId) });
        const result = createDecoder({ config, now: fixedClock }).decode(frame);
        expect(result).toMatchObject({
          ok: true,
          device_id: l.deviceId,
          // An empty legacy lab_id is "no lab"; the gas layout has none at all.
          lab_id: l.kind === 'pressure' && l.labId !== '' ? l.labId : null,
          records: [
            {
              sensor_id: l.deviceId,
              metric: l.kind === 'pressure' ? 'pressure' : l.gasType,
              unit: l.kind === 'pressure' ? 'Pa' : 'ppm',
              ts: l.ts,
              value: l.value,
            },
          ],
        });
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a value beyond ±10^15 as bad_payload (its square would overflow every standard deviation)', () => {
    const config = makeConfig();
    const decoder = createDecoder({ config, now: fixedClock, replay: null });
    const frame = (value: number) =>
      encodeFrame({ modelId: 0x10, level: 1, timestamp: NOW, secret: config.secrets.get(0x10)!, payload: pressurePayload({ deviceId: 'T', entries: [{ value }] }) });
    for (const v of [1e15 + 2, -1e16, 1.7e308, -1e200]) expect(decoder.decode(frame(v)), String(v)).toEqual({ ok: false, reason: 'bad_payload' });
    for (const v of [1e15, -1e15, 0, 101_325.5]) expect(decoder.decode(frame(v)), String(v)).toMatchObject({ ok: true });
    const gas = (ppm: number) =>
      encodeFrame({ modelId: 0x20, level: 1, timestamp: NOW, secret: config.secrets.get(0x20)!, payload: legacyGasPayload({ deviceId: 'G', gasType: 'CO2', ts: NOW, ppm }) });
    expect(decoder.decode(gas(3e38))).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('rejects an entry time outside the u32 range of Unix seconds as bad_payload (it would poison every store)', () => {
    const config = makeConfig();
    const decoder = createDecoder({ config, now: fixedClock, replay: null });
    const frame = (ts: number) =>
      encodeFrame({ modelId: 0x10, level: 1, timestamp: NOW, secret: config.secrets.get(0x10)!, payload: pressurePayload({ deviceId: 'T', entries: [{ ts, value: 1 }] }) });
    for (const ts of [-1, 2 ** 32, 1e15, 1e300]) expect(decoder.decode(frame(ts)), String(ts)).toEqual({ ok: false, reason: 'bad_payload' });
    for (const ts of [0, NOW + 0.25, 0xffffffff]) expect(decoder.decode(frame(ts)), String(ts)).toMatchObject({ ok: true });
  });

  it('computes the CRC-16/CCITT-FALSE check value 0x29B1 for "123456789"', () => {
    expect(crc16CcittFalse(Buffer.from('123456789', 'ascii'))).toBe(0x29b1);
  });
});

// ---- transport context: per-device secrets, device_mismatch, redelivery ---------------------------

function pressureFrame(deviceId: string, opts: { secret: Buffer; level?: number; timestamp?: number; value?: number }) {
  return encodeFrame({
    modelId: 0x10,
    level: opts.level ?? 1,
    timestamp: opts.timestamp ?? NOW,
    payload: pressurePayload({ deviceId, labId: 'LAB-1', entries: [{ ts: NOW - 1, value: opts.value ?? 101_325 }] }),
    secret: opts.secret,
  });
}

describe('Nanogridata decoder with what the transport knows', () => {
  it('authenticates a device registered with its own secret by that secret only, whether or not the transport names it', () => {
    const config = makeConfig();
    const own = randomBytes(32);
    const deviceSecrets = new Map([['ESP32-OWN', own]]);
    const decoder = (c = config) => createDecoder({ config: c, now: fixedClock, deviceSecrets });
    const genuine = pressureFrame('ESP32-OWN', { secret: own });
    expect(decoder().decode(genuine, { deviceId: 'ESP32-OWN' })).toMatchObject({ ok: true, device_id: 'ESP32-OWN' });
    expect(decoder().decode(genuine)).toMatchObject({ ok: true, device_id: 'ESP32-OWN' });
    // Any board of the model holds the model secret: with it, it cannot speak for ESP32-OWN.
    const forged = pressureFrame('ESP32-OWN', { secret: config.secrets.get(0x10)! });
    expect(decoder().decode(forged)).toEqual({ ok: false, reason: 'bad_mac' });
    expect(decoder().decode(forged, { deviceId: 'ESP32-OWN' })).toEqual({ ok: false, reason: 'bad_mac' });
    expect(decoder().decode(forged, { deviceId: 'ESP32-OTHER' })).toEqual({ ok: false, reason: 'bad_mac' });
    // Nor can an unsigned frame, even with unsigned frames accepted.
    expect(decoder().decode(pressureFrame('ESP32-OWN', { secret: Buffer.alloc(0), level: 0 }))).toEqual({ ok: false, reason: 'bad_mac' });
    // The own secret is enough without a model secret; other devices still use the model's.
    const noModelSecret = makeConfig({ secrets: new Map() });
    expect(decoder(noModelSecret).decode(genuine)).toMatchObject({ ok: true });
    expect(decoder(noModelSecret).decode(pressureFrame('ESP32-X', { secret: own }))).toEqual({ ok: false, reason: 'no_secret' });
    expect(decoder().decode(pressureFrame('ESP32-X', { secret: config.secrets.get(0x10)! }))).toMatchObject({ ok: true });
  });

  it('uses the secret of the device the transport names when the payload names no device with one', () => {
    const config = makeConfig();
    const own = randomBytes(32);
    const decoder = createDecoder({ config, now: fixedClock, deviceSecrets: new Map([['GW-1', own]]) });
    // Signed with GW-1's secret but naming another device: authenticated, then a mismatch.
    expect(decoder.decode(pressureFrame('ESP32-Y', { secret: own }), { deviceId: 'GW-1' })).toEqual({ ok: false, reason: 'device_mismatch' });
    expect(decoder.decode(pressureFrame('ESP32-Y', { secret: config.secrets.get(0x10)! }), { deviceId: 'GW-1' })).toEqual({ ok: false, reason: 'bad_mac' });
  });

  it('rejects a payload whose device_id is not the device the transport named, and does not remember it', () => {
    const config = makeConfig();
    const frame = pressureFrame('ESP32-A', { secret: config.secrets.get(0x10)! });
    const decoder = createDecoder({ config, now: fixedClock });
    expect(decoder.decode(frame, { deviceId: 'ESP32-B' })).toEqual({ ok: false, reason: 'device_mismatch' });
    expect(decoder.decode(frame, { deviceId: 'ESP32-A' })).toMatchObject({ ok: true, device_id: 'ESP32-A' });
  });

  it('accepts two devices of one model in the same second, and the same device twice with different readings', () => {
    const config = makeConfig();
    const secret = config.secrets.get(0x10)!;
    const decoder = createDecoder({ config, now: fixedClock });
    expect(decoder.decode(pressureFrame('ESP32-1', { secret }))).toMatchObject({ ok: true });
    expect(decoder.decode(pressureFrame('ESP32-2', { secret }))).toMatchObject({ ok: true });
    expect(decoder.decode(pressureFrame('ESP32-1', { secret, value: 101_326 }))).toMatchObject({ ok: true });
    expect(decoder.decode(pressureFrame('ESP32-1', { secret }))).toEqual({ ok: false, reason: 'replay' });
  });

  it('keys level-0 replays on the whole frame, so frames sharing a CRC are not mistaken for each other', () => {
    const config = makeConfig();
    const decoder = createDecoder({ config, now: fixedClock });
    const seen = new Map<number, Buffer>();
    let pair: [Buffer, Buffer] | undefined;
    for (let v = 0; pair === undefined; v++) {
      const frame = pressureFrame('ESP32-CRC', { secret: Buffer.alloc(0), level: 0, value: v });
      const crc = frame.readUInt16BE(frame.length - 2);
      const other = seen.get(crc);
      if (other) pair = [other, frame];
      seen.set(crc, frame);
    }
    expect(decoder.decode(pair[0])).toMatchObject({ ok: true });
    expect(decoder.decode(pair[1])).toMatchObject({ ok: true });
    expect(decoder.decode(pair[1])).toEqual({ ok: false, reason: 'replay' });
  });

  it('does not remember a frame rejected as bad_payload, so a repeat is bad_payload again rather than replay', () => {
    const config = makeConfig();
    const payload = encodeCbor({ device_id: 'ESP32-X', entries: [{ value: 'high' }] });
    const frame = encodeFrame({ modelId: 0x10, level: 1, timestamp: NOW, payload, secret: config.secrets.get(0x10) });
    const decoder = createDecoder({ config, now: fixedClock });
    expect(decoder.decode(frame)).toEqual({ ok: false, reason: 'bad_payload' });
    expect(decoder.decode(frame)).toEqual({ ok: false, reason: 'bad_payload' });
  });

  it('forgets an accepted frame once its timestamp has left the drift window', () => {
    const config = makeConfig();
    let now = NOW;
    const decoder = createDecoder({ config, now: () => now });
    const frame = pressureFrame('ESP32-T', { secret: config.secrets.get(0x10)!, timestamp: NOW - 3000 });
    const inspection = inspectFrame(frame, {}, { config, nowS: now });
    expect(inspection).toMatchObject({ ok: true, replay: { timestamp: NOW - 3000, fingerprint: frame.subarray(frame.length - 16, frame.length - 8) } });
    expect(decoder.decode(frame)).toMatchObject({ ok: true });
    now += 599;
    expect(decoder.decode(frame)).toEqual({ ok: false, reason: 'replay' });
    now += 2;
    expect(decoder.decode(frame)).toEqual({ ok: false, reason: 'timestamp_drift' });
  });
});

describe('InMemoryReplayMemory', () => {
  const item = (i: number, timestamp: number) => {
    const fingerprint = Buffer.alloc(8);
    fingerprint.writeUInt32BE(i * 2654435761 >>> 0, 0);
    fingerprint.writeUInt32BE(i, 4);
    return { fingerprint, timestamp };
  };

  it('forgets a frame once its time has left the window and reclaims the space, so memory stays bounded by the window', () => {
    let now = 1000;
    const memory = new InMemoryReplayMemory({ now: () => now, maxDriftS: 10, initialSlots: 16 });
    for (let i = 0; i < 5000; i++) {
      expect(memory.checkOne(item(i, now), true)).toBe(false);
      expect(memory.checkOne(item(i, now), true)).toBe(true);
      if (i % 100 === 99) now += 1;
    }
    // About ten seconds of frames (100 a second) are live; the rest were reclaimed as the table filled.
    expect(memory.size).toBeLessThan(4 * 1100);
    now += 11;
    memory.prune();
    expect(memory.size).toBe(0);
    expect(memory.checkOne(item(1, now - 20), true)).toBe(false);
  });

  it('only remembers frames it is asked to', () => {
    const memory = new InMemoryReplayMemory({ now: () => 1000, maxDriftS: 10 });
    expect(memory.checkOne(item(7, 1000), false)).toBe(false);
    expect(memory.checkOne(item(7, 1000), true)).toBe(false);
    expect(memory.checkOne(item(7, 1000), true)).toBe(true);
  });

  it('agrees with a plain map model on any sequence of checks, expiries and table rebuilds', () => {
    const op = fc.record({
      i: fc.integer({ min: 0, max: 40 }),
      age: fc.integer({ min: 0, max: 12 }),
      remember: fc.boolean(),
      advance: fc.integer({ min: 0, max: 6 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        let now = 1000;
        const memory = new InMemoryReplayMemory({ now: () => now, maxDriftS: 10, initialSlots: 16 });
        const model = new Map<number, number>();
        for (const o of ops) {
          const timestamp = now - o.age;
          const expiresAt = Math.ceil(timestamp + 10);
          const known = model.get(o.i);
          const expected = known !== undefined && known > now;
          if (!expected && o.remember && expiresAt > now) model.set(o.i, expiresAt);
          expect(memory.checkOne(item(o.i, timestamp), o.remember)).toBe(expected);
          now += o.advance;
        }
      }),
      { numRuns: 200 },
    );
  });
});

// ---- byte streams ---------------------------------------------------------------------------------

describe('Nanogridata frames in a byte stream', () => {
  it('ignores bytes after the MAC and reports the frame length so the caller can find the next frame', () => {
    const config = makeConfig();
    const frame = pressureFrame('ESP32-S', { secret: config.secrets.get(0x10)! });
    const alone = createDecoder({ config, now: fixedClock }).decode(frame);
    const withTail = createDecoder({ config, now: fixedClock }).decode(Buffer.concat([frame, Buffer.from('c15301ff', 'hex')]));
    expect(withTail).toEqual(alone);
    expect(inspectFrame(Buffer.concat([frame, randomBytes(20)]), {}, { config, nowS: NOW }).frameLength).toBe(frame.length);
  });

  it('splits concatenated frames, goes on past a frame with a bad MAC, and stops where it cannot resync', () => {
    const config = makeConfig();
    const secret = config.secrets.get(0x10)!;
    const a = pressureFrame('ESP32-1', { secret });
    const forged = pressureFrame('ESP32-2', { secret: randomBytes(32) });
    const c = encodeFrame({ modelId: 0x30, level: 0, timestamp: NOW, payload: multiPayload({ deviceId: 'ASIC-1', sensors: [] }) });
    const decoder = createDecoder({ config, now: fixedClock });
    const results = decoder.decodeAll(Buffer.concat([a, forged, c, Buffer.from('deadbeef', 'hex'), a]));
    expect(results.map((r) => [r.index, r.offset, r.result.ok ? 'ok' : r.result.reason])).toEqual([
      [0, 0, 'ok'],
      [1, a.length, 'bad_mac'],
      [2, a.length + forged.length, 'ok'],
      [3, a.length + forged.length + c.length, 'bad_magic'], // and the good frame after the garbage is lost
    ]);
    // Fewer than 14 bytes left: truncated, and no length to skip by.
    const tail = [...inspectFrames(Buffer.concat([a, Buffer.from('c15301', 'hex')]), {}, { config, nowS: NOW })];
    expect(tail.map((g) => g.inspection)).toEqual([expect.objectContaining({ ok: true }), { ok: false, reason: 'truncated' }]);
  });

  it('reports a frame cut short by the end of the body as truncated, with its full length', () => {
    const config = makeConfig();
    const a = pressureFrame('ESP32-1', { secret: config.secrets.get(0x10)! });
    const cut = [...inspectFrames(Buffer.concat([a, a.subarray(0, a.length - 3)]), {}, { config, nowS: NOW })];
    expect(cut.map((g) => g.inspection)).toEqual([
      expect.objectContaining({ ok: true, frameLength: a.length }),
      { ok: false, reason: 'truncated', frameLength: a.length },
    ]);
  });
});
