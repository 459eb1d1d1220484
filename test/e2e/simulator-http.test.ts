import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSimulation } from '../../src/nanogridata/simulator.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { countMeasurements } from '../helpers/measurements.js';
import { parsePromText, sumOf } from '../helpers/prom-text.js';
import { runTsx } from '../helpers/run-cli.js';

const MODELS = [0x10, 0x20, 0x30, 0x40];

describe('sensor simulator against the HTTP frames endpoint', () => {
  const secrets = new Map(MODELS.map((m) => [m, randomBytes(32)]));
  let t: TestApp;
  let base: string;

  beforeAll(async () => {
    const env = Object.fromEntries([...secrets].map(([m, s]) => [`NANOGRIDATA_SECRET_${m.toString(16)}`, s.toString('hex')]));
    t = await createTestApp({ env });
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await t.close();
  });

  const ingested = async () => {
    const samples = parsePromText((await t.app.inject({ method: 'GET', url: '/metrics' })).body);
    return {
      frames: sumOf(samples, 'ocean_telemetry_ingested_total', { source: 'http_frames' }),
      records: sumOf(samples, 'ocean_records_ingested_total', { source: 'http_frames' }),
    };
  };

  it('delivers frames of every profile that the service accepts, in DuckDB when the answers came', async () => {
    const summary = await runSimulation({ target: base, sensors: 6, rate: 200, durationS: 1.5, profile: 'mixed', level: 1, secrets, batchSize: 20, seed: 7 });
    expect(summary).toMatchObject({ target: 'http', errors: 0, rejected: 0 });
    expect(summary.sent).toBeGreaterThan(150);
    expect(summary.accepted).toBe(summary.sent);
    // No waiting: a frame is committed to DuckDB before its answer, every record of it once.
    const counted = await ingested();
    expect(counted.frames).toBe(summary.sent);
    expect(counted.records).toBeGreaterThanOrEqual(summary.sent);
    expect(await countMeasurements(t.service.analytics)).toBe(counted.records);
    const sensors = await t.service.analytics.sensors();
    expect(sensors.count).toBe(6);
    // Frames never pass through the JSON work queue.
    expect(t.service.store.buffer.counts().rows).toBe(0);
  });

  it('exits 1 and names the reason when the service refuses the frames (secrets that differ)', async () => {
    const wrong = Object.fromEntries(MODELS.map((m) => [`NANOGRIDATA_SECRET_${m.toString(16)}`, randomBytes(32).toString('hex')]));
    const before = await ingested();
    const measurementsBefore = await countMeasurements(t.service.analytics);
    const run = await runTsx('src/cli/simulate.ts', ['--target', base, '--sensors', '2', '--rate', '50', '--duration', '0.5'], { env: wrong });
    expect(run.code).toBe(1);
    const summary = JSON.parse(run.stdout) as { sent: number; accepted: number; rejected: number; rejectedReasons: Record<string, number> };
    expect(summary.sent).toBeGreaterThan(0);
    expect(summary).toMatchObject({ accepted: 0, rejected: summary.sent, rejectedReasons: { bad_mac: summary.sent } });
    expect(run.stderr).toContain(`the service refused ${summary.sent} of ${summary.sent} frames (bad_mac ${summary.sent})`);
    expect(await ingested()).toEqual(before);
    expect(await countMeasurements(t.service.analytics)).toBe(measurementsBefore);
  });
});
