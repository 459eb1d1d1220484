import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { appWithAliceAndBob, type TestUser } from '../helpers/sessions.js';

describe('HTTP metadata and profiles', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  beforeEach(async () => ({ t, alice, bob } = await appWithAliceAndBob()));
  afterEach(() => t.close());

  const setMeta = (key: string, opts: { query?: string; payload?: object; headers?: Record<string, string> }) =>
    t.app.inject({
      method: 'POST',
      url: `/api/ocean/metadata/${encodeURIComponent(key)}${opts.query ?? ''}`,
      headers: opts.headers ?? t.admin,
      ...(opts.payload ? { payload: opts.payload } : {}),
    });
  const getMeta = (key: string, headers: Record<string, string> = alice.auth) =>
    t.app.inject({ method: 'GET', url: `/api/ocean/metadata/${encodeURIComponent(key)}`, headers });

  it('sets a value from ?value= (text, as the original) and from JSON {value} (any JSON)', async () => {
    const q = await setMeta('site', { query: '?value=Lab%201' });
    expect(q.statusCode).toBe(200);
    expect(q.json()).toEqual({ key: 'site', set: true });
    expect((await getMeta('site')).json()).toMatchObject({ key: 'site', value: 'Lab 1' });
    await setMeta('site', { payload: { value: { floors: [1, 2], open: true } } });
    const got = await getMeta('site');
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual({ key: 'site', value: { floors: [1, 2], open: true }, updated_at: expect.any(String) });
  });

  it('refuses a set without a value (422, as the original) or with two values (400)', async () => {
    for (const res of [await setMeta('k', {}), await setMeta('k', { payload: {} }), await setMeta('k', { payload: { value: null } })]) {
      expect(res.statusCode).toBe(422);
      expect(res.json().detail).toEqual([{ loc: ['query', 'value'], msg: 'field required', type: 'value_error.missing' }]);
    }
    expect((await setMeta('k', { query: '?value=a', payload: { value: 'b' } })).statusCode).toBe(400);
    expect((await getMeta('k')).statusCode).toBe(404);
  });

  it('lets only the admin set metadata and any session read it', async () => {
    expect((await setMeta('k', { query: '?value=1', headers: {} })).statusCode).toBe(401);
    expect((await setMeta('k', { query: '?value=1', headers: alice.auth })).statusCode).toBe(403);
    await setMeta('k', { query: '?value=1' });
    expect((await getMeta('k', {})).statusCode).toBe(401);
    expect((await getMeta('k', bob.auth)).statusCode).toBe(200);
    expect((await getMeta('k', t.admin)).statusCode).toBe(200);
    const missing = await getMeta('missing');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found', statusCode: 404 });
  });

  const ingest = (user: TestUser, sensorId: string) =>
    t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: user.auth, payload: { sensor_id: sensorId, data: { v: 1 } } });
  const storeProfile = (payload: object, headers: Record<string, string>) =>
    t.app.inject({ method: 'POST', url: '/api/ocean/profiles/store', headers, payload });
  const getProfile = (id: string, headers: Record<string, string>) =>
    t.app.inject({ method: 'GET', url: `/api/ocean/profiles/${id}`, headers });

  it("stores and reads a profile of the user's own sensor", async () => {
    await ingest(alice, 'alice-s1');
    const stored = await storeProfile(
      { profile_id: 'p1', sensor_id: 'alice-s1', timestamp: '2026-01-01T00:00:00Z', metadata: { depth_m: 12, site: 'north' } },
      alice.auth,
    );
    expect(stored.statusCode).toBe(200);
    expect(stored.json()).toEqual({ profile_id: 'p1', stored: true });
    const got = await getProfile('p1', alice.auth);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual({
      profile_id: 'p1',
      sensor_id: 'alice-s1',
      timestamp: '2026-01-01T00:00:00.000Z',
      metadata: { depth_m: 12, site: 'north' },
    });
    expect((await getProfile('p1', t.admin)).statusCode).toBe(200);
  });

  it("refuses profiles of another user's sensor (403), on store and on read, and of a sensor registered without owner", async () => {
    await ingest(alice, 'alice-s1');
    await ingest(bob, 'bob-s1');
    await storeProfile({ profile_id: 'p1', sensor_id: 'alice-s1', metadata: {} }, alice.auth);
    expect((await storeProfile({ profile_id: 'p2', sensor_id: 'alice-s1', metadata: {} }, bob.auth)).statusCode).toBe(403);
    expect((await getProfile('p1', bob.auth)).statusCode).toBe(403);
    // Bob cannot overwrite Alice's profile by pointing it at his own sensor.
    expect((await storeProfile({ profile_id: 'p1', sensor_id: 'bob-s1', metadata: { x: 1 } }, bob.auth)).statusCode).toBe(403);
    expect((await getProfile('p1', alice.auth)).json()).toMatchObject({ sensor_id: 'alice-s1', metadata: {} });
    // A sensor the admin registered without an owner is nobody's to claim.
    await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: 'ownerless' } });
    expect((await storeProfile({ profile_id: 'p3', sensor_id: 'ownerless', metadata: {} }, alice.auth)).statusCode).toBe(403);
    expect(await t.store.devices.ownerOf('ownerless')).toBeNull();
    // The admin stores and reads anything, and claims nothing.
    expect((await storeProfile({ profile_id: 'p3', sensor_id: 'ownerless', metadata: {} }, t.admin)).statusCode).toBe(200);
    expect((await getProfile('p3', t.admin)).statusCode).toBe(200);
    expect((await storeProfile({ profile_id: 'p4', sensor_id: 'admin-only', metadata: {} }, t.admin)).statusCode).toBe(200);
    expect(await t.store.devices.ownerOf('admin-only')).toBeUndefined();
  });

  it('claims a sensor nobody owns yet for the user storing its profile, as a first ingest does', async () => {
    expect(await t.store.devices.ownerOf('fresh-sensor')).toBeUndefined();
    expect((await storeProfile({ profile_id: 'p1', sensor_id: 'fresh-sensor', metadata: {} }, alice.auth)).statusCode).toBe(200);
    expect(await t.store.devices.ownerOf('fresh-sensor')).toBe(alice.id);
    // Now it is alice's: bob can neither profile it nor ingest into it; alice can.
    expect((await storeProfile({ profile_id: 'p2', sensor_id: 'fresh-sensor', metadata: {} }, bob.auth)).statusCode).toBe(403);
    expect((await ingest(bob, 'fresh-sensor')).statusCode).toBe(403);
    expect((await ingest(alice, 'fresh-sensor')).statusCode).toBe(200);
  });

  it('leaves no claim behind when the store is refused', async () => {
    await ingest(alice, 'alice-s1');
    await storeProfile({ profile_id: 'p1', sensor_id: 'alice-s1', metadata: {} }, alice.auth);
    // Bob repoints alice's profile at a new sensor: refused, and the new sensor stays unclaimed.
    expect((await storeProfile({ profile_id: 'p1', sensor_id: 'bob-new', metadata: {} }, bob.auth)).statusCode).toBe(403);
    expect(await t.store.devices.ownerOf('bob-new')).toBeUndefined();
  });

  it("answers a 403 on another user's profile without naming that user's sensor", async () => {
    await ingest(alice, 'alice-private-sensor');
    await ingest(bob, 'bob-s1');
    await storeProfile({ profile_id: 'p1', sensor_id: 'alice-private-sensor', metadata: { site: 'north' } }, alice.auth);
    for (const res of [
      await getProfile('p1', bob.auth),
      // Repointing alice's profile at bob's own sensor is refused too, and says no more.
      await storeProfile({ profile_id: 'p1', sensor_id: 'bob-s1', metadata: {} }, bob.auth),
    ]) {
      expectErrorShape(res, 403, 'forbidden');
      expect(res.json().message).toBe('not allowed to access profile p1');
      expect(res.body).not.toContain('alice-private-sensor');
      expect(res.body).not.toContain('north');
      expect(res.body).not.toContain(alice.id);
    }
  });

  /** JSON text of an object nested `levels` deep (built as text: the test client would overflow the stack serialising it). */
  const nested = (levels: number) => `${'{"a":'.repeat(levels - 1)}{"leaf":1}${'}'.repeat(levels - 1)}`;
  const rawPost = (url: string, body: string, headers: Record<string, string>) =>
    t.app.inject({ method: 'POST', url, headers: { ...headers, 'content-type': 'application/json' }, payload: body });

  it('refuses profile metadata and metadata values nested deeper than 32 levels with 422, as readings are', async () => {
    for (const levels of [33, 5000]) {
      const profile = await rawPost('/api/ocean/profiles/store', `{"profile_id":"deep","sensor_id":"s-deep","metadata":${nested(levels)}}`, alice.auth);
      expectErrorShape(profile, 422, 'validation_error');
      expect(profile.json().detail).toEqual([{ loc: ['body', 'metadata'], msg: 'metadata is nested deeper than 32 levels', type: 'value_error' }]);
      const value = await rawPost('/api/ocean/metadata/deep', `{"value":${nested(levels)}}`, t.admin);
      expectErrorShape(value, 422, 'validation_error');
      expect(value.json().detail).toEqual([{ loc: ['body', 'value'], msg: 'value is nested deeper than 32 levels', type: 'value_error' }]);
      const reading = await rawPost('/api/ocean/telemetry/ingest', `{"sensor_id":"s-deep","data":${nested(levels)}}`, alice.auth);
      expect(reading.json().detail[0].msg).toBe('data is nested deeper than 32 levels');
    }
    expect((await getProfile('deep', t.admin)).statusCode).toBe(404);
    expect((await getMeta('deep')).statusCode).toBe(404);
    // 32 levels are fine, as for a reading's data.
    expect((await rawPost('/api/ocean/profiles/store', `{"profile_id":"deep","sensor_id":"s-deep","metadata":${nested(32)}}`, alice.auth)).statusCode).toBe(200);
    expect((await rawPost('/api/ocean/metadata/deep', `{"value":${nested(32)}}`, t.admin)).statusCode).toBe(200);
  });

  it('answers 404 for an unknown profile, 401 without a session and 422 for invalid bodies', async () => {
    expect((await getProfile('nope', t.admin)).statusCode).toBe(404);
    expect((await getProfile('nope', {})).statusCode).toBe(401);
    for (const payload of [
      { sensor_id: 's', metadata: {} },
      { profile_id: 'p', sensor_id: 's', metadata: 'text' },
      { profile_id: 'p', sensor_id: 's', metadata: {}, timestamp: 'yesterday' },
      { profile_id: '', sensor_id: 's', metadata: {} },
    ]) {
      const res = await storeProfile(payload, t.admin);
      expect(res.statusCode).toBe(422);
      expect(res.json()).toMatchObject({ error: 'validation_error', statusCode: 422, detail: [{ loc: ['body', expect.any(String)] }] });
    }
  });
});
