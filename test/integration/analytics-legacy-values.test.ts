import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { BASE_TS, commitRows, expectedAggregate, generateRows } from '../helpers/measurements.js';

/**
 * Ingest refuses values beyond ±10^15, but an analytics file written before that bound may hold
 * larger ones, infinities and NaN. One of them must not break the answers of the sensor: each
 * route answers 200 with finite numbers computed from the values within the bound.
 */
describe('analytics over stored values beyond the ingest bound', () => {
  let t: TestApp;
  const normal = generateRows({ count: 400, sensors: ['legacy'], spanS: 3600, seed: 5 });
  const wild = [1e200, -1.7e308, 1.7e308, Infinity, -Infinity, NaN, 1e15 + 2].map((value, i) => ({
    ...normal[i]!,
    ts: BASE_TS + 100 + i,
    value,
  }));

  beforeAll(async () => {
    t = await createTestApp();
    await commitRows(t.service.analytics, [...normal, ...wild]);
  });
  afterAll(() => t.close());

  const get = (url: string) => t.app.inject({ method: 'GET', url, headers: t.admin });
  const A = '/api/ocean/analytics';
  const allFinite = (body: unknown) => {
    const numbers: number[] = [];
    JSON.parse(JSON.stringify(body), (_k, v) => (typeof v === 'number' && numbers.push(v), v));
    expect(numbers.every(Number.isFinite)).toBe(true);
  };

  it('stats pool only the values within the bound', async () => {
    const res = await get(`${A}/sensor/legacy/stats`);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    const e = expectedAggregate(normal);
    expect(body.count).toBe(e.count);
    expect(body.max_value).toBe(e.max);
    expect(body.min_value).toBe(e.min);
    expect(Math.abs(body.stddev_value - e.stddev!)).toBeLessThan(1e-9);
    allFinite(body);
  });

  it('timeseries, anomalies and compare answer with finite numbers', async () => {
    for (const url of [
      `${A}/sensor/legacy/timeseries?interval=5m`,
      `${A}/sensor/legacy/anomalies?threshold=2`,
      `${A}/compare?sensor_ids=legacy&sensor_ids=other`,
    ]) {
      const res = url.includes('compare')
        ? await t.app.inject({ method: 'POST', url: `${A}/compare`, headers: t.admin, payload: { sensor_ids: ['legacy', 'other'] } })
        : await get(url);
      expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
      allFinite(res.json());
    }
    const ts = (await get(`${A}/sensor/legacy/timeseries?interval=1h`)).json();
    expect(ts.data.reduce((n: number, b: { count: number }) => n + b.count, 0)).toBe(normal.length);
  });

  it('exports every stored value, the wild ones included, in each format', async () => {
    for (const format of ['csv', 'json', 'ndjson', 'parquet']) {
      const res = await get(`${A}/export?format=${format}&sensor_id=legacy`);
      expect(res.statusCode, `${format}: ${res.body.slice(0, 200)}`).toBe(200);
      if (format === 'json') expect(JSON.parse(res.body)).toHaveLength(normal.length + wild.length);
      if (format === 'ndjson') expect(res.body.trim().split('\n').map((line) => JSON.parse(line))).toHaveLength(normal.length + wild.length);
      if (format === 'csv') expect(res.body.trim().split('\n')).toHaveLength(normal.length + wild.length + 1);
    }
  });
});
