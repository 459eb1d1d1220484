import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { BASE_TS, expectedAggregate, generateRows, iso, type MeasurementRow } from '../helpers/measurements.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

const near = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(b)));

describe('HTTP analytics', () => {
  let t: TestApp;
  let rows: MeasurementRow[];
  let alice: TestUser;
  let bob: TestUser;

  // Every test only reads: one app, set up once.
  beforeAll(async () => {
    t = await createTestApp();
    rows = generateRows({ count: 4000, sensors: ['alice-1', 'alice-2', 'bob-1', 'orphan'], seed: 11 });
    await t.seed(rows);
    alice = await createUserWithSession(t, 'alice');
    bob = await createUserWithSession(t, 'bob');
    for (const [device_id, owner_id] of [
      ['alice-1', alice.id],
      ['alice-2', alice.id],
      ['bob-1', bob.id],
    ] as const) {
      const res = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id, owner_id } });
      expect(res.statusCode).toBe(200);
    }
  });
  afterAll(async () => {
    await t.close();
  });

  const get = (url: string, headers: Record<string, string> = t.admin) => t.app.inject({ method: 'GET', url, headers });
  const post = (url: string, payload: object, headers: Record<string, string> = t.admin) =>
    t.app.inject({ method: 'POST', url, headers, payload });
  const A = '/api/ocean/analytics';

  describe('stats', () => {
    it('gives the sensor totals and per-metric breakdown computed from the rows', async () => {
      const res = await get(`${A}/sensor/alice-1/stats`, alice.auth);
      expect(res.statusCode).toBe(200);
      const body = res.json();
      const e = expectedAggregate(rows.filter((r) => r.sensor_id === 'alice-1'));
      expect(body).toMatchObject({ sensor_id: 'alice-1', count: e.count, min_value: e.min, max_value: e.max, first_reading: iso(e.first!), last_reading: iso(e.last!) });
      near(body.avg_value, e.avg!);
      near(body.stddev_value, e.stddev!);
      expect(body.metrics).toHaveLength(2);
    });

    it('takes start and end as ISO 8601 or Unix seconds, and a metric', async () => {
      const start = BASE_TS + 3600;
      const end = BASE_TS + 7200;
      const e = expectedAggregate(rows.filter((r) => r.sensor_id === 'bob-1' && r.metric === 'humidity' && r.ts >= start && r.ts <= end));
      for (const q of [`start=${start}&end=${end}`, `start=${new Date(start * 1000).toISOString()}&end=${new Date(end * 1000).toISOString()}`]) {
        const res = await get(`${A}/sensor/bob-1/stats?${q}&metric=humidity`);
        expect(res.statusCode).toBe(200);
        expect(res.json().count).toBe(e.count);
      }
    });

    it('refuses a time that is neither, and start after end, with 422', async () => {
      expectErrorShape(await get(`${A}/sensor/bob-1/stats?start=yesterday`), 422, 'validation_error');
      const reversed = await get(`${A}/sensor/bob-1/stats?start=${BASE_TS + 10}&end=${BASE_TS}`);
      expectErrorShape(reversed, 422, 'validation_error');
      expect(reversed.json().detail[0].loc).toEqual(['query', 'start']);
    });

    it('answers count 0 and nulls for a sensor without data (admin)', async () => {
      const res = await get(`${A}/sensor/nothing-here/stats`);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ count: 0, avg_value: null, stddev_value: null, first_reading: null, metrics: [] });
    });
  });

  describe('timeseries', () => {
    it('gives one-day 5-minute buckets of one metric, oldest first', async () => {
      const start = BASE_TS;
      const end = BASE_TS + 86400;
      const res = await get(`${A}/sensor/alice-2/timeseries?interval=5m&start=${start}&end=${end}&metric=temperature`, alice.auth);
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body).toMatchObject({ sensor_id: 'alice-2', interval: '5m', interval_seconds: 300 });
      const inRange = rows.filter((r) => r.sensor_id === 'alice-2' && r.metric === 'temperature' && r.ts >= start && r.ts <= end);
      expect(body.data.reduce((n: number, b: { count: number }) => n + b.count, 0)).toBe(inRange.length);
      const first = body.data[0];
      const e = expectedAggregate(inRange.filter((r) => Math.floor(r.ts / 300) * 300 === Date.parse(first.bucket) / 1000));
      expect(first.count).toBe(e.count);
      near(first.avg_value, e.avg!);
      const buckets = body.data.map((b: { bucket: string }) => b.bucket);
      expect(buckets).toEqual([...buckets].sort());
    });

    it('defaults to 5-minute buckets and takes interval words', async () => {
      const byDefault = (await get(`${A}/sensor/alice-2/timeseries`, alice.auth)).json();
      expect(byDefault).toMatchObject({ interval: '5m', interval_seconds: 300 });
      const words = (await get(`${A}/sensor/alice-2/timeseries?interval=${encodeURIComponent('5 minutes')}`, alice.auth)).json();
      expect(words).toMatchObject({ interval: '5 minutes', interval_seconds: 300 });
      expect(words.data).toEqual(byDefault.data);
    });

    it.each(['5 minutes; DROP TABLE measurements', '0s', '-1m', '1 month', '1.5s', "5m' OR 1=1 --", '999d'])('refuses interval %j with 422', async (interval) => {
      const res = await get(`${A}/sensor/alice-1/timeseries?interval=${encodeURIComponent(interval)}`);
      expectErrorShape(res, 422, 'validation_error');
      expect(res.json().detail[0]).toMatchObject({ loc: ['query', 'interval'], type: 'value_error' });
    });
  });

  describe('anomalies', () => {
    it('lists readings above the z-score threshold, newest first, at most limit', async () => {
      const res = await get(`${A}/sensor/bob-1/anomalies?threshold=2.5&limit=5`, bob.auth);
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.threshold).toBe(2.5);
      expect(body.anomalies.length).toBeGreaterThan(0);
      expect(body.anomalies.length).toBeLessThanOrEqual(5);
      expect(body.count).toBe(body.anomalies.length);
      const z = body.anomalies.map((a: { z_score: number }) => Math.abs(a.z_score));
      expect(z.every((v: number) => v > 2.5)).toBe(true);
      const times = body.anomalies.map((a: { timestamp: string }) => a.timestamp);
      expect(times).toEqual([...times].sort().reverse());
    });

    it.each([
      ['threshold=0', 'threshold'],
      ['threshold=-1', 'threshold'],
      ['threshold=abc', 'threshold'],
      ['limit=0', 'limit'],
      ['limit=10001', 'limit'],
      ['limit=2.5', 'limit'],
    ])('refuses %s with 422', async (query, field) => {
      const res = await get(`${A}/sensor/bob-1/anomalies?${query}`);
      expectErrorShape(res, 422, 'validation_error');
      expect(res.json().detail[0].loc).toEqual(['query', field]);
    });
  });

  describe('compare', () => {
    it('gives the aggregates of each sensor, keyed in descending avg_value, and listed in the order asked', async () => {
      const start = BASE_TS + 86400;
      const res = await post(`${A}/compare`, { sensor_ids: ['alice-2', 'alice-1'], start_time: start, metric: 'temperature' }, alice.auth);
      expect(res.statusCode).toBe(200);
      const { comparison, sensors } = res.json();
      expect(sensors.map((s: { sensor_id: string }) => s.sensor_id)).toEqual(['alice-2', 'alice-1']);
      for (const s of sensors) {
        const e = expectedAggregate(rows.filter((r) => r.sensor_id === s.sensor_id && r.metric === 'temperature' && r.ts >= start));
        expect(s.count).toBe(e.count);
        near(s.avg_value, e.avg!);
        near(comparison[s.sensor_id].avg_value, e.avg!);
      }
      const avgs = Object.values(comparison).map((c) => (c as { avg_value: number }).avg_value);
      expect(avgs).toEqual([...avgs].sort((a, b) => b - a));
    });

    it('answers an empty comparison for no sensor, and refuses 101 sensors with 422', async () => {
      const none = await post(`${A}/compare`, { sensor_ids: [] });
      expect(none.statusCode).toBe(200);
      expect(none.json()).toEqual({ comparison: {}, sensors: [] });
      const many = Array.from({ length: 101 }, (_, i) => `s-${i}`);
      expectErrorShape(await post(`${A}/compare`, { sensor_ids: many }), 422, 'validation_error');
      expect((await post(`${A}/compare`, { sensor_ids: many.slice(0, 100) })).statusCode).toBe(200);
    });
  });

  describe('sensors', () => {
    it('lists every sensor for the admin and only its own for a user', async () => {
      const all = (await get(`${A}/sensors`)).json();
      expect(all.sensors.map((s: { sensor_id: string }) => s.sensor_id)).toEqual(['alice-1', 'alice-2', 'bob-1', 'orphan']);
      const mine = await get(`${A}/sensors`, alice.auth);
      expect(mine.statusCode).toBe(200);
      expect(mine.json()).toMatchObject({ count: 2, sensors: [{ sensor_id: 'alice-1', count: 1000 }, { sensor_id: 'alice-2', count: 1000 }] });
    });
  });

  describe('export', () => {
    it('streams parquet as a download with its content type', async () => {
      const res = await get(`${A}/export?format=parquet&sensor_id=bob-1`, bob.auth);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/vnd.apache.parquet');
      expect(res.headers['content-disposition']).toMatch(/^attachment; filename="ocean-measurements-\d{8}T\d{6}Z\.parquet"$/);
      expect(res.rawPayload.subarray(0, 4).toString()).toBe('PAR1');
      // Streamed as DuckDB writes it: chunked, no length known up front.
      expect(res.headers['content-length']).toBeUndefined();
    });

    it('gives a user only its own sensors when no sensor is named', async () => {
      const res = await get(`${A}/export?format=csv`, alice.auth);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
      const lines = res.body.trim().split('\n').slice(1);
      expect(lines).toHaveLength(2000);
      expect(new Set(lines.map((l) => l.split(',')[1]))).toEqual(new Set(['alice-1', 'alice-2']));
    });

    it('filters JSON exports by sensor, metric and time', async () => {
      const start = BASE_TS + 86400;
      const res = await get(`${A}/export?format=json&sensor_id=alice-1&sensor_id=bob-1&metric=humidity&start=${start}`);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      const got = res.json() as Array<{ sensor_id: string; value: number }>;
      const expected = rows.filter((r) => ['alice-1', 'bob-1'].includes(r.sensor_id) && r.metric === 'humidity' && r.ts >= start);
      expect(got).toHaveLength(expected.length);
      near(
        got.reduce((s, r) => s + r.value, 0),
        expectedAggregate(expected).sum,
      );
    });

    it('refuses an unknown format with 422', async () => {
      expectErrorShape(await get(`${A}/export?format=xlsx`), 422, 'validation_error');
      expectErrorShape(await get(`${A}/export?format=../../etc/passwd`), 422, 'validation_error');
    });
  });

  describe('tenancy', () => {
    it('answers 401 without a token or with an unknown one', async () => {
      for (const url of [`${A}/sensor/alice-1/stats`, `${A}/sensor/alice-1/timeseries`, `${A}/sensor/alice-1/anomalies`, `${A}/sensors`, `${A}/export?format=csv`]) {
        expectErrorShape(await get(url, {}), 401, 'unauthorized');
        expectErrorShape(await get(url, { authorization: 'Bearer nope' }), 401, 'unauthorized');
      }
      expectErrorShape(await post(`${A}/compare`, { sensor_ids: ['alice-1'] }, {}), 401, 'unauthorized');
    });

    it("answers 403 when a user reads a sensor it does not own", async () => {
      for (const url of [
        `${A}/sensor/bob-1/stats`,
        `${A}/sensor/bob-1/timeseries?interval=1h`,
        `${A}/sensor/bob-1/anomalies`,
        `${A}/sensor/orphan/stats`,
        `${A}/sensor/unknown/stats`,
        `${A}/export?format=csv&sensor_id=alice-1&sensor_id=bob-1`,
      ]) {
        expectErrorShape(await get(url, alice.auth), 403, 'forbidden');
      }
      expectErrorShape(await post(`${A}/compare`, { sensor_ids: ['alice-1', 'bob-1'] }, alice.auth), 403, 'forbidden');
    });
  });
});
