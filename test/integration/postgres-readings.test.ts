import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer as readAll } from 'node:stream/consumers';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import type { IngestSource } from '../../src/operational/buffer.js';
import { RecordBatchBuilder } from '../../src/operational/record-batch.js';
import type { AnalyticsStore } from '../../src/analytics/types.js';
import { createPgAnalytics } from '../../src/postgres/analytics.js';
import { inTransaction, type Pg } from '../../src/postgres/connect.js';
import { PgSeries, prepareReadings, REDELIVERY, REPLAY, STORED, storeReadings, type PgSegment } from '../../src/postgres/readings.js';
import { BASE_TS, commitRows, generateRows, rounded, type MeasurementRow } from '../helpers/measurements.js';
import { skipWithoutPostgres, usePostgres } from '../helpers/postgres-server.js';
import { openTempAnalytics } from '../helpers/temp-analytics.js';

/** One segment of rows (one source), without frames: stored as JSON readings are. */
function segmentOf(rows: readonly MeasurementRow[]): PgSegment {
  const b = new RecordBatchBuilder(rows.length);
  for (const r of rows) b.add(r, r.lab_id, r.model_id);
  return { source: rows[0]!.source as IngestSource, records: b.toBuffer() };
}

/** `frames` frames of `perFrame` readings each, fingerprint i = ids[i], for sensor `sensor`. */
function framesSegment(ids: readonly number[], options: { perFrame?: number; tag?: number; sensor?: string } = {}): PgSegment {
  const perFrame = options.perFrame ?? 3;
  const b = new RecordBatchBuilder(ids.length * perFrame);
  const fingerprints = new Uint8Array(ids.length * 8);
  const view = new DataView(fingerprints.buffer);
  ids.forEach((id, f) => {
    view.setBigInt64(f * 8, BigInt(id) * 0x1_0000_0001n, true);
    for (let k = 0; k < perFrame; k++) {
      b.add({ sensor_id: options.sensor ?? `P-${id % 10}`, ts: BASE_TS + id + k / 10, metric: 'pressure', value: id * 10 + k, unit: 'Pa' }, null, 16);
    }
  });
  return {
    source: 'stream',
    records: b.toBuffer(),
    frames: {
      fingerprints,
      timestamps: new Uint32Array(ids.length).fill(BASE_TS),
      tags: new Int32Array(ids.length).fill(options.tag ?? 0),
      recordCounts: new Uint16Array(ids.length).fill(perFrame),
    },
  };
}

type Reads = Pick<AnalyticsStore, 'sensorStats' | 'timeseries' | 'anomalies' | 'compare' | 'sensors'>;

