import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, multiPayload } from '../../src/nanogridata/encoder.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/frames.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const SECRET = Buffer.alloc(32, 0x5a);
const NOW = Math.floor(Date.now() / 1000);
/** Start of the hour before now, so every reading is inside the drift window and buckets are whole. */
const T0 = Math.floor((NOW - 3600) / 3600) * 3600;

interface Reading {
  sensor: string;
  metric: string;
  ts: number;
  value: number;
}

/** Two sensors of the multi model, two metrics each, one reading a minute for 50 minutes; one spike. */
function makeReadings(): Reading[] {
  const readings: Reading[] = [];
  for (const sensor of ['MULTI-A', 'MULTI-B']) {
    for (let m = 0; m < 50; m++) {
      const ts = T0 + m * 60 + 7;
      const spike = sensor === 'MULTI-A' && m === 33;
      readings.push({ sensor, metric: 'temperature', ts, value: spike ? 95 : 20 + (m % 5) * 0.5 + (sensor === 'MULTI-B' ? 3 : 0) });
      readings.push({ sensor, metric: 'humidity', ts, value: 40 + (m % 7) });
    }
  }
  return readings;
}

/** One frame per sensor and minute, carrying both metrics. */
function framesOf(readings: Reading[]): Buffer[] {
  const bySensorTs = new Map<string, Reading[]>();
  for (const r of readings) {
    const key = `${r.sensor}|${r.ts}`;
    bySensorTs.set(key, [...(bySensorTs.get(key) ?? []), r]);
  }
  return [...bySensorTs.values()].map((group) =>
    encodeFrame({
      modelId: 0x30,
      level: 2,
      timestamp: NOW,
      secret: SECRET,
      payload: multiPayload({
        deviceId: group[0]!.sensor,
        labId: 'LAB-9',
        sensors: group.map((r) => ({ type: r.metric, unit: r.metric === 'temperature' ? '°C' : '%', entries: [{ ts: r.ts, value: r.value }] })),
      }),
    }),
  );
}

function summary(values: number[]) {
  const n = values.length;
  const avg = values.reduce((a, b) => a + b, 0) / n;
  const stddev = Math.sqrt(values.reduce((a, v) => a + (v - avg) ** 2, 0) / (n - 1));
  return { count: n, avg, min: Math.min(...values), max: Math.max(...values), stddev };
}

const pick = (readings: Reading[], sensor: string, metric?: string) =>
  readings.filter((r) => r.sensor === sensor && (metric === undefined || r.metric === metric)).map((r) => r.value);

