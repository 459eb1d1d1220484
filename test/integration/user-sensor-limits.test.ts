import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, SHARED, type TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

const reading = (sensor_id: string) => ({ sensor_id, data: { v: 1 } });

describe('per-user sensor cap and paged lists (the real stores of either mode)', () => {
  let t: TestApp;
  afterEach(() => t.close());

  const batch = (user: TestUser, sensors: string[]) =>
    t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/batch', headers: user.auth, payload: sensors.map(reading) });
  const get = (user: TestUser | { auth: Record<string, string> }, url: string) => t.app.inject({ method: 'GET', url: `/api/ocean${url}`, headers: user.auth });
  const queued = async () => (await t.store.buffer.counts()).rows;

  it('refuses a claim past MAX_SENSORS_PER_USER with 409 sensor_limit and stores nothing of that request', async () => {
    t = await createTestApp({ env: { MAX_SENSORS_PER_USER: '3' } });
    const alice = await createUserWithSession(t, 'alice');
    expect((await batch(alice, ['s1', 's2'])).statusCode).toBe(200);
    const rows = await queued();

    // s1 is hers already; s3 and s4 would make four.
    const over = await batch(alice, ['s1', 's3', 's4']);
    expectErrorShape(over, 409, 'sensor_limit');
    expect(over.json().message).toMatch(/at most 3 sensors/);
    expect(await queued()).toBe(rows);
    expect(await t.store.devices.ownerOf('s3')).toBeUndefined();
    expect(await t.store.devices.ownedCount(alice.id)).toBe(2);

    const single = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: alice.auth, payload: reading('s3') });
    expect(single.statusCode).toBe(200); // the third is within the cap
    const fourth = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: alice.auth, payload: reading('s4') });
    expectErrorShape(fourth, 409, 'sensor_limit');
    const profile = await t.app.inject({
      method: 'POST',
      url: '/api/ocean/profiles/store',
      headers: alice.auth,
      payload: { profile_id: 'p4', sensor_id: 's4', metadata: {} },
    });
    expectErrorShape(profile, 409, 'sensor_limit');
    expect((await get(alice, '/profiles/p4')).statusCode).toBe(404);

    // Her own sensors still take readings, and another user has a cap of its own.
    expect((await batch(alice, ['s1', 's2', 's3'])).statusCode).toBe(200);
    const bob = await createUserWithSession(t, 'bob');
    expect((await batch(bob, ['b1', 'b2', 'b3'])).statusCode).toBe(200);
  });

  it('pages GET /devices: 1000 by default, then next_after until the end, each device once', async () => {
    t = await createTestApp();
    const alice = await createUserWithSession(t, 'alice');
    const ids = Array.from({ length: 1500 }, (_, i) => `dev-${String(i).padStart(4, '0')}`);
    expect((await batch(alice, ids)).statusCode).toBe(200);

    const first = await get(alice, '/devices');
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ count: 1000, next_after: 'dev-0999' });
    expect(first.json().devices).toHaveLength(1000);

    const seen: string[] = [];
    let after: string | null = '';
    while (after !== null) {
      const res = await get(alice, `/devices?limit=400${after ? `&after=${after}` : ''}`);
      expect(res.statusCode).toBe(200);
      const page = res.json() as { count: number; devices: Array<{ device_id: string }>; next_after: string | null };
      expect(page.count).toBe(page.devices.length);
      expect(page.count).toBeLessThanOrEqual(400);
      seen.push(...page.devices.map((d) => d.device_id));
      after = page.next_after;
    }
    expect(seen).toEqual(ids);

    expect((await get(alice, '/devices?limit=1001')).statusCode).toBe(422);
    expect((await get(alice, '/devices?limit=0')).statusCode).toBe(422);
    // The admin pages through everyone's, or one owner's.
    const admin = { auth: t.admin };
    expect((await get(admin, `/devices?owner_id=${alice.id}&limit=10`)).json()).toMatchObject({ count: 10, next_after: 'dev-0009' });
  });

  it('pages GET /analytics/sensors: a page of the caller own sensors at a time', async () => {
    t = await createTestApp();
    const alice = await createUserWithSession(t, 'alice');
    const bob = await createUserWithSession(t, 'bob');
    const ids = Array.from({ length: 25 }, (_, i) => `a-${String(i).padStart(2, '0')}`);
    expect((await batch(alice, ids)).statusCode).toBe(200);
    expect((await batch(bob, ['b-1'])).statusCode).toBe(200);
    await t.settle();

    const all = await get(alice, '/analytics/sensors');
    expect(all.json()).toMatchObject({ count: 25, next_after: null });

    const seen: string[] = [];
    let after: string | null = '';
    while (after !== null) {
      const page = (await get(alice, `/analytics/sensors?limit=10${after ? `&after=${after}` : ''}`)).json() as {
        sensors: Array<{ sensor_id: string }>;
        next_after: string | null;
      };
      seen.push(...page.sensors.map((s) => s.sensor_id));
      after = page.next_after;
    }
    expect(seen).toEqual(ids);

    const admin = (await get({ auth: t.admin }, '/analytics/sensors?limit=25')).json();
    expect(admin).toMatchObject({ count: 25, next_after: 'a-24' });
    expect((await get({ auth: t.admin }, '/analytics/sensors?after=a-24')).json()).toMatchObject({ count: 1, sensors: [{ sensor_id: 'b-1' }], next_after: null });
  });

  it('pages the work queue (after, next_after) without marking anything', async () => {
    t = await createTestApp();
    const alice = await createUserWithSession(t, 'alice');
    const ingested = (await batch(alice, ['q1', 'q2', 'q3', 'q4', 'q5'])).json().ids as number[];
    const admin = { auth: t.admin };

    const first = (await get(admin, '/telemetry/unprocessed?limit=2')).json();
    expect(first).toMatchObject({ count: 2, next_after: ingested[1] });
    const second = (await get(admin, `/telemetry/unprocessed?limit=2&after=${first.next_after}`)).json();
    const third = (await get(admin, `/telemetry/unprocessed?limit=2&after=${second.next_after}`)).json();
    expect([...first.data, ...second.data, ...third.data].map((r: { id: number }) => r.id)).toEqual(ingested);
    expect(third.next_after).toBeNull();
    expect((await get(admin, '/telemetry/unprocessed')).json()).toMatchObject({ count: 5, next_after: null });
  });

  // Seeds the quarantine table of an earlier embedded release in SQLite; the shared mode had no such release (its quarantine is always empty).
  it.skipIf(SHARED)('pages the quarantine (offset)', async () => {
    t = await createTestApp();
    const admin = { auth: t.admin };
    // The quarantine holds what an earlier release's flusher could not store (the service no longer
    // writes it): rows of such a release, seeded with SQL, newest buffer row first.
    const seed = t.service.store.db.prepare('INSERT INTO quarantine(buffer_id, record, content, error, created_at) VALUES (?, 0, ?, ?, ?)');
    for (let i = 0; i < 5; i++) seed.run(101 + i, JSON.stringify({ i }), 'refused', 1_767_225_600 + i);
    const page = (await get(admin, '/telemetry/quarantine?limit=2&offset=2')).json();
    expect(page.count).toBe(5);
    expect(page.records).toEqual([
      { buffer_id: 103, record: 0, content: { i: 2 }, error: 'refused', quarantined_at: '2026-01-01T00:00:02.000Z' },
      { buffer_id: 102, record: 0, content: { i: 1 }, error: 'refused', quarantined_at: '2026-01-01T00:00:01.000Z' },
    ]);
    expect((await get(admin, '/telemetry/quarantine?offset=1000001')).statusCode).toBe(422);
  });
});
