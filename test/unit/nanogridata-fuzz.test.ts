import { describe, expect, it } from 'vitest';
import type { NanogridataConfig } from '../../src/config.js';
import { createDecoder } from '../../src/nanogridata/decoder.js';
import { encodeFrame, gasPayload, legacyGasPayload, legacyPressurePayload, multiPayload, pressurePayload } from '../../src/nanogridata/encoder.js';
import { HEADER_SIZE, MAC_SIZES } from '../../src/nanogridata/frame.js';
import { computeMac } from '../../src/nanogridata/mac.js';
import { mulberry32 } from '../../src/nanogridata/simulated-sensors.js';
import { REJECT_REASONS } from '../../src/nanogridata/types.js';
import type { DecodeResult } from '../../src/nanogridata/types.js';

const NOW = 1_767_225_600;
const SEED = 0x6e616e6f; // fixed: a failure reproduces; change it to explore further
const N = 100_000;

const secrets = new Map([0x10, 0x20, 0x30, 0x40, 0xff].map((m) => [m, Buffer.alloc(32 + m % 7, m)]));
const config: NanogridataConfig = { secrets, acceptUnsigned: true, maxDriftS: 3600 };
const reasons = new Set<string>(REJECT_REASONS);

/** Valid frames of every shape, to be mutated. */
function seedFrames(): Buffer[] {
  const out: Buffer[] = [];
  const entries = [{ ts: NOW - 2, value: 101_325 }, { value: 20.5 }, { ts: NOW + 0.25, value: -3 }];
  const payloads: Array<[number, object | Buffer]> = [
    [0x10, pressurePayload({ deviceId: 'ESP32-F', labId: 'LAB-1', entries })],
    [0x20, gasPayload({ deviceId: 'STM32-F', gasType: 'CO2', entries })],
    [0x30, multiPayload({ deviceId: 'ASIC-F', sensors: [{ type: 'temperature', unit: '°C', entries }, { type: 'humidity', unit: '%', entries }] })],
    [0x40, multiPayload({ deviceId: 'RPI-F', labId: 'LAB-2', sensors: [{ type: 'vibration', unit: 'mm/s', entries }] })],
    [0xff, multiPayload({ deviceId: 'CUSTOM-F', sensors: [] })],
    [0x10, legacyPressurePayload({ deviceId: 'ESP32-LEG', labId: 'LAB-3', ts: NOW, pressurePa: 100_950 })],
    [0x20, legacyGasPayload({ deviceId: 'STM32-LEG', gasType: 'CH4', ts: NOW, ppm: 3.5 })],
  ];
  for (const [modelId, payload] of payloads) {
    for (let level = 0; level <= 3; level++) {
      out.push(encodeFrame({ modelId, level, timestamp: NOW - 10, payload, secret: secrets.get(modelId) }));
    }
  }
  out.push(encodeFrame({ modelId: 0x20, payloadType: 3, level: 1, timestamp: NOW, payload: { device_id: 'STM32-F', event: 'threshold', level: 2 }, secret: secrets.get(0x20) }));
  return out;
}

/** Recomputes the MAC after a mutation that kept the header intact, so the payload itself gets fuzzed. */
function reseal(frame: Buffer): Buffer {
  if (frame.length < HEADER_SIZE) return frame;
  const level = frame[5]! & 0x0f;
  const macSize = MAC_SIZES[level];
  const macStart = HEADER_SIZE + frame.readUInt16BE(6);
  if (macSize === undefined || frame[5]! > 3 || macStart + macSize > frame.length) return frame;
  computeMac(level, frame.subarray(0, macStart), secrets.get(frame[3]!) ?? Buffer.alloc(32)).copy(frame, macStart);
  return frame;
}