describe('frames pushed to the stream, read back through the analytics API', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let t: TestApp;
  let userAuth: { authorization: string };
  const readings = makeReadings();

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    const stream = `t${randomUUID().slice(0, 8)}:frames`;
    t = await createTestApp({
      env: { REDIS_URL: redisServer.url, INGEST_STREAM: stream, INGEST_BLOCK_MS: '100', NANOGRIDATA_SECRET_30: SECRET.toString('hex') },
      start: true,
    });
    const user = (await t.app.inject({ method: 'POST', url: '/api/ocean/users', headers: t.admin, payload: { username: 'alice', email: 'alice@example.com' } })).json();
    const session = (await t.app.inject({ method: 'POST', url: '/api/ocean/sessions/create', headers: t.admin, payload: { user_id: user.id, username: 'alice' } })).json();
    userAuth = { authorization: `Bearer ${session.token}` };
    // Alice owns MULTI-A; nobody has MULTI-B.
    const reg = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: 'MULTI-A', owner_id: user.id } });
    expect(reg.statusCode).toBeLessThan(300);

    const pipeline = redis.pipeline();
    for (const frame of framesOf(readings)) pipeline.xadd(stream, '*', 'frame', frame);
    await pipeline.exec();
    await waitFor(async () => (await t.count()) === readings.length, { what: 'all readings in analytics' });
  });

  afterAll(async () => {
    await t.close();
    redis.disconnect();
    await redisServer.stop();
  });

  it('computes stats per sensor and per metric as the frames say', async () => {
    const res = await t.app.inject({ url: '/api/ocean/analytics/sensor/MULTI-A/stats', headers: userAuth });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    const all = summary(pick(readings, 'MULTI-A'));
    expect(body.count).toBe(all.count);
    expect(body.avg_value).toBeCloseTo(all.avg, 9);
    expect([body.min_value, body.max_value]).toEqual([all.min, all.max]);
    expect(body.stddev_value).toBeCloseTo(all.stddev, 9);
    expect(body.first_reading).toBe(new Date((T0 + 7) * 1000).toISOString());
    for (const metric of ['temperature', 'humidity']) {
      const m = body.metrics.find((x: { metric: string }) => x.metric === metric);
      const expected = summary(pick(readings, 'MULTI-A', metric));
      expect(m.count).toBe(expected.count);
      expect(m.avg_value).toBeCloseTo(expected.avg, 9);
      expect([m.min_value, m.max_value]).toEqual([expected.min, expected.max]);
      expect(m.unit).toBe(metric === 'temperature' ? '°C' : '%');
    }
  });

  it('buckets the time series on the requested interval', async () => {
    const res = await t.app.inject({ url: '/api/ocean/analytics/sensor/MULTI-A/timeseries?interval=5m&metric=humidity', headers: userAuth });
    expect(res.statusCode).toBe(200);
    const expected = new Map<string, number[]>();
    for (const r of readings.filter((x) => x.sensor === 'MULTI-A' && x.metric === 'humidity')) {
      const bucket = new Date(Math.floor(r.ts / 300) * 300 * 1000).toISOString();
      expected.set(bucket, [...(expected.get(bucket) ?? []), r.value]);
    }
    const buckets = res.json().data as Array<{ bucket: string; count: number; avg_value: number; min_value: number; max_value: number }>;
    expect(buckets.map((b) => b.bucket).sort()).toEqual([...expected.keys()].sort());
    for (const b of buckets) {
      const s = summary(expected.get(b.bucket)!);
      expect([b.count, b.min_value, b.max_value]).toEqual([s.count, s.min, s.max]);
      expect(b.avg_value).toBeCloseTo(s.avg, 9);
    }
  });

  it('reports the spike as a z-score anomaly', async () => {
    const res = await t.app.inject({ url: '/api/ocean/analytics/sensor/MULTI-A/anomalies?threshold=3', headers: userAuth });
    expect(res.statusCode).toBe(200);
    const temps = summary(pick(readings, 'MULTI-A', 'temperature'));
    const anomalies = res.json().anomalies;
    expect(anomalies).toHaveLength(1);
    expect(anomalies[0]).toMatchObject({ metric: 'temperature', value: 95 });
    expect(anomalies[0].z_score).toBeCloseTo((95 - temps.avg) / temps.stddev, 6);
  });

  it('compares sensors (admin reads both)', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/ocean/analytics/compare', headers: t.admin, payload: { sensor_ids: ['MULTI-A', 'MULTI-B'], metric: 'temperature' } });
    expect(res.statusCode).toBe(200);
    for (const sensor of ['MULTI-A', 'MULTI-B']) {
      const row = res.json().sensors.find((s: { sensor_id: string }) => s.sensor_id === sensor);
      const expected = summary(pick(readings, sensor, 'temperature'));
      expect([row.count, row.min_value, row.max_value]).toEqual([expected.count, expected.min, expected.max]);
      expect(row.avg_value).toBeCloseTo(expected.avg, 9);
    }
  });

  it("keeps a user to its own sensors", async () => {
    const res = await t.app.inject({ url: '/api/ocean/analytics/sensor/MULTI-B/stats', headers: userAuth });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ error: 'forbidden', statusCode: 403 });
  });

  it('exports the same readings as CSV, JSON and Parquet', async () => {
    const expectedA = pick(readings, 'MULTI-A');
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

    const csv = await t.app.inject({ url: '/api/ocean/analytics/export?format=csv', headers: userAuth });
    expect(csv.statusCode).toBe(200);
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    expect(csv.headers['content-disposition']).toMatch(/^attachment; filename=/);
    const [header, ...lines] = csv.body.trim().split('\n');
    const valueCol = header!.split(',').indexOf('value');
    expect(lines).toHaveLength(expectedA.length);
    expect(sum(lines.map((l) => Number(l.split(',')[valueCol])))).toBeCloseTo(sum(expectedA), 6);

    const json = await t.app.inject({ url: '/api/ocean/analytics/export?format=json', headers: userAuth });
    expect(json.statusCode).toBe(200);
    const rows = JSON.parse(json.body) as Array<{ sensor_id: string; value: number }>;
    expect(rows.every((r) => r.sensor_id === 'MULTI-A')).toBe(true);
    expect(sum(rows.map((r) => r.value))).toBeCloseTo(sum(expectedA), 6);

    const parquet = await t.app.inject({ url: '/api/ocean/analytics/export?format=parquet', headers: t.admin });
    expect(parquet.statusCode).toBe(200);
    const bytes = parquet.rawPayload;
    expect(bytes.subarray(0, 4).toString()).toBe('PAR1');
    const temp = await makeTempDir('ocean-parquet-');
    const dir = temp.path;
    try {
      await writeFile(join(dir, 'x.parquet'), bytes);
      const duck = await DuckDBInstance.create(':memory:');
      const conn = await duck.connect();
      const result = await conn.runAndReadAll(`SELECT count(*)::INTEGER AS n, sum(value) AS s FROM read_parquet('${join(dir, 'x.parquet')}')`);
      const [row] = result.getRowObjectsJS() as Array<{ n: number; s: number }>;
      expect(row!.n).toBe(readings.length);
      expect(row!.s).toBeCloseTo(sum(readings.map((r) => r.value)), 6);
      conn.closeSync();
      duck.closeSync();
    } finally {
      await temp.cleanup();
    }
  });
});
