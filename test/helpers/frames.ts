import { randomBytes } from 'node:crypto';
import { encodeFrame, pressurePayload } from '../../src/nanogridata/encoder.js';

export const PRESSURE_MODEL = 0x10;

/** A fresh per-model secret and the env variable that configures it. */
export function pressureSecret(): { secret: Buffer; env: Record<string, string> } {
  const secret = randomBytes(32);
  return { secret, env: { NANOGRIDATA_SECRET_10: secret.toString('hex') } };
}

export interface SensorTotals {
  count: number;
  sum: number;
  min: number;
  max: number;
}

/**
 * `count` signed pressure frames spread over `devices` sensors, 1–3 entries each, every entry with a
 * distinct (sensor, ts, value). Returns the frames and the totals computed here, independently of the
 * decoder and the analytics store.
 */
export function pressureFrames(options: { count: number; devices: number; secret: Buffer; now?: number; prefix?: string }) {
  const now = Math.floor(options.now ?? Date.now() / 1000);
  const prefix = options.prefix ?? 'P';
  const frames: Buffer[] = [];
  const totals = new Map<string, SensorTotals>();
  let records = 0;
  for (let i = 0; i < options.count; i++) {
    const deviceId = `${prefix}-${i % options.devices}`;
    const n = 1 + (i % 3);
    const entries = Array.from({ length: n }, (_, k) => ({ ts: now - 600 + (i % 600) + k / 10, value: 100_000 + i * 3 + k }));
    frames.push(encodeFrame({ modelId: PRESSURE_MODEL, level: 1, timestamp: now, payload: pressurePayload({ deviceId, labId: 'LAB-1', entries }), secret: options.secret }));
    const t = totals.get(deviceId) ?? { count: 0, sum: 0, min: Infinity, max: -Infinity };
    for (const e of entries) {
      t.count++;
      t.sum += e.value;
      t.min = Math.min(t.min, e.value);
      t.max = Math.max(t.max, e.value);
    }
    totals.set(deviceId, t);
    records += n;
  }
  return { frames, totals, records };
}

/** Polls until `check` returns a truthy value or the time runs out. */
export async function waitFor<T>(check: () => T | Promise<T>, options: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last as NonNullable<T>;
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 50));
  }
  throw new Error(`timed out waiting for ${options.what ?? 'condition'} (last: ${JSON.stringify(last)})`);
}