function mutate(base: Buffer, rnd: () => number): Buffer {
  const int = (n: number) => Math.floor(rnd() * n);
  let f = Buffer.from(base);
  const ops = 1 + int(3);
  let payloadOnly = rnd() < 0.5; // half the time, mutate only the payload and fix the MAC afterwards
  for (let k = 0; k < ops; k++) {
    const start = payloadOnly ? HEADER_SIZE : 0;
    const span = Math.max(1, f.length - start);
    switch (int(7)) {
      case 0: // bit flips
        for (let b = 1 + int(4); b > 0; b--) {
          const i = start + int(span);
          if (i < f.length) f[i]! ^= 1 << int(8);
        }
        break;
      case 1: // truncation
        f = f.subarray(0, int(f.length + 1));
        payloadOnly = false;
        break;
      case 2: // extension with random bytes
        f = Buffer.concat([f, Buffer.from(Array.from({ length: 1 + int(40) }, () => int(256)))]);
        break;
      case 3: // a random length field
        if (f.length >= 8) f.writeUInt16BE(rnd() < 0.5 ? int(1100) : int(65536), 6);
        payloadOnly = false;
        break;
      case 4: // random bytes overwritten
        for (let b = 1 + int(6); b > 0; b--) {
          const i = start + int(span);
          if (i < f.length) f[i] = int(256);
        }
        break;
      case 5: { // a slice of the payload duplicated or removed, with the length field kept consistent
        if (f.length <= HEADER_SIZE + 2) break;
        const at = HEADER_SIZE + int(f.length - HEADER_SIZE);
        const len = int(12);
        const piece = f.subarray(at, at + len);
        f = rnd() < 0.5 ? Buffer.concat([f.subarray(0, at), piece, f.subarray(at)]) : Buffer.concat([f.subarray(0, at), f.subarray(at + len)]);
        const macSize = MAC_SIZES[f[5]! & 0x0f] ?? 2;
        const newLength = f.length - HEADER_SIZE - macSize;
        if (newLength >= 0 && newLength <= 0xffff) f.writeUInt16BE(newLength, 6);
        break;
      }
      default: // header byte changed
        f[int(Math.min(HEADER_SIZE, f.length))] = int(256);
        payloadOnly = false;
    }
  }
  return payloadOnly ? reseal(f) : f;
}

function check(result: DecodeResult, counts: Map<string, number>): void {
  const key = result.ok ? 'ok' : result.reason;
  counts.set(key, (counts.get(key) ?? 0) + 1);
  if (!result.ok) {
    if (!reasons.has(result.reason)) throw new Error(`unlisted reason ${result.reason}`);
    return;
  }
  // Anything accepted has the spec's shape, with finite numbers.
  if (typeof result.device_id !== 'string' || !Array.isArray(result.records)) throw new Error('malformed ok result');
  for (const r of result.records) {
    if (!Number.isFinite(r.value) || !Number.isFinite(r.ts) || typeof r.metric !== 'string') throw new Error(`malformed record ${JSON.stringify(r)}`);
  }
}

describe('Nanogridata decoder robustness (seeded fuzzing)', () => {
  it(`answers ok or a listed reason, without throwing, for ${N} mutated valid frames`, () => {
    const rnd = mulberry32(SEED);
    const seeds = seedFrames();
    const decoder = createDecoder({ config, now: () => NOW });
    const counts = new Map<string, number>();
    for (let i = 0; i < N; i++) {
      const frame = mutate(seeds[i % seeds.length]!, rnd);
      let result: DecodeResult;
      try {
        result = decoder.decode(frame);
      } catch (err) {
        throw new Error(`decode threw on case ${i} (seed ${SEED}): ${frame.toString('hex')}: ${String(err)}`, { cause: err });
      }
      check(result, counts);
    }
    // The mutations reach deep: past the MAC into the payload checks, and some survive intact.
    expect(counts.get('bad_payload') ?? 0).toBeGreaterThan(1000);
    expect(counts.get('bad_mac') ?? 0).toBeGreaterThan(1000);
    expect(counts.get('ok') ?? 0).toBeGreaterThan(100);
  });

  it(`answers ok or a listed reason, without throwing, for ${N} random buffers`, () => {
    const rnd = mulberry32(SEED + 1);
    const decoder = createDecoder({ config, now: () => NOW });
    const counts = new Map<string, number>();
    for (let i = 0; i < N; i++) {
      const buf = Buffer.allocUnsafe(Math.floor(rnd() * (rnd() < 0.2 ? 1200 : 64)));
      for (let k = 0; k < buf.length; k++) buf[k] = Math.floor(rnd() * 256);
      // Some buffers start like a frame, so that the later header checks see random input too.
      if (buf.length >= 6 && rnd() < 0.5) buf.set([0xc1, 0x53, 0x01, rnd() < 0.5 ? 0x10 : buf[3]!, 1 + (buf[4]! % 6), buf[5]! & 0x13], 0);
      if (buf.length >= 14 && rnd() < 0.5) buf.writeUInt16BE(0, 12);
      let result: DecodeResult;
      try {
        result = decoder.decode(buf);
      } catch (err) {
        throw new Error(`decode threw on case ${i} (seed ${SEED + 1}): ${buf.toString('hex')}: ${String(err)}`, { cause: err });
      }
      check(result, counts);
    }
    expect(counts.size).toBeGreaterThan(5);
  });
});
