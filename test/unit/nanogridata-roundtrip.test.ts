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
import type { MeasurementRecord } from '../../src/nanogridata/types.js';

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
const measurement = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter(notNegativeZero),
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
        value: fc.float({ noNaN: true, noDefaultInfinity: true }).filter(notNegativeZero),
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
  it('verifies with the device secret when the transport supplies one, and not with the model secret', () => {
    const config = makeConfig();
    const deviceSecret = randomBytes(32);
    const frame = pressureFrame('ESP32-OWN', { secret: deviceSecret });
    const decoder = createDecoder({ config, now: fixedClock });
    expect(decoder.decode(frame, { deviceId: 'ESP32-OWN', deviceSecret })).toMatchObject({ ok: true, device_id: 'ESP32-OWN' });
    expect(createDecoder({ config, now: fixedClock }).decode(frame)).toEqual({ ok: false, reason: 'bad_mac' });
    // The device's own secret is enough even when the model has none configured.
    const noModelSecret = makeConfig({ secrets: new Map() });
    expect(createDecoder({ config: noModelSecret, now: fixedClock }).decode(frame, { deviceSecret })).toMatchObject({ ok: true });
    expect(createDecoder({ config: noModelSecret, now: fixedClock }).decode(frame)).toEqual({ ok: false, reason: 'no_secret' });
  });

  it('rejects a payload whose device_id is not the device the transport named, and does not remember it', () => {
    const config = makeConfig();
    const frame = pressureFrame('ESP32-A', { secret: config.secrets.get(0x10)! });
    const decoder = createDecoder({ config, now: fixedClock });
    expect(decoder.decode(frame, { deviceId: 'ESP32-B' })).toEqual({ ok: false, reason: 'device_mismatch' });
    expect(decoder.decode(frame, { deviceId: 'ESP32-A' })).toMatchObject({ ok: true, device_id: 'ESP32-A' });
  });

  it('treats a redelivery of the same message id as no replay, and the same frame under another id as one', () => {
    const config = makeConfig();
    const frame = pressureFrame('ESP32-R', { secret: config.secrets.get(0x10)! });
    const decoder = createDecoder({ config, now: fixedClock });
    const first = decoder.decode(frame, { messageId: '1767225600000-0' });
    expect(first).toMatchObject({ ok: true });
    expect(decoder.decode(frame, { messageId: '1767225600000-0' })).toEqual(first);
    expect(decoder.decode(frame, { messageId: '1767225600000-1' })).toEqual({ ok: false, reason: 'replay' });
    expect(decoder.decode(frame)).toEqual({ ok: false, reason: 'replay' });
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
    expect(inspection).toMatchObject({ ok: true, replayTtlS: 600 });
    expect(decoder.decode(frame)).toMatchObject({ ok: true });
    now += 599;
    expect(decoder.decode(frame)).toEqual({ ok: false, reason: 'replay' });
    now += 2;
    expect(decoder.decode(frame)).toEqual({ ok: false, reason: 'timestamp_drift' });
  });
});

describe('InMemoryReplayMemory', () => {
  const hexKey = (i: number, digits = 32) => `10:${i.toString(16).padStart(digits, '0')}`;

  it('expires keys after their TTL and reclaims them so memory stays bounded by the window', () => {
    let now = 1;
    const memory = new InMemoryReplayMemory({ now: () => now, initialSlots: 16 });
    let replays = 0;
    for (let i = 0; i < 10_000; i++) {
      now = 1 + i; // one frame per second, each remembered for 60 s
      if (memory.checkOne({ key: hexKey(i * 7919), ttlS: 60, remember: true })) replays++;
      if (memory.checkOne({ key: `custom-${i}`, ttlS: 60, remember: true })) replays++;
    }
    expect(replays).toBe(0);
    expect(memory.size).toBeLessThanOrEqual(8 * 60 + 2 * 1024);
    expect(memory.checkOne({ key: hexKey(9990 * 7919), ttlS: 60, remember: false })).toBe(true);
    expect(memory.checkOne({ key: hexKey(100 * 7919), ttlS: 60, remember: false })).toBe(false);
    expect(memory.checkOne({ key: 'custom-9990', ttlS: 60, remember: false })).toBe(true);
    expect(memory.checkOne({ key: 'custom-100', ttlS: 60, remember: false })).toBe(false);
  });

  it('answers a batch in order, an earlier item of the batch counting for a later one', async () => {
    const memory = new InMemoryReplayMemory({ now: () => 1 });
    const answers = await memory.check([
      { key: hexKey(1), messageId: '1-0', ttlS: 10, remember: true },
      { key: hexKey(1), messageId: '2-0', ttlS: 10, remember: true },
      { key: hexKey(2), ttlS: 10, remember: false },
      { key: hexKey(2), ttlS: 10, remember: true },
      { key: hexKey(1), messageId: '1-0', ttlS: 10, remember: true },
      { key: hexKey(2), ttlS: 10, remember: true },
    ]);
    expect(answers).toEqual([false, true, false, false, false, true]);
  });

  it('agrees with a plain map model on any sequence of checks, expiries and table rebuilds', () => {
    // Few distinct keys and a tiny table: probe chains, reused expired slots and rebuilds all happen.
    const keys = [
      ...Array.from({ length: 24 }, (_, i) => hexKey(i * 0x01000193, 32)),
      ...Array.from({ length: 8 }, (_, i) => `3f:frame:${(i * 977).toString(16).padStart(64, 'a')}`),
      'not-a-decoder-key',
      '10:short',
    ];
    const op = fc.record({
      key: fc.constantFrom(...keys),
      messageId: fc.option(fc.constantFrom('1-0', '2-0', '3-0'), { nil: undefined }),
      ttlS: fc.integer({ min: 1, max: 40 }),
      remember: fc.boolean(),
      advance: fc.integer({ min: 0, max: 6 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        let now = 1000;
        const memory = new InMemoryReplayMemory({ now: () => now, initialSlots: 16 });
        const model = new Map<string, { messageId?: string; expiresAt: number }>();
        for (const o of ops) {
          now += o.advance;
          const known = model.get(o.key);
          const expected = known !== undefined && known.expiresAt > now && (o.messageId === undefined || known.messageId !== o.messageId);
          if (!(known !== undefined && known.expiresAt > now) && o.remember) model.set(o.key, { messageId: o.messageId, expiresAt: now + o.ttlS });
          expect(memory.checkOne(o)).toBe(expected);
        }
      }),
      { numRuns: 300 },
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
