/**
 * Payload profiles by model id. Adding a model is adding one entry to PROFILES; a model without
 * an entry is `unknown_model`.
 */
import { LEGACY_GAS, LEGACY_PRESSURE, isPlainMap } from './payload.js';
import type { LegacyLayout, PayloadMap } from './payload.js';
import { MAX_MEASUREMENT } from './types.js';
import type { MeasurementRecord } from './types.js';

export interface Profile {
  name: string;
  /**
   * Records of a TELEMETRY payload map (device_id and lab_id are read by the decoder), or null
   * when the map does not have the profile's shape, which the decoder reports as `bad_payload`.
   */
  records(map: PayloadMap, sensorId: string, headerTs: number): MeasurementRecord[] | null;
  /** Binary layout accepted when the payload is not a CBOR map (C firmware). */
  legacy?: LegacyLayout;
}

/**
 * A CBOR int or float within ±MAX_MEASUREMENT. NaN and ±Infinity are refused: the decoded form is
 * JSON, which cannot carry them. Finite but huge values (1e200) are refused too: squares of them
 * overflow a double, which would break the standard deviation of that sensor in every aggregate.
 */
function isMeasurement(v: unknown): v is number {
  return typeof v === 'number' && v >= -MAX_MEASUREMENT && v <= MAX_MEASUREMENT;
}

/** A finite number (for times, bounded separately). */
const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * An entry's own time: Unix seconds in the range of the header's u32 timestamp. The spec bounds only
 * the header by the drift window; a reading time far outside any clock (1e300, negative) would be
 * accepted, signed, and then fail in every store downstream, so it is a `bad_payload` here.
 */
function isEntryTime(v: unknown): v is number {
  return isFiniteNumber(v) && v >= 0 && v <= 0xffffffff;
}

/** Appends the records of `entries: [{ts?, <valueKey>}]`; false when the shape is wrong. */
function appendEntries(
  out: MeasurementRecord[],
  entries: unknown,
  valueKey: string,
  sensorId: string,
  metric: string,
  unit: string,
  headerTs: number,
): boolean {
  if (!Array.isArray(entries)) return false;
  for (const entry of entries) {
    if (!isPlainMap(entry)) return false;
    const value = entry[valueKey];
    if (!isMeasurement(value)) return false;
    let ts = headerTs;
    if ('ts' in entry) {
      if (!isEntryTime(entry.ts)) return false;
      ts = entry.ts;
    }
    out.push({ sensor_id: sensorId, metric, unit, ts, value });
  }
  return true;
}

/** `{entries: [{ts, <valueKey>}]}` with a fixed metric and unit. */
function singleMetric(metric: string, unit: string, valueKey: string): Profile['records'] {
  return (map, sensorId, headerTs) => {
    const out: MeasurementRecord[] = [];
    return appendEntries(out, map.entries, valueKey, sensorId, metric, unit, headerTs) ? out : null;
  };
}

/** `{gas_type, entries: [{ts, ppm}]}`: the metric is the gas. */
const gasRecords: Profile['records'] = (map, sensorId, headerTs) => {
  const gas = map.gas_type;
  if (typeof gas !== 'string' || gas === '') return null;
  const out: MeasurementRecord[] = [];
  return appendEntries(out, map.entries, 'ppm', sensorId, gas, 'ppm', headerTs) ? out : null;
};

/** `{sensors: [{type, unit, entries: [{ts, value}]}]}`: one metric per sensor. */
const multiRecords: Profile['records'] = (map, sensorId, headerTs) => {
  const sensors = map.sensors;
  if (!Array.isArray(sensors)) return null;
  const out: MeasurementRecord[] = [];
  for (const s of sensors) {
    if (!isPlainMap(s)) return null;
    const { type, unit } = s;
    if (typeof type !== 'string' || type === '' || typeof unit !== 'string') return null;
    if (!appendEntries(out, s.entries, 'value', sensorId, type, unit, headerTs)) return null;
  }
  return out;
};

export const PROFILES: ReadonlyMap<number, Profile> = new Map<number, Profile>([
  [0x10, { name: 'NANO-ESP32-PRESSURE', records: singleMetric('pressure', 'Pa', 'value'), legacy: LEGACY_PRESSURE }],
  [0x20, { name: 'NANO-STM32-GAS', records: gasRecords, legacy: LEGACY_GAS }],
  [0x30, { name: 'NANO-ASIC-MULTI', records: multiRecords }],
  [0x40, { name: 'NANO-RPI-NODE', records: multiRecords }],
  [0xff, { name: 'CUSTOM', records: multiRecords }],
]);
