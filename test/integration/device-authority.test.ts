import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { encodeFrame, pressurePayload } from '../../src/nanogridata/encoder.js';
import { createSessions } from '../../src/operational/sessions.js';
import { createPgSessions } from '../../src/postgres/sessions.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { PRESSURE_MODEL, pressureSecret, waitFor } from '../helpers/frames.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

/**
 * Who may speak for a device: a device registered with its own secret only with that secret, over
 * HTTP and the stream alike; a sensor id that a device uses can never be claimed by a user's JSON.
 */
describe('device authority', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let t: TestApp;
  let alice: TestUser;
  let mallory: TestUser;
  const { secret: modelSecret, env } = pressureSecret();
  const ownSecret = randomBytes(32);
  const stream = `t${randomUUID().slice(0, 8)}:frames`;
  const dead = `${stream}:dead`;
  const now = () => Math.floor(Date.now() / 1000);
  const frame = (deviceId: string, secret: Buffer, value: number) =>
    encodeFrame({ modelId: PRESSURE_MODEL, level: 1, timestamp: now(), payload: pressurePayload({ deviceId, entries: [{ ts: now() - 1, value }] }), secret });

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    t = await createTestApp({
      env: { ...env, REDIS_URL: redisServer.url, INGEST_STREAM: stream, DEAD_LETTER_STREAM: dead, INGEST_BLOCK_MS: '100' },
      start: true,
    });
    alice = await createUserWithSession(t, 'alice');
    mallory = await createUserWithSession(t, 'mallory');
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/ocean/devices',
      headers: t.admin,
      payload: { device_id: 'OWN-1', owner_id: alice.id, model_id: PRESSURE_MODEL, secret: ownSecret.toString('hex') },
    });
    expect(res.statusCode).toBe(200);
  });
  afterAll(async () => {
    await t.close();
    redis.disconnect();
    await redisServer.stop();
  });

  const postFrames = (body: Buffer, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/frames', headers: { 'content-type': 'application/octet-stream', ...headers }, payload: body });
  /** Readings of a sensor in analytics once everything stored has settled. */
  const storedFor = async (sensor: string) => {
    await t.settle();
    return t.count(sensor);
  };
  const ingestJson = (user: TestUser, sensor_id: string) =>
    t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: user.auth, payload: { sensor_id, data: { v: 1 } } });
  /** The reason of the dead letter written for the stream entry `id`. */
  const deadLetterOf = (id: string) =>
    waitFor(async () => {
      const entries = await redis.xrange(dead, '-', '+');
      const letter = entries.find(([, fields]) => fields[fields.indexOf('source_id') + 1] === id);
      return letter && letter[1][letter[1].indexOf('reason') + 1];
    }, { what: `the dead letter of ${id}` });

  it('refuses frames signed with the model secret for a device that has its own, with or without X-Device-Id', async () => {
    const before = await storedFor('OWN-1');
    expect((await postFrames(frame('OWN-1', modelSecret, 1))).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'bad_mac' }] });
    expect((await postFrames(frame('OWN-1', modelSecret, 2), { 'x-device-id': 'OWN-1' })).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'bad_mac' }] });
    // The device's own secret is accepted both ways.
    expect((await postFrames(frame('OWN-1', ownSecret, 3))).json()).toMatchObject({ accepted: 1, rejected: [] });
    expect((await postFrames(frame('OWN-1', ownSecret, 4), { 'x-device-id': 'OWN-1' })).json()).toMatchObject({ accepted: 1, rejected: [] });
    expect((await storedFor('OWN-1')) - before).toBe(2);
  });

  it('refuses the same forgery over the stream, with or without a device_id field, and dead-letters it', async () => {
    const before = await storedFor('OWN-1');
    await redis.xadd(stream, '*', 'frame', frame('OWN-1', modelSecret, 5));
    await redis.xadd(stream, '*', 'frame', frame('OWN-1', modelSecret, 6), 'device_id', 'OWN-1');
    await redis.xadd(stream, '*', 'frame', frame('OWN-1', ownSecret, 7));
    const letters = await waitFor(async () => {
      const entries = await redis.xrange(dead, '-', '+');
      return entries.length >= 2 ? entries : undefined;
    }, { what: 'two dead letters' });
    expect(letters.map(([, fields]) => fields[fields.indexOf('reason') + 1])).toEqual(['bad_mac', 'bad_mac']);
    await waitFor(async () => (await storedFor('OWN-1')) - before === 1, { what: 'the genuine frame' });
  });

  it('dead-letters stream JSON readings for a registered or owned sensor, and keeps storing the rest', async () => {
    expect((await ingestJson(alice, 'ALICE-JSON')).statusCode).toBe(200);
    const registered = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: 'ADMIN-ONLY' } });
    expect(registered.statusCode).toBe(200);
    const held = ['OWN-1', 'ALICE-JSON', 'ADMIN-ONLY'];
    const counts = () => Promise.all(held.map(storedFor));
    const before = await counts();
    const free = async (value: number) => {
      await redis.xadd(stream, '*', 'sensor_id', 'STREAM-ONLY-1', 'data', `{"pressure":${value}}`);
      await waitFor(async () => (await storedFor('STREAM-ONLY-1')) === value, { what: `stream reading ${value}` });
    };
    await free(1);
    const ids: string[] = [];
    for (const sensor of held) ids.push((await redis.xadd(stream, '*', 'sensor_id', sensor, 'data', '{"pressure":666666}'))!);
    for (const id of ids) expect(await deadLetterOf(id)).toBe('device_authority');
    // The consumer goes on, and a sensor only the stream writes to keeps taking readings.
    await free(2);
    expect(await counts()).toEqual(before);
    const letter = (await redis.xrange(dead, '-', '+')).find(([, f]) => f[f.indexOf('source_id') + 1] === ids[0])!;
    expect(letter[1][letter[1].indexOf('detail') + 1]).toMatch(/OWN-1/);
  });

  it('never lets JSON ingest claim a registered device or one that has sent signed frames', async () => {
    // Registered to alice: mallory is refused, alice may write.
    expect((await ingestJson(mallory, 'OWN-1')).statusCode).toBe(403);
    expect((await ingestJson(alice, 'OWN-1')).statusCode).toBe(200);

    // Mallory claims an id no device has used yet; frames for it are then held, not stored
    // (below): the claim stays hers until an admin decides, and nobody else can claim it.
    expect((await ingestJson(mallory, 'LATER-1')).statusCode).toBe(200);
    expect((await postFrames(frame('LATER-1', modelSecret, 9))).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'claim_conflict' }] });
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/devices/LATER-1', headers: mallory.auth })).statusCode).toBe(200);
    expect((await ingestJson(mallory, 'LATER-1')).statusCode).toBe(200);
    expect((await ingestJson(alice, 'LATER-1')).statusCode).toBe(403);

    // An id first seen as a signed frame can never be claimed either; the admin assigns it.
    expect((await postFrames(frame('FRAME-1', modelSecret, 10))).json()).toMatchObject({ accepted: 1, rejected: [] });
    expect((await ingestJson(mallory, 'FRAME-1')).statusCode).toBe(403);
    const assign = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: 'FRAME-1', owner_id: alice.id } });
    expect(assign.statusCode).toBe(200);
    expect((await ingestJson(alice, 'FRAME-1')).statusCode).toBe(200);
  });

  const get = (user: TestUser | { auth: Record<string, string> }, url: string) => t.app.inject({ method: 'GET', url: `/api/ocean${url}`, headers: user.auth });
  const conflicts = async () => (await get({ auth: t.admin }, '/device-conflicts')).json() as { count: number; conflicts: Array<Record<string, unknown>> };

  it("holds a model-signed frame naming a user's claimed sensor as a conflict: the user keeps its history, profile and access", async () => {
    expect((await ingestJson(alice, 'ALICE-HTTP')).statusCode).toBe(200);
    const profile = await t.app.inject({ method: 'POST', url: '/api/ocean/profiles/store', headers: alice.auth, payload: { profile_id: 'alice-p', sensor_id: 'ALICE-HTTP', metadata: { depth_m: 3 } } });
    expect(profile.statusCode).toBe(200);
    const before = await storedFor('ALICE-HTTP');

    expect((await postFrames(frame('ALICE-HTTP', modelSecret, 666666))).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'claim_conflict' }] });
    const entry = (await redis.xadd(stream, '*', 'frame', frame('ALICE-HTTP', modelSecret, 666667)))!;
    expect(await deadLetterOf(entry)).toBe('claim_conflict');

    expect(await storedFor('ALICE-HTTP')).toBe(before);
    const stats = await get(alice, '/analytics/sensor/ALICE-HTTP/stats');
    expect(stats.statusCode).toBe(200);
    expect(stats.json()).toMatchObject({ count: before, max_value: 1 });
    expect((await get(alice, '/profiles/alice-p')).statusCode).toBe(200);
    expect((await get(alice, '/devices/ALICE-HTTP')).json()).toMatchObject({ owner_id: alice.id });
    expect((await ingestJson(alice, 'ALICE-HTTP')).statusCode).toBe(200);

    // The conflict waits for an admin, who alone can see it.
    const listed = (await conflicts()).conflicts.find((c) => c.device_id === 'ALICE-HTTP');
    expect(listed).toMatchObject({ claimed_by: alice.id, frames: 2, first_at: expect.any(String), last_at: expect.any(String) });
    expect((await get(alice, '/device-conflicts')).statusCode).toBe(403);
  });

  it("purges a squatter's readings when the admin gives the claimed sensor to its real owner", async () => {
    expect((await ingestJson(mallory, 'FUTURE-DEV')).statusCode).toBe(200);
    const profile = await t.app.inject({ method: 'POST', url: '/api/ocean/profiles/store', headers: mallory.auth, payload: { profile_id: 'mallory-p', sensor_id: 'FUTURE-DEV', metadata: { fake: true } } });
    expect(profile.statusCode).toBe(200);
    expect(await storedFor('FUTURE-DEV')).toBe(1);
    expect((await postFrames(frame('FUTURE-DEV', modelSecret, 101))).json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'claim_conflict' }] });
    expect((await conflicts()).conflicts.map((c) => c.device_id)).toContain('FUTURE-DEV');
    // One more reading that may still be in the buffer when the admin decides: purged as well.
    expect((await ingestJson(mallory, 'FUTURE-DEV')).statusCode).toBe(200);

    const assign = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: 'FUTURE-DEV', owner_id: alice.id } });
    expect(assign.statusCode).toBe(200);
    expect(await storedFor('FUTURE-DEV')).toBe(0);
    expect((await conflicts()).conflicts.map((c) => c.device_id)).not.toContain('FUTURE-DEV');

    // From now on the device's frames are stored, and its history holds only them.
    expect((await postFrames(frame('FUTURE-DEV', modelSecret, 102))).json()).toMatchObject({ accepted: 1, rejected: [] });
    expect(await storedFor('FUTURE-DEV')).toBe(1);
    expect((await get(alice, '/analytics/sensor/FUTURE-DEV/stats')).json()).toMatchObject({ count: 1, min_value: 102, max_value: 102 });
    expect((await get(mallory, '/analytics/sensor/FUTURE-DEV/stats')).statusCode).toBe(403);
    expect((await get(alice, '/profiles/mallory-p')).statusCode).toBe(404);

    // An admin who confirms the claimant keeps the claimant's readings.
    expect((await ingestJson(mallory, 'MALLORY-OWN')).statusCode).toBe(200);
    const confirm = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: 'MALLORY-OWN', owner_id: mallory.id } });
    expect(confirm.statusCode).toBe(200);
    expect((await postFrames(frame('MALLORY-OWN', modelSecret, 5))).json()).toMatchObject({ accepted: 1, rejected: [] });
    expect(await storedFor('MALLORY-OWN')).toBe(2);
  });

  /** Ids that look like another or cannot be addressed: zero-width, bidi controls, newline, C1. */
  const BAD = ['T\u200b1', 'T\u200d1', 'T\u20601', '\ufeffT1', 'T\u200e1', 'T\u202e1', 'T\u20661', 'T\u20691', 'T\n1', 'T\u00851'];

  it('refuses control, zero-width and bidi characters in sensor ids over HTTP with 422', async () => {
    for (const id of BAD) {
      const ingest = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: alice.auth, payload: { sensor_id: id, data: { v: 1 } } });
      expectErrorShape(ingest, 422, 'validation_error');
      expect(ingest.json().detail[0]).toMatchObject({ loc: ['body', 'sensor_id'], type: 'value_error.str.regex' });
      const batch = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/batch', headers: alice.auth, payload: [{ sensor_id: 'OK-1', data: '1' }, { sensor_id: id, data: '1' }] });
      expectErrorShape(batch, 422, 'validation_error');
      const profile = await t.app.inject({ method: 'POST', url: '/api/ocean/profiles/store', headers: alice.auth, payload: { profile_id: 'p', sensor_id: id, metadata: {} } });
      expectErrorShape(profile, 422, 'validation_error');
      const device = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: id } });
      expectErrorShape(device, 422, 'validation_error');
      const stats = await t.app.inject({ method: 'GET', url: `/api/ocean/analytics/sensor/${encodeURIComponent(id)}/stats`, headers: t.admin });
      expectErrorShape(stats, 422, 'validation_error');
    }
    // Nothing was stored for OK-1 either (a batch is validated whole), and ordinary text stays fine.
    expect(await t.store.devices.get('OK-1')).toBeUndefined();
    const fine = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: alice.auth, payload: { sensor_id: 'Tank 3 / pH (ü)', data: '7' } });
    expect(fine.statusCode).toBe(200);
  });

  it('refuses the same ids as a frame payload device_id (bad_payload) and as a stream reading (dead letter)', async () => {
    for (const id of BAD) {
      const res = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/frames', headers: { 'content-type': 'application/octet-stream' }, payload: frame(id, modelSecret, 1) });
      expect(res.json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, reason: 'bad_payload' }] });
    }
    const framed = (await redis.xadd(stream, '*', 'frame', frame('S\n1', modelSecret, 1)))!;
    const reading = (await redis.xadd(stream, '*', 'sensor_id', 'S\u200b1', 'data', '{"v":1}'))!;
    expect(await deadLetterOf(framed)).toBe('bad_payload');
    expect(await deadLetterOf(reading)).toBe('bad_reading');
    for (const id of [...BAD, 'S\n1', 'S\u200b1']) expect(await t.store.devices.get(id)).toBeUndefined();
  });
});

