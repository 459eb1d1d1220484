import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AnalyticsClient } from '../../src/analytics/client.js';
import { commitRows, countMeasurements, generateRows } from '../helpers/measurements.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

describe('analytics client: commit through the worker', () => {
  let dir: TempDir;
  let client: AnalyticsClient;
  beforeEach(async () => {
    dir = await makeTempDir('ocean-client-');
    client = new AnalyticsClient({ path: join(dir.path, 'analytics.duckdb'), memoryLimit: '256MB', threads: 1 });
  });
  afterEach(async () => {
    await client.close();
    await dir.cleanup();
  });

  it('moves the record and fingerprint buffers to the worker instead of copying them', async () => {
    const fp = new Uint8Array(16).fill(7);
    const ts = Uint32Array.of(1_700_000_000, 1_700_000_001);
    const tag = Int32Array.of(1, 2);
    const rows = generateRows({ count: 100 });
    const request = { queueThrough: 3, position: '5-0', fingerprints: { fp, ts, tag } };
    expect(await commitRows(client, rows, request)).toEqual({ batch: 1 });
    // Moved: the caller's views are detached.
    expect([fp.byteLength, ts.byteLength, tag.byteLength]).toEqual([0, 0, 0]);
    expect(await countMeasurements(client)).toBe(100);
    expect(await client.ingestState()).toMatchObject({ batch: 1, queueThrough: 3, position: '5-0' });
    const back = await client.fingerprints(0);
    expect(back.fp).toEqual(new Uint8Array(16).fill(7));
    expect([...back.ts]).toEqual([1_700_000_000, 1_700_000_001]);
    expect([...back.tag]).toEqual([1, 2]);
  });

  it('rejects a failed commit with its error and keeps nothing of it', async () => {
    const rows = generateRows({ count: 10 });
    rows[9] = { ...rows[9]!, ts: Number.POSITIVE_INFINITY };
    await expect(commitRows(client, rows)).rejects.toThrow(/time/);
    expect(await countMeasurements(client)).toBe(0);
    expect((await client.ingestState()).batch).toBe(0);
  });
});
