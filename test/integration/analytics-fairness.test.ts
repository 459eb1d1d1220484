import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, SHARED, type TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { loadGenerated } from '../helpers/measurements.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

/** `rows` readings of one sensor, generated inside the analytics store (DuckDB, or PostgreSQL) straight into its tables. */
async function load(t: TestApp, sensorId: string, rows: number): Promise<void> {
  if (SHARED) {
    // The same series and readings as loadGenerated's, in one statement.
    await t.shared!.pool.query(
      `WITH s AS (INSERT INTO series(sensor_id, metric, unit, lab_id, model_id, source) VALUES ($1, 'temperature', 'C', NULL, NULL, 'test') RETURNING series)
       INSERT INTO readings(series, ts, value)
       SELECT s.series, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second', (i * 7919) % 1000 * 0.1 FROM s, generate_series(0, $2::bigint - 1) AS i`,
      [sensorId, rows],
    );
    return;
  }
  await loadGenerated(t.service.analytics, { sensors: [sensorId], count: rows, ts: `TIMESTAMP '2024-01-01' + to_seconds(i)`, value: '(i * 7919) % 1000 * 0.1' });
}

/** A user who owns `sensorId` (claimed by an ingest, in analytics). */
async function userWithSensor(t: TestApp, name: string, sensorId: string): Promise<TestUser> {
  const user = await createUserWithSession(t, name);
  const res = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: user.auth, payload: { sensor_id: sensorId, data: { temperature: 20 } } });
  expect(res.statusCode).toBe(200);
  await t.settle();
  return user;
}

describe('analytics and exports are shared fairly between users (real DuckDB, or PostgreSQL)', () => {
  let t: TestApp;
  let slow: Socket | undefined;
  afterEach(async () => {
    slow?.destroy();
    await t.close();
  });

  it("one user's many parallel heavy queries are refused past its share (503, Retry-After) and another user's query still runs", async () => {
    t = await createTestApp({ env: { ANALYTICS_USER_CONCURRENCY: '1', ANALYTICS_USER_QUEUE: '3' } });
    const alice = await userWithSensor(t, 'alice', 'A-heavy');
    const bob = await userWithSensor(t, 'bob', 'B-light');
    await load(t, 'A-heavy', 2_000_000);

    const finished: string[] = [];
    const heavy = Array.from({ length: 20 }, (_, i) =>
      t.app.inject({ method: 'GET', url: '/api/ocean/analytics/sensor/A-heavy/anomalies?threshold=1', headers: alice.auth }).then((res) => {
        if (res.statusCode !== 503 || res.json().error !== 'busy') finished.push(`alice-${i}`);
        return res;
      }),
    );
    // Bob's trivial query, sent once alice's are all in.
    const light = t.app.inject({ method: 'GET', url: '/api/ocean/analytics/sensor/B-light/stats', headers: bob.auth }).then((res) => {
      finished.push('bob');
      return res;
    });
    const [bobRes, ...aliceRes] = await Promise.all([light, ...heavy]);

    expect(bobRes.statusCode).toBe(200);
    expect(bobRes.json()).toMatchObject({ count: 1 });
    // One of alice's runs and three wait; the rest are refused at once (sixteen, unless one of hers
    // ended before all twenty were in).
    const refused = aliceRes.filter((r) => r.statusCode === 503 && r.json().error === 'busy');
    expect(refused.length).toBeGreaterThanOrEqual(12);
    expect(refused.length).toBeLessThanOrEqual(16);
    for (const r of refused) {
      expectErrorShape(r, 503, 'busy');
      expect(r.headers['retry-after']).toBe('1');
    }
    // Her admitted ones ran (or hit the time limit), one after another: bob did not wait for all of them.
    for (const r of aliceRes.filter((r) => !refused.includes(r))) expect([200, 503]).toContain(r.statusCode);
    expect(finished.indexOf('bob')).toBeLessThan(finished.length - 1);
  });

  it('a slow-reading export loses its slot after EXPORT_MAX_DURATION_MS; meanwhile other exports get 503 with Retry-After', async () => {
    t = await createTestApp({ env: { EXPORTS_MAX: '1', EXPORTS_PER_USER: '1', EXPORT_MAX_DURATION_MS: '3000' } });
    const alice = await userWithSensor(t, 'alice', 'A-big');
    const bob = await userWithSensor(t, 'bob', 'B-small');
    await load(t, 'A-big', 1_000_000); // tens of MB of CSV: far more than the socket buffers hold
    const address = new URL(await t.app.listen({ port: 0, host: '127.0.0.1' }));

    // Alice starts an export and then stops reading.
    slow = connect(Number(address.port), '127.0.0.1');
    const head = await new Promise<string>((resolve, reject) => {
      slow!.once('data', (chunk: Buffer) => {
        slow!.pause();
        resolve(chunk.toString('latin1'));
      });
      slow!.once('error', reject);
      slow!.write(`GET /api/ocean/analytics/export?format=csv&sensor_id=A-big HTTP/1.1\r\nHost: x\r\nAuthorization: ${alice.auth.authorization}\r\n\r\n`);
    });
    expect(head).toMatch(/^HTTP\/1\.1 200/);

    const exportOf = (user: TestUser, sensor: string) =>
      t.app.inject({ method: 'GET', url: `/api/ocean/analytics/export?format=csv&sensor_id=${sensor}`, headers: user.auth });
    const second = await exportOf(alice, 'A-big');
    expectErrorShape(second, 503, 'busy');
    expect(second.headers['retry-after']).toBe('1');
    const blocked = await exportOf(bob, 'B-small');
    expectErrorShape(blocked, 503, 'busy');

    // Past the bound alice's export is cut off and its slot is free again, though she never read on.
    await expect
      .poll(async () => (await exportOf(bob, 'B-small')).statusCode, { timeout: 30_000, interval: 250 })
      .toBe(200);
    const done = await exportOf(bob, 'B-small');
    expect(done.body).toMatch(/^ts,sensor_id,metric,value/);
    expect(done.body).toContain('B-small');
  });
});