describe.skipIf(skipWithoutPostgres())('readings on PostgreSQL', () => {
  const { database } = usePostgres();
  const store = async (pool: Pg, series: PgSeries, segments: PgSegment[]) => {
    const prepared = await prepareReadings(series, segments);
    return inTransaction(pool, (client) => storeReadings(client, prepared));
  };
  const count = async (pool: Pg) => (await pool.query('SELECT count(*) AS n FROM readings')).rows[0].n as number;


  it('answers stats, timeseries, anomalies, compare and sensor lists as the embedded DuckDB store does', async () => {
    const [pool] = await database();
    const duck = await openTempAnalytics();
    try {
      const rows = [
        ...generateRows({ count: 6000, sensors: ['sensor-a', 'sensor-b', 'sensor-c', 'Sensor-D', 'sensor_e'] }),
        ...generateRows({ count: 900, sensors: ['sensor-a', 'sensor-z'], metrics: [{ metric: 'pressure', unit: 'hPa' }], seed: 3 }).map((r) => ({ ...r, source: 'stream' })),
      ];
      await commitRows(duck.engine, rows);
      const series = new PgSeries(pool!);
      await store(pool!, series, [segmentOf(rows.slice(0, 6000)), segmentOf(rows.slice(6000))]);

      const mid = BASE_TS + 86400;
      const questions: Array<[string, (q: Reads) => Promise<unknown>]> = [
        ['stats', (q) => q.sensorStats('sensor-a')],
        ['stats of a metric in a range', (q) => q.sensorStats('sensor-a', { metric: 'temperature', start: BASE_TS + 3600, end: mid })],
        ['stats of an unknown sensor', (q) => q.sensorStats('nobody')],
        ['timeseries 5m', (q) => q.timeseries('sensor-b', { interval: '5m', start: BASE_TS, end: mid })],
        ['timeseries 1h of a metric', (q) => q.timeseries('sensor-a', { interval: '1h', metric: 'pressure' })],
        ['anomalies', (q) => q.anomalies('sensor-c', { threshold: 2 })],
        ['anomalies, limited', (q) => q.anomalies('sensor-a', { threshold: 1.5, limit: 7 })],
        ['compare', (q) => q.compare(['sensor-a', 'sensor-b', 'nobody', 'Sensor-D', 'sensor-z'])],
        ['compare a metric in a range', (q) => q.compare(['sensor-a', 'sensor-z'], { metric: 'pressure', start: BASE_TS, end: mid })],
        ['sensors', (q) => q.sensors()],
        ['sensors, a page', (q) => q.sensors({ after: 'Sensor-D', limit: 2 })],
        ['sensors of a list', (q) => q.sensors({ sensorIds: ['sensor-z', 'sensor_e', 'nobody'] })],
      ];
      const pg = createPgAnalytics(pool!, { maxExports: 2, timeoutMs: 30_000 });
      for (const [name, ask] of questions) expect(rounded(await ask(pg)), name).toEqual(rounded(await ask(duck.engine)));
      // Not vacuous: the answers hold data.
      expect((await pg.sensorStats('sensor-a')).count).toBeGreaterThan(1000);
      expect((await pg.anomalies('sensor-c')).count).toBeGreaterThan(0);
      expect((await pg.timeseries('sensor-b', { interval: '5m' })).data.length).toBeGreaterThan(100);
    } finally {
      await duck.cleanup();
    }
  });

  it('exports the same rows in the same formats as the embedded store (Parquet, CSV, JSON, NDJSON)', async () => {
    const [pool] = await database();
    const duck = await openTempAnalytics();
    try {
      const rows = generateRows({ count: 3000, sensors: ['s-1', 's-2', '=s-3'], seed: 5 });
      rows[7]!.unit = '+danger';
      await commitRows(duck.engine, rows);
      await store(pool!, new PgSeries(pool!), [segmentOf(rows)]);
      const exporter = createPgAnalytics(pool!, { maxExports: 2, timeoutMs: 30_000 });
      /** A file's rows in a fixed order (neither store orders an export). */
      const sortedLines = (bytes: Buffer) => bytes.toString('utf8').trim().split('\n').sort();
      const requests = [
        { format: 'csv' as const },
        { format: 'csv' as const, sensorIds: ['=s-3', 's-1'], start: rows[1000]!.ts, end: rows[2500]!.ts },
        { format: 'ndjson' as const, metric: 'humidity' },
        { format: 'json' as const, sensorIds: ['s-2'] },
        { format: 'csv' as const, sensorIds: [] },
      ];
      for (const request of requests) {
        const [fromPg, fromDuck] = await Promise.all([exporter.exportMeasurements(request), duck.engine.exportMeasurements(request)]);
        expect(fromPg.contentType).toBe(fromDuck.contentType);
        const [a, b] = await Promise.all([readAll(fromPg.stream), readAll(fromDuck.stream)]);
        if (request.format === 'json') expect(JSON.parse(a.toString()).map(JSON.stringify).sort()).toEqual(JSON.parse(b.toString()).map(JSON.stringify).sort());
        else expect(sortedLines(a), JSON.stringify(request)).toEqual(sortedLines(b));
        expect(a.length, JSON.stringify(request)).toBeGreaterThan(request.sensorIds?.length === 0 ? 0 : 1000);
      }
      // Parquet: the same rows, read back.
      const read = async (bytes: Buffer, name: string) => {
        const path = join(duck.dir, name);
        await writeFile(path, bytes);
        const instance = await DuckDBInstance.create(':memory:');
        const c = await instance.connect();
        try {
          return (await c.runAndReadAll(`SELECT * FROM read_parquet('${path}') ORDER BY ALL`)).getRowObjectsJS();
        } finally {
          c.closeSync();
          instance.closeSync();
        }
      };
      const request = { format: 'parquet' as const, sensorIds: ['s-1', '=s-3'], metric: 'temperature' };
      const [pq, dq] = await Promise.all([exporter.exportMeasurements(request), duck.engine.exportMeasurements(request)]);
      const [pgRows, duckRows] = [await read(await readAll(pq.stream), 'pg.parquet'), await read(await readAll(dq.stream), 'duck.parquet')];
      expect(pgRows.length).toBe(rows.filter((r) => r.sensor_id !== 's-2' && r.metric === 'temperature').length);
      expect(pgRows).toEqual(duckRows);

      // At most maxExports at once: a third, while two are being read, is refused with 503. The two
      // are made large enough (about 2 MB each) that their COPYs wait for a reader, whatever the buffers.
      await store(pool!, new PgSeries(pool!), [segmentOf(generateRows({ count: 30_000, sensors: ['bulk-1', 'bulk-2'], seed: 9 }))]);
      const held = [await exporter.exportMeasurements({ format: 'ndjson' }), await exporter.exportMeasurements({ format: 'csv' })];
      await expect(exporter.exportMeasurements({ format: 'csv' })).rejects.toMatchObject({ statusCode: 503 });
      for (const file of held) file.stream.destroy();
      await Promise.all(held.map((f) => f.finished));
      expect((await readAll((await exporter.exportMeasurements({ format: 'csv', sensorIds: ['s-1'] })).stream)).length).toBeGreaterThan(1000);
    } finally {
      await duck.cleanup();
    }
  });

  it('stores a frame once whichever instance and batch bring it: replays refused, redeliveries known', async () => {
    const [a, b] = await database(2);
    const [sa, sb] = [new PgSeries(a!), new PgSeries(b!)];
    // 1,000 frames; each instance reads an overlapping half in batches of 100, at the same time.
    const ids = Array.from({ length: 1000 }, (_, i) => i + 1);
    const batches = (from: number, to: number, tag: number) =>
      Array.from({ length: (to - from) / 100 }, (_, k) => framesSegment(ids.slice(from + k * 100, from + (k + 1) * 100), { tag }));
    const [va, vb] = await Promise.all([
      (async () => Promise.all(batches(0, 600, 7).map((s) => store(a!, sa, [s]))))(),
      (async () => Promise.all(batches(400, 1000, 9).map((s) => store(b!, sb, [s]))))(),
    ]);
    const verdicts = [...va.flat(), ...vb.flat()].flatMap((v) => [...v]);
    expect(verdicts.filter((v) => v === STORED)).toHaveLength(1000);
    expect(verdicts.filter((v) => v === REPLAY)).toHaveLength(200);
    expect(await count(a!)).toBe(3000);
    // One series per sensor, though both instances created them at the same moment.
    expect((await a!.query('SELECT count(*) AS n FROM series')).rows[0].n).toBe(10);

    // The same entry again (same tag): a redelivery, stored before; from another entry: a replay.
    const again = framesSegment([1, 2, 3], { tag: 7 });
    expect([...(await store(b!, sb, [again]))[0]!]).toEqual([REDELIVERY, REDELIVERY, REDELIVERY]);
    expect([...(await store(b!, sb, [framesSegment([1, 2], { tag: 8 })]))[0]!]).toEqual([REPLAY, REPLAY]);
    // Twice in one batch: the second is not stored; readings without frames always are.
    const verdict = await store(a!, sa, [framesSegment([5000, 5000, 5001], { tag: 3 }), segmentOf(generateRows({ count: 4 }))]);
    expect([...verdict[0]!]).toEqual([STORED, REDELIVERY, STORED]);
    expect(await count(a!)).toBe(3000 + 6 + 4);
  });

  it('takes back the readings and fingerprints of a transaction that fails', async () => {
    const [pool] = await database();
    const series = new PgSeries(pool!);
    const prepared = await prepareReadings(series, [framesSegment([1, 2, 3])]);
    await expect(
      inTransaction(pool!, async (client) => {
        await storeReadings(client, prepared);
        throw new Error('the rest of the batch failed');
      }),
    ).rejects.toThrow(/rest of the batch/);
    expect(await count(pool!)).toBe(0);
    expect([...(await store(pool!, series, [framesSegment([1, 2, 3])]))[0]!]).toEqual([STORED, STORED, STORED]);
    expect(await count(pool!)).toBe(9);
  });
});
