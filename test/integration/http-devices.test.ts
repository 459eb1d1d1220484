import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TestApp } from '../helpers/app.js';
import { appWithAliceAndBob, type TestUser } from '../helpers/sessions.js';

const SECRET = 'ab'.repeat(32);

describe('HTTP devices', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  beforeEach(async () => ({ t, alice, bob } = await appWithAliceAndBob()));
  afterEach(() => t.close());

  const register = (payload: object, headers: Record<string, string> = t.admin) =>
    t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers, payload });
  const list = (headers: Record<string, string>, query = '') => t.app.inject({ method: 'GET', url: `/api/ocean/devices${query}`, headers });

  it('registers a device (200, as every create) with an owner and a secret it never echoes', async () => {
    const res = await register({ device_id: 'ESP32-001', owner_id: alice.id, model_id: 0x10, secret: SECRET, lab_id: 'LAB-01' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ device_id: 'ESP32-001', owner_id: alice.id, model_id: 16, lab_id: 'LAB-01', has_secret: true, frames: 0, records: 0, last_seen: null });
    expect(res.body).not.toContain(SECRET);
    expect(res.json()).not.toHaveProperty('secret');
    expect(await t.store.devices.secretOf('ESP32-001')).toEqual(Buffer.from(SECRET, 'hex'));
    const listed = await list(t.admin);
    expect(listed.body).not.toContain(SECRET);
  });

  it('updates a registered device (200) and keeps its owner when owner_id is omitted', async () => {
    await register({ device_id: 'D1', owner_id: alice.id });
    const res = await register({ device_id: 'D1', lab_id: 'LAB-02' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ owner_id: alice.id, lab_id: 'LAB-02', has_secret: false });
    const cleared = await register({ device_id: 'D1', owner_id: null });
    expect(cleared.json().owner_id).toBeNull();
  });

  it.each([
    ['a short secret', { device_id: 'D1', secret: 'ab'.repeat(31) }],
    ['a non-hex secret', { device_id: 'D1', secret: 'zz'.repeat(32) }],
    ['a model id past 255', { device_id: 'D1', model_id: 256 }],
    ['no device id', { owner_id: 'x' }],
  ])('refuses %s (422)', async (_name, payload) => {
    const res = await register(payload);
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ error: 'validation_error', statusCode: 422, detail: [{ loc: ['body', expect.any(String)] }] });
  });

  it('refuses an unknown owner (404) and non-admins (401/403)', async () => {
    expect((await register({ device_id: 'D1', owner_id: '999' })).statusCode).toBe(404);
    expect((await register({ device_id: 'D1' }, {})).statusCode).toBe(401);
    expect((await register({ device_id: 'D1' }, alice.auth)).statusCode).toBe(403);
    expect(await t.store.devices.get('D1')).toBeUndefined();
  });

  it('lists a user its own devices (also those claimed by ingest) and the admin all of them', async () => {
    await register({ device_id: 'A1', owner_id: alice.id });
    await register({ device_id: 'B1', owner_id: bob.id });
    await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: alice.auth, payload: { sensor_id: 'A2', data: { v: 1 } } });
    const own = await list(alice.auth);
    expect(own.statusCode).toBe(200);
    expect(own.json().devices.map((d: { device_id: string }) => d.device_id)).toEqual(['A1', 'A2']);
    expect((await list(t.admin)).json().count).toBe(3);
    expect((await list(t.admin, `?owner_id=${bob.id}`)).json().devices.map((d: { device_id: string }) => d.device_id)).toEqual(['B1']);
    expect((await list(alice.auth, `?owner_id=${bob.id}`)).statusCode).toBe(403);
    expect((await list({})).statusCode).toBe(401);
  });

  it("shows a device's non-telemetry events to its owner and the admin only", async () => {
    await register({ device_id: 'A1', owner_id: alice.id });
    await t.store.deviceEvents.add({ sourceId: 'e1', deviceId: 'A1', payloadType: 3, ts: 1_767_225_600, body: { device_id: 'A1', alarm: 'door' } });
    await t.store.deviceEvents.add({ sourceId: 'e2', deviceId: 'A1', payloadType: 5, ts: 1_767_225_700, body: { device_id: 'A1', offset: 0.5 } });
    const res = await t.app.inject({ method: 'GET', url: '/api/ocean/devices/A1/events', headers: alice.auth });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.device_id).toBe('A1');
    expect(body.events.map((e: { type: string; body: Record<string, unknown> }) => [e.type, e.body])).toEqual([
      ['calibration', { device_id: 'A1', offset: 0.5 }],
      ['event', { device_id: 'A1', alarm: 'door' }],
    ]);
    expect(body.events[1].ts).toBe('2026-01-01T00:00:00.000Z');
    const page = await t.app.inject({ method: 'GET', url: '/api/ocean/devices/A1/events?limit=1', headers: alice.auth });
    expect(page.json().next_before).toBe(body.events[0].id);
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/devices/A1/events', headers: bob.auth })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/devices/A1/events', headers: t.admin })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/devices/none/events', headers: t.admin })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/devices/A1', headers: alice.auth })).json()).toMatchObject({ device_id: 'A1' });
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/devices/A1', headers: bob.auth })).statusCode).toBe(403);
  });
});
