/**
 * A fleet of simulated sensors that produce realistic signed frames: slowly drifting values
 * (bounded random walks), several readings per frame, a per-device sequence number.
 */
import { ModelId } from './frame.js';
import { encodeFrame, gasPayload, multiPayload, pressurePayload } from './encoder.js';
import type { EntryInput } from './encoder.js';

export const SIM_PROFILES = ['pressure', 'gas', 'multi', 'mixed'] as const;
export type SimProfile = (typeof SIM_PROFILES)[number];

const MODELS_BY_PROFILE: Record<SimProfile, readonly number[]> = {
  pressure: [ModelId.ESP32_PRESSURE],
  gas: [ModelId.STM32_GAS],
  multi: [ModelId.ASIC_MULTI, ModelId.RPI_NODE],
  mixed: [ModelId.ESP32_PRESSURE, ModelId.STM32_GAS, ModelId.ASIC_MULTI, ModelId.RPI_NODE],
};

/** Models a profile's sensors use, hence the secrets a signed simulation needs. */
export function modelsOf(profile: SimProfile): readonly number[] {
  return MODELS_BY_PROFILE[profile];
}

/** Small seeded PRNG (mulberry32): a run can be reproduced from its seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A quantity that drifts: each step moves by up to ±step, staying within [min, max]. */
interface Walk {
  value: number;
  step: number;
  min: number;
  max: number;
  /** Decimal places kept (0 = integer readings, as a firmware in Pa would send). */
  decimals: number;
}

function walk(rng: () => number, center: number, spread: number, step: number, decimals: number): Walk {
  return { value: center + (rng() - 0.5) * spread, step, min: center - 4 * spread, max: center + 4 * spread, decimals };
}

function advance(w: Walk, rng: () => number): number {
  w.value = Math.min(w.max, Math.max(w.min, w.value + (rng() * 2 - 1) * w.step));
  const f = 10 ** w.decimals;
  return Math.round(w.value * f) / f;
}

interface Channel {
  type: string;
  unit: string;
  walk: Walk;
}

export interface SimulatedSensor {
  modelId: number;
  deviceId: string;
  labId: string | null;
  /** Frames sent so far; carried in the payload as `seq` (an extra key, ignored by decoders). */
  seq: number;
  channels: Channel[];
}

const GASES: ReadonlyArray<[string, number, number]> = [
  ['CO2', 600, 80],
  ['CH4', 2, 0.3],
  ['NO2', 0.05, 0.01],
  ['CO', 1, 0.2],
];

function channelsFor(modelId: number, i: number, rng: () => number): Channel[] {
  switch (modelId) {
    case ModelId.ESP32_PRESSURE:
      return [{ type: 'pressure', unit: 'Pa', walk: walk(rng, 101_325, 400, 12, 0) }];
    case ModelId.STM32_GAS: {
      const [gas, center, spread] = GASES[i % GASES.length]!;
      return [{ type: gas, unit: 'ppm', walk: walk(rng, center, spread, spread / 20, 3) }];
    }
    case ModelId.RPI_NODE:
      return [
        { type: 'cpu_temp', unit: '°C', walk: walk(rng, 52, 6, 0.3, 1) },
        { type: 'vibration', unit: 'mm/s', walk: walk(rng, 1.2, 0.4, 0.05, 2) },
      ];
    default:
      return [
        { type: 'temperature', unit: '°C', walk: walk(rng, 21.5, 2, 0.05, 2) },
        { type: 'humidity', unit: '%', walk: walk(rng, 45, 8, 0.2, 1) },
      ];
  }
}

const DEVICE_PREFIX: Record<number, string> = { 0x10: 'ESP32', 0x20: 'STM32', 0x30: 'ASIC', 0x40: 'RPI' };

/** `count` sensors, their models taken in turn from the profile. */
export function createFleet(count: number, profile: SimProfile, rng: () => number): SimulatedSensor[] {
  const models = modelsOf(profile);
  return Array.from({ length: count }, (_, i) => {
    const modelId = models[i % models.length]!;
    return {
      modelId,
      deviceId: `SIM-${DEVICE_PREFIX[modelId] ?? 'NODE'}-${String(i + 1).padStart(4, '0')}`,
      // Every fifth sensor is not assigned to a lab, to exercise lab_id null downstream.
      labId: i % 5 === 4 ? null : `LAB-${String((i % 4) + 1).padStart(2, '0')}`,
      seq: 0,
      channels: channelsFor(modelId, i, rng),
    };
  });
}

/** The sensor's next frame: 1–3 readings a second apart, ending at `nowS`. */
export function nextFrame(
  sensor: SimulatedSensor,
  opts: { level: number; secret?: Buffer; nowS: number; rng: () => number },
): Buffer {
  const { rng, nowS } = opts;
  const readings = 1 + Math.floor(rng() * 3);
  const entriesOf = (c: Channel): EntryInput[] =>
    Array.from({ length: readings }, (_, k) => ({ ts: nowS - (readings - 1 - k), value: advance(c.walk, rng) }));
  const device = { deviceId: sensor.deviceId, labId: sensor.labId };
  const [first] = sensor.channels;
  const payload =
    sensor.modelId === ModelId.ESP32_PRESSURE
      ? pressurePayload({ ...device, entries: entriesOf(first!) })
      : sensor.modelId === ModelId.STM32_GAS
        ? gasPayload({ ...device, gasType: first!.type, entries: entriesOf(first!) })
        : multiPayload({ ...device, sensors: sensor.channels.map((c) => ({ type: c.type, unit: c.unit, entries: entriesOf(c) })) });
  payload.seq = ++sensor.seq;
  return encodeFrame({ modelId: sensor.modelId, level: opts.level, timestamp: nowS, payload, secret: opts.secret });
}