describe('session purge', () => {
  it('deletes expired sessions on a schedule once the service runs, and keeps live ones', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const t = await createTestApp({ start: true });
    try {
      const user = await createUserWithSession(t, 'alice');
      // A session that expired two hours ago, written past the API (which opens live ones only).
      const expired = { ttlS: 60, now: () => now() - 7200 };
      if (t.shared) await createPgSessions(t.shared.pool, expired).create(user.id, 'alice');
      else createSessions(t.service.store.db, expired).create(user.id, 'alice');
      const count = async () =>
        t.shared
          ? (await t.shared.pool.query<{ n: number }>('SELECT count(*) AS n FROM sessions')).rows[0]!.n
          : (t.service.store.db.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number }).n;
      expect(await count()).toBe(2);
      vi.advanceTimersByTime(10 * 60 * 1000);
      // The embedded purge is synchronous; the shared one is a query the timer started.
      await waitFor(async () => (await count()) === 1, { what: 'the expired session purged' });
      expect(await count()).toBe(1);
      expect((await t.app.inject({ method: 'GET', url: `/api/ocean/users/${user.id}`, headers: user.auth })).statusCode).toBe(200);
    } finally {
      vi.useRealTimers();
      await t.close();
    }
  });
  const now = () => Math.floor(Date.now() / 1000);
});
