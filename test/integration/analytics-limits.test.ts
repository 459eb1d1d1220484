import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AnalyticsEngine, MAX_EXPORTS } from '../../src/analytics/engine.js';
import { streamExport } from '../../src/analytics/export.js';
import { loadGenerated } from '../helpers/measurements.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

/** Rows of 100 sensors generated inside DuckDB (exports without a sensor read every partition). */
async function load(engine: AnalyticsEngine, rows: number): Promise<void> {
  const sensors = Array.from({ length: 100 }, (_, i) => `s-${i}`);
  await loadGenerated(engine, { sensors, count: rows, ts: `TIMESTAMP '2024-01-01' + to_seconds(i)`, value: 'i * 0.5', labId: 'lab', modelId: 1 });
}

const firstChunk = (stream: Readable) => new Promise<Buffer>((resolve, reject) => stream.once('data', resolve).once('error', reject));

describe('analytics limits (real DuckDB)', () => {
  let dir: TempDir;
  let engine: AnalyticsEngine;
  const open = async (queryTimeoutMs: number) => {
    engine = await AnalyticsEngine.open({ path: join(dir.path, 'a.duckdb'), memoryLimit: '256MB', threads: 2, readers: 1, queryTimeoutMs });
  };
  beforeEach(async () => {
    dir = await makeTempDir('ocean-duck-');
  });
  afterEach(async () => {
    await engine.close();
    await dir.cleanup();
  });

  it('interrupts a query past its time limit with 503 query_timeout, and the connection serves the next query', async () => {
    await open(300);
    const started = performance.now();
    const slow = engine.all('slow', 'SELECT sum(a.range * b.range) AS s FROM range(200000) a, range(200000) b');
    await expect(slow).rejects.toMatchObject({ statusCode: 503, code: 'query_timeout', message: expect.stringMatching(/took longer than the 300 ms limit/) });
    expect(performance.now() - started).toBeLessThan(3000);
    // One reader in this pool: it is free again.
    await expect(engine.all('next', 'SELECT 42 AS v')).resolves.toEqual([{ v: 42 }]);
  });

  it('streams an export before it is complete, and one its client abandons stops and frees its connection', async () => {
    await open(30_000);
    await load(engine, 2_000_000);
    const file = await engine.exportMeasurements({ format: 'csv' });
    expect(file.size).toBeUndefined();
    expect((await firstChunk(file.stream)).toString()).toMatch(/^ts,sensor_id,metric,value/);
    expect(engine.runningExports).toBe(1); // still writing: the download is not done
    file.stream.destroy();
    await expect.poll(() => engine.runningExports, { timeout: 5000 }).toBe(0);
  });

  it(`runs at most ${MAX_EXPORTS} exports at once (503 beyond), on connections of their own: queries still answer`, async () => {
    await open(30_000);
    await load(engine, 2_000_000);
    const running = [];
    for (let i = 0; i < MAX_EXPORTS; i++) running.push(await engine.exportMeasurements({ format: 'ndjson' }));
    await expect(engine.exportMeasurements({ format: 'csv' })).rejects.toMatchObject({ statusCode: 503 });
    // Both exports are stalled on their unread pipes; the reader pool is untouched.
    await expect(engine.all('meanwhile', 'SELECT 1 AS v')).resolves.toEqual([{ v: 1 }]);
    for (const f of running) f.stream.destroy();
    await expect.poll(() => engine.runningExports, { timeout: 5000 }).toBe(0);
  });

  it('cuts off an export its client reads slower than the minimum rate, and its connection is freed', async () => {
    await open(30_000);
    await load(engine, 2_000_000);
    const request = { format: 'csv' as const };
    const runner = { run: (path: string) => engine.exportToPipe(request, path, 'slow'), cancel: () => engine.cancelExport('slow') };
    // Nobody reads this one: whatever the window, it took less than the minimum while it waited.
    const file = await streamExport(request, runner, 30_000, { minBytesPerS: 1024, rateWindowMs: 200 });
    expect(engine.runningExports).toBe(1);
    const error = await new Promise<Error>((resolve) => file.stream.once('error', resolve));
    expect(error).toMatchObject({ code: 'export_cut_off', message: expect.stringMatching(/slower than 1024 bytes\/s/) });
    await file.finished;
    expect(engine.runningExports).toBe(0);
  });
});
