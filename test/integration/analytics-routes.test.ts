import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MeasurementRow } from '../../src/analytics/engine.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { BASE_TS, expectedAggregate, generateRows, iso } from '../helpers/measurements.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

const expectError = (res: { statusCode: number; json(): unknown }, statusCode: number, error?: string) => {
  expect(res.statusCode).toBe(statusCode);
  const body = res.json();
  expect(body).toMatchObject({ statusCode, error: error ?? expect.any(String), message: expect.any(String) });
  expect(JSON.stringify(body)).not.toMatch(/\bat .+\.(ts|js):\d+/);
};

const near = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(b)));

describe('HTTP analytics', () => {
  let t: TestApp;
  let rows: MeasurementRow[];
  let alice: TestUser;
  let bob: TestUser;

  beforeEach(async () => {
    t = await createTestApp();
    rows = generateRows({ count: 4000, sensors: ['alice-1', 'alice-2', 'bob-1', 'orphan'], seed: 11 });
    await t.service.analytics.appendBatch(rows, 0);
    alice = await createUserWithSession(t, 'alice');
    bob = await createUserWithSession(t, 'bob');
    for (const [device_id, owner_id] of [
      ['alice-1', alice.id],
      ['alice-2', alice.id],
      ['bob-1', bob.id],
    ] as const) {
      const res = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id, owner_id } });
      expect(res.statusCode).toBe(201);
    }
  });
  afterEach(async () => {
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
      expect(body).toMatchObject({ sensor_id: 'alice-1', count: e.count, min: e.min, max: e.max, first_reading: iso(e.first!), last_reading: iso(e.last!) });
      near(body.avg, e.avg!);
      near(body.stddev, e.stddev!);
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

    it('refuses a time that is neither, and start after end, with 400', async () => {
      expectError(await get(`${A}/sensor/bob-1/stats?start=yesterday`), 400, 'validation_error');
      expectError(await get(`${A}/sensor/bob-1/stats?start=${BASE_TS + 10}&end=${BASE_TS}`), 400);
    });

    it('answers count 0 and nulls for a sensor without data (admin)', async () => {
      const res = await get(`${A}/sensor/nothing-here/stats`);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ count: 0, avg: null, stddev: null, first_reading: null, metrics: [] });
    });
  });

  describe('timeseries', () => {
    it('gives one-day 5-minute buckets per metric', async () => {
      const start = BASE_TS;
      const end = BASE_TS + 86400;
      const res = await get(`${A}/sensor/alice-2/timeseries?interval=5m&start=${start}&end=${end}&metric=temperature`, alice.auth);
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body).toMatchObject({ sensor_id: 'alice-2', interval: '5m', interval_seconds: 300 });
      const inRange = rows.filter((r) => r.sensor_id === 'alice-2' && r.metric === 'temperature' && r.ts >= start && r.ts <= end);
      expect(body.buckets.reduce((n: number, b: { count: number }) => n + b.count, 0)).toBe(inRange.length);
      const first = body.buckets[0];
      const e = expectedAggregate(inRange.filter((r) => Math.floor(r.ts / 300) * 300 === Date.parse(first.bucket) / 1000));
      expect(first.count).toBe(e.count);
      near(first.avg, e.avg!);
    });

    it.each(['5 minutes; DROP TABLE measurements', '0s', '-1m', '1w', '1.5h', "5m' OR 1=1 --"])('refuses interval %j with 400', async (interval) => {
      expectError(await get(`${A}/sensor/alice-1/timeseries?interval=${encodeURIComponent(interval)}`), 400, 'validation_error');
    });

    it('refuses an interval longer than a year with 400', async () => {
      expectError(await get(`${A}/sensor/alice-1/timeseries?interval=999d`), 400, 'invalid_interval');
    });
  });

  describe('anomalies', () => {
    it('lists readings above the z-score threshold, largest first, at most limit', async () => {
      const res = await get(`${A}/sensor/bob-1/anomalies?threshold=2.5&limit=5`, bob.auth);
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.threshold).toBe(2.5);
      expect(body.anomalies.length).toBeGreaterThan(0);
      expect(body.anomalies.length).toBeLessThanOrEqual(5);
      const z = body.anomalies.map((a: { z_score: number }) => Math.abs(a.z_score));
      expect(z).toEqual([...z].sort((a, b) => b - a));
      expect(z.every((v: number) => v > 2.5)).toBe(true);
    });

    it.each([
      ['threshold=0', 'threshold'],
      ['threshold=-1', 'threshold'],
      ['threshold=abc', 'threshold'],
      ['limit=0', 'limit'],
      ['limit=10001', 'limit'],
      ['limit=2.5', 'limit'],
    ])('refuses %s with 400', async (query, field) => {
      const res = await get(`${A}/sensor/bob-1/anomalies?${query}`);
      expectError(res, 400, 'validation_error');
      expect(res.json().message).toMatch(field);
    });
  });

  describe('compare', () => {
    it('gives the aggregates of each sensor in the order asked', async () => {
      const start = BASE_TS + 86400;
      const res = await post(`${A}/compare`, { sensor_ids: ['alice-2', 'alice-1'], start_time: start, metric: 'temperature' }, alice.auth);
      expect(res.statusCode).toBe(200);
      const sensors = res.json().sensors;
      expect(sensors.map((s: { sensor_id: string }) => s.sensor_id)).toEqual(['alice-2', 'alice-1']);
      for (const s of sensors) {
        const e = expectedAggregate(rows.filter((r) => r.sensor_id === s.sensor_id && r.metric === 'temperature' && r.ts >= start));
        expect(s.count).toBe(e.count);
        near(s.avg, e.avg!);
      }
    });

    it('refuses no sensor and 101 sensors with 400', async () => {
      expectError(await post(`${A}/compare`, { sensor_ids: [] }), 400, 'validation_error');
      const many = Array.from({ length: 101 }, (_, i) => `s-${i}`);
      expectError(await post(`${A}/compare`, { sensor_ids: many }), 400, 'validation_error');
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
      expect(Number(res.headers['content-length'])).toBe(res.rawPayload.length);
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

    it('refuses an unknown format with 400', async () => {
      expectError(await get(`${A}/export?format=xlsx`), 400, 'validation_error');
      expectError(await get(`${A}/export?format=../../etc/passwd`), 400, 'validation_error');
    });
  });

  describe('tenancy', () => {
    it('answers 401 without a token or with an unknown one', async () => {
      for (const url of [`${A}/sensor/alice-1/stats`, `${A}/sensor/alice-1/timeseries`, `${A}/sensor/alice-1/anomalies`, `${A}/sensors`, `${A}/export?format=csv`]) {
        expectError(await get(url, {}), 401, 'unauthorized');
        expectError(await get(url, { authorization: 'Bearer nope' }), 401, 'unauthorized');
      }
      expectError(await post(`${A}/compare`, { sensor_ids: ['alice-1'] }, {}), 401, 'unauthorized');
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
        expectError(await get(url, alice.auth), 403, 'forbidden');
      }
      expectError(await post(`${A}/compare`, { sensor_ids: ['alice-1', 'bob-1'] }, alice.auth), 403, 'forbidden');
    });
  });
});
