import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MeasurementRow } from '../helpers/measurements.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';
import { COMPARISON_ENTRY, CONTRACT, type Shape } from './contract.js';
import { expectShape, keysInOrder } from './shape.js';

/**
 * The original's clients, route by route (shared/design/api-compat.md): the request forms they
 * send and the keys and JSON types they read back. One app for the file: every test works on
 * its own users, keys and sensors, so they share it without depending on each other.
 */
const BASE = 1_767_225_600; // 2026-01-01T00:00:00Z
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const answerOf = (method: string, path: string): Shape => CONTRACT.find((r) => r.method === method && r.path === path)!.answer;
const exactOf = (method: string, path: string) => CONTRACT.find((r) => r.method === method && r.path === path)!.exact ?? false;


describe('compatibility with the original API', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  let users = 0;

  /** A raw request as a client library would send it: body text and headers exactly as given. */
  const raw = (method: string, url: string, options: { body?: string; contentType?: string; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (options.contentType !== undefined) headers['content-type'] = options.contentType;
    return t.app.inject({ method, url, headers, ...(options.body !== undefined ? { payload: options.body } : {}) } as InjectOptions);
  };
  const json = (method: string, url: string, body: unknown, headers: Record<string, string> = t.admin) =>
    raw(method, url, { body: JSON.stringify(body), contentType: 'application/json', headers });
  const newUser = async () => createUserWithSession(t, `user-${++users}`);

  /** "has these keys with these types" (with `exact`, only these). */
  const expectAnswer = (res: { statusCode: number; body: string; json(): unknown }, method: string, path: string) => {
    expect(res.statusCode, res.body).toBe(200);
    expectShape(res.json(), answerOf(method, path), { exact: exactOf(method, path), where: `${method} ${path}` });
  };
  const expectValidationError = (res: { statusCode: number; body: string; json(): unknown }, loc: Array<string | number>, type?: string) => {
    expect(res.statusCode, res.body).toBe(422);
    const body = res.json() as { detail: Array<{ loc: unknown[]; msg: string; type: string }> };
    expectShape(body, { detail: 'array', error: 'string', message: 'string', statusCode: 'integer' }, { exact: true });
    for (const item of body.detail) expectShape(item, { loc: 'array', msg: 'string', type: 'string' }, { exact: true });
    expect(body.detail.map((d) => d.loc)).toContainEqual(loc);
    if (type) expect(body.detail.find((d) => JSON.stringify(d.loc) === JSON.stringify(loc))!.type).toBe(type);
  };
  const expectTextError = (res: { statusCode: number; body: string; json(): unknown }, status: number, detail?: string) => {
    expect(res.statusCode, res.body).toBe(status);
    expectShape(res.json(), { detail: 'string', error: 'string', message: 'string', statusCode: 'integer' }, { exact: true });
    if (detail) expect((res.json() as { detail: string }).detail).toBe(detail);
  };

  beforeAll(async () => {
    t = await createTestApp();
    alice = await createUserWithSession(t, 'alice');
    bob = await createUserWithSession(t, 'bob');
    for (const device_id of ['T-1', '42', '7', 'my sensor']) {
      const res = await json('POST', '/api/ocean/devices', { device_id, owner_id: alice.id });
      expect(res.statusCode).toBe(200);
    }
    const rows: MeasurementRow[] = [];
    const row = (sensor_id: string, metric: string, ts: number, value: number): MeasurementRow => ({
      buffer_id: rows.length + 1, ts, sensor_id, metric, value, unit: '', lab_id: null, model_id: null, source: 'test',
    });
    for (let i = 0; i < 30; i++) {
      rows.push(row('T-1', 'temperature', BASE + i * 60, 20 + (i % 3)));
      rows.push(row('T-1', 'humidity', BASE + i * 60, 50));
      rows.push(row('42', 'v', BASE + i * 60, 30 + (i % 2)));
      rows.push(row('7', 'v', BASE + i * 60, 10 + (i % 2)));
      rows.push(row('my sensor', 'v', BASE + i * 60, 5));
    }
    rows.push(row('T-1', 'temperature', BASE + 30 * 60, 95));
    await t.seed(rows);
  });
  afterAll(() => t.close());

  describe('errors', () => {
    it('answers validation errors 422 with detail [{loc, msg, type}], loc starting with body, query or path', async () => {
      expectValidationError(await json('POST', '/api/ocean/users', { username: 'x' }), ['body', 'email'], 'value_error.missing');
      expectValidationError(await raw('POST', `/api/ocean/billing/${alice.id}/add-credits?amount=abc`, { headers: t.admin }), ['query', 'amount']);
      expectValidationError(await raw('GET', '/api/ocean/analytics/sensor/T-1/anomalies?threshold=-1', { headers: alice.auth }), ['query', 'threshold']);
      expectValidationError(await raw('GET', `/api/ocean/profiles/${'x'.repeat(300)}`, { headers: alice.auth }), ['path', 'profile_id']);
      expectValidationError(await raw('GET', `/api/ocean/analytics/sensor/${encodeURIComponent('é'.repeat(257))}/stats`, { headers: alice.auth }), ['path', 'sensor_id']);
      expectValidationError(await json('POST', '/api/ocean/analytics/compare', { sensor_ids: [{}] }, alice.auth), ['body', 'sensor_ids', 0], 'type_error.str');
    });

    it('answers other errors with detail as text, beside error, message and statusCode', async () => {
      expectTextError(await raw('GET', '/api/ocean/users/00000000-0000-4000-8000-000000000000', { headers: t.admin }), 404);
      expectTextError(await raw('GET', `/api/ocean/users/${alice.id}`), 401);
      expectTextError(await raw('GET', `/api/ocean/users/${alice.id}`, { headers: bob.auth }), 403);
      expectTextError(await json('POST', '/api/ocean/users', { username: 'alice', email: 'other@example.com' }), 409);
    });

    it('answers an unknown path 404 "Not Found", and a wrong method 405 "Method Not Allowed" with Allow', async () => {
      for (const url of ['/nope', '/api/ocean/nope', '/api/ocean/users/x/y']) expectTextError(await raw('GET', url), 404, 'Not Found');
      for (const [method, url, allow] of [
        ['PUT', '/api/ocean/users', 'POST'],
        ['GET', '/api/ocean/sessions/create', 'POST'],
        ['GET', '/api/ocean/sessions/validate', 'POST'],
        ['DELETE', '/api/ocean/metadata/k', 'GET, HEAD, POST'],
        ['POST', '/health', 'GET, HEAD'],
        ['GET', '/api/ocean/analytics/compare', 'POST'],
        ['PUT', `/api/ocean/users/${alice.id}/`, 'GET, HEAD'],
      ] as const) {
        const res = await raw(method, url, { headers: t.admin });
        expectTextError(res, 405, 'Method Not Allowed');
        expect(res.headers.allow, `${method} ${url}`).toBe(allow);
      }
    });

    it('never answers a stack trace, and a 5xx says only "internal error"', async () => {
      const res = await json('POST', '/api/ocean/users', { username: 'x', email: 'y', extra: { deep: [1, 2] } });
      expect(res.body).not.toMatch(/\bat .+\.(ts|js):\d+/);
    });
  });

  describe('request habits', () => {
    it('parses a JSON body sent without a Content-Type header, or as text/plain', async () => {
      for (const contentType of [undefined, 'text/plain', 'text/plain; charset=utf-8']) {
        const n = ++users;
        const created = await raw('POST', '/api/ocean/users', { body: JSON.stringify({ username: `plain-${n}`, email: `p${n}@x.io` }), headers: t.admin, ...(contentType ? { contentType } : {}) });
        expectAnswer(created, 'POST', '/api/ocean/users');
        const session = await raw('POST', '/api/ocean/sessions/create', { body: JSON.stringify({ user_id: created.json().id, username: `plain-${n}` }), headers: t.admin, ...(contentType ? { contentType } : {}) });
        expectAnswer(session, 'POST', '/api/ocean/sessions/create');
        const profile = await raw('POST', '/api/ocean/profiles/store', { body: JSON.stringify({ profile_id: `plain-${n}`, sensor_id: 'T-1', metadata: {} }), headers: alice.auth, ...(contentType ? { contentType } : {}) });
        expectAnswer(profile, 'POST', '/api/ocean/profiles/store');
        const compare = await raw('POST', '/api/ocean/analytics/compare', { body: JSON.stringify({ sensor_ids: ['T-1'] }), headers: alice.auth, ...(contentType ? { contentType } : {}) });
        expectAnswer(compare, 'POST', '/api/ocean/analytics/compare');
      }
    });

    it('still refuses a media type it cannot read (415) and JSON that is not JSON (422)', async () => {
      expectTextError(await raw('POST', '/api/ocean/users', { body: '<user/>', contentType: 'application/xml', headers: t.admin }), 415);
      expectValidationError(await raw('POST', '/api/ocean/users', { body: '{"username": ', headers: t.admin }), ['body'], 'value_error.jsondecode');
      expectValidationError(await raw('POST', '/api/ocean/users', { body: 'not json', contentType: 'text/plain', headers: t.admin }), ['body'], 'value_error.jsondecode');
    });

    it('takes Content-Type: application/json with an empty body on the routes whose input is in the query string', async () => {
      const empty = { body: '', contentType: 'application/json' };
      expectAnswer(await raw('POST', `/api/ocean/sessions/validate?token=${alice.token}`, empty), 'POST', '/api/ocean/sessions/validate');
      expectAnswer(await raw('POST', `/api/ocean/billing/${alice.id}/add-credits?amount=5`, { ...empty, headers: t.admin }), 'POST', '/api/ocean/billing/{user_id}/add-credits');
      expectAnswer(await raw('POST', '/api/ocean/metadata/habit-empty?value=x', { ...empty, headers: t.admin }), 'POST', '/api/ocean/metadata/{key}');
      // A body-route with an empty body is a missing body, as FastAPI says it.
      expectValidationError(await raw('POST', '/api/ocean/users', { ...empty, headers: t.admin }), ['body'], 'value_error.missing');
    });

    it('reads null for an optional field as absent', async () => {
      const u = await newUser();
      expectAnswer(await json('POST', '/api/ocean/sessions/create', { user_id: u.id, username: u.username, email: null }), 'POST', '/api/ocean/sessions/create');
      expectAnswer(await json('POST', '/api/ocean/profiles/store', { profile_id: 'null-ts', sensor_id: 'T-1', timestamp: null, metadata: {} }, alice.auth), 'POST', '/api/ocean/profiles/store');
      const stored = await raw('GET', '/api/ocean/profiles/null-ts', { headers: alice.auth });
      expect(Math.abs(Date.parse(stored.json().timestamp) - Date.now())).toBeLessThan(60_000);
      const compare = await json('POST', '/api/ocean/analytics/compare', { sensor_ids: ['T-1'], start_time: null, end_time: null, sensor_id: null, aggregation: null }, alice.auth);
      expectAnswer(compare, 'POST', '/api/ocean/analytics/compare');
      expect(compare.json().comparison['T-1'].count).toBe(61);
      expectAnswer(await json('POST', `/api/ocean/sessions/validate?token=${alice.token}`, { token: null }, {}), 'POST', '/api/ocean/sessions/validate');
      expectAnswer(await json('POST', `/api/ocean/billing/${u.id}/add-credits?amount=3`, { amount: null, reason: null }), 'POST', '/api/ocean/billing/{user_id}/add-credits');
    });

    it('ignores unknown extra keys', async () => {
      const n = ++users;
      const res = await json('POST', '/api/ocean/users', { username: `extra-${n}`, email: `e${n}@x.io`, full_name: 'Extra', is_admin: true });
      expectAnswer(res, 'POST', '/api/ocean/users');
      expect(res.json()).not.toHaveProperty('full_name');
      expectAnswer(await json('POST', '/api/ocean/profiles/store', { profile_id: 'extra', sensor_id: 'T-1', metadata: {}, owner: 'x' }, alice.auth), 'POST', '/api/ocean/profiles/store');
    });

    it('coerces a number where text is expected and numeric text where an integer is', async () => {
      const n = 900_000 + ++users;
      const created = await json('POST', '/api/ocean/users', { username: n, email: `${n}@x.io` });
      expectAnswer(created, 'POST', '/api/ocean/users');
      expect(created.json().username).toBe(String(n));
      expectAnswer(await json('POST', '/api/ocean/profiles/store', { profile_id: 4242, sensor_id: 42, metadata: { n: 1 } }, alice.auth), 'POST', '/api/ocean/profiles/store');
      expect((await raw('GET', '/api/ocean/profiles/4242', { headers: alice.auth })).json()).toMatchObject({ sensor_id: '42' });
      const credits = await raw('POST', `/api/ocean/billing/${created.json().id}/add-credits?amount=5`, { headers: t.admin });
      expect(credits.json()).toMatchObject({ credits: 5 });
      const body = await json('POST', `/api/ocean/billing/${created.json().id}/add-credits`, { amount: '7' });
      expect(body.json()).toMatchObject({ credits: 12 });
      const compare = await json('POST', '/api/ocean/analytics/compare', { sensor_ids: [7, 42] }, alice.auth);
      expect(keysInOrder(compare.body, 'comparison')).toEqual(['42', '7']);
    });

    it('takes any sensor id up to 256 characters but control characters (a space is fine)', async () => {
      expectAnswer(await json('POST', '/api/ocean/profiles/store', { profile_id: 'spaced', sensor_id: 'my sensor', metadata: {} }, alice.auth), 'POST', '/api/ocean/profiles/store');
      expectAnswer(await raw('GET', '/api/ocean/analytics/sensor/my%20sensor/stats', { headers: alice.auth }), 'GET', '/api/ocean/analytics/sensor/{sensor_id}/stats');
      const long = 'é'.repeat(256);
      expectAnswer(await json('POST', '/api/ocean/profiles/store', { profile_id: 'long', sensor_id: long, metadata: {} }, alice.auth), 'POST', '/api/ocean/profiles/store');
      expectValidationError(await json('POST', '/api/ocean/profiles/store', { profile_id: 'too-long', sensor_id: `${long}x`, metadata: {} }, alice.auth), ['body', 'sensor_id']);
      expectValidationError(await json('POST', '/api/ocean/profiles/store', { profile_id: 'ctl', sensor_id: 'a\nb', metadata: {} }, alice.auth), ['body', 'sensor_id']);
      expectValidationError(await json('POST', '/api/ocean/profiles/store', { profile_id: 'empty', sensor_id: '', metadata: {} }, alice.auth), ['body', 'sensor_id']);
    });

    it('reaches the route with a trailing slash', async () => {
      expectAnswer(await raw('GET', '/health/'), 'GET', '/health');
      expectAnswer(await raw('GET', '/api/ocean/status/'), 'GET', '/api/ocean/status');
      expectAnswer(await raw('GET', `/api/ocean/users/${alice.id}/`, { headers: alice.auth }), 'GET', '/api/ocean/users/{user_id}');
      const n = ++users;
      expectAnswer(await json('POST', '/api/ocean/users/', { username: `slash-${n}`, email: `s${n}@x.io` }), 'POST', '/api/ocean/users');
      expectAnswer(await raw('GET', '/api/ocean/analytics/sensor/T-1/stats/', { headers: alice.auth }), 'GET', '/api/ocean/analytics/sensor/{sensor_id}/stats');
    });
  });

  describe('answers', () => {
    it('GET /health: status "healthy" and the original keys', async () => {
      const res = await raw('GET', '/health');
      expectAnswer(res, 'GET', '/health');
      expect(res.json().status).toBe('healthy');
      expect(Number.isNaN(Date.parse(res.json().timestamp))).toBe(false);
    });

    it('GET /api/ocean/status: "operational" and the original keys', async () => {
      const res = await raw('GET', '/api/ocean/status');
      expectAnswer(res, 'GET', '/api/ocean/status');
      expect(res.json()).toMatchObject({ status: 'operational', cpu_efficient: true });
      expect(res.json().memory_usage_mb).toBeGreaterThan(0);
    });

    it('GET /api/ocean/docs: architecture as text, layers and performance of text, endpoints name → "METHOD /path"', async () => {
      const res = await raw('GET', '/api/ocean/docs');
      expectAnswer(res, 'GET', '/api/ocean/docs');
      const body = res.json();
      for (const group of [body.layers, body.performance, body.endpoints]) {
        expect(Object.keys(group).length).toBeGreaterThan(0);
        for (const v of Object.values(group)) expect(typeof v).toBe('string');
      }
      const endpoints = Object.values(body.endpoints) as string[];
      for (const e of endpoints) expect(e).toMatch(/^(GET|POST|PUT|PATCH|DELETE) \//);
      for (const route of CONTRACT) expect(endpoints).toContain(`${route.method} ${route.path.replace(/\{(\w+)\}/g, ':$1')}`);
    });

    it('POST /api/ocean/users and GET /api/ocean/users/{user_id}: UUID ids, status active', async () => {
      const n = ++users;
      const created = await json('POST', '/api/ocean/users', { username: `shape-${n}`, email: `shape${n}@x.io` });
      expectAnswer(created, 'POST', '/api/ocean/users');
      expect(created.json().id).toMatch(UUID);
      const got = await raw('GET', `/api/ocean/users/${created.json().id}`, { headers: t.admin });
      expectAnswer(got, 'GET', '/api/ocean/users/{user_id}');
      expect(got.json()).toMatchObject({ id: created.json().id, username: `shape-${n}`, email: `shape${n}@x.io`, status: 'active' });
    });

    it('billing: {user_id, credits} after a change; {id, user_id, plan, credits, usage, created_at}', async () => {
      const u = await newUser();
      const added = await raw('POST', `/api/ocean/billing/${u.id}/add-credits?amount=10`, { headers: t.admin });
      expectAnswer(added, 'POST', '/api/ocean/billing/{user_id}/add-credits');
      expect(added.json()).toMatchObject({ user_id: u.id, credits: 10 });
      expect((await raw('POST', `/api/ocean/billing/${u.id}/add-credits?amount=-4`, { headers: t.admin })).json().credits).toBe(6);
      const account = await raw('GET', `/api/ocean/billing/${u.id}`, { headers: u.auth });
      expectAnswer(account, 'GET', '/api/ocean/billing/{user_id}');
      expect(account.json()).toMatchObject({ user_id: u.id, credits: 6, plan: 'free', usage: 0 });
      expect(account.json().id).toMatch(UUID);
      expect(account.json().id).not.toBe(u.id);
    });

    it('sessions: create answers exactly {session_id, token, expires_at}; validate {valid: true, session: {id, …}} without the token', async () => {
      const u = await newUser();
      const created = await json('POST', '/api/ocean/sessions/create', { user_id: u.id, username: u.username });
      expectAnswer(created, 'POST', '/api/ocean/sessions/create');
      const { session_id, token } = created.json();
      expect(session_id).toMatch(UUID);
      for (const form of [
        { url: `/api/ocean/sessions/validate?token=${token}` },
        { url: '/api/ocean/sessions/validate', body: JSON.stringify({ token }) },
        { url: '/api/ocean/sessions/validate', headers: { authorization: `Bearer ${token}` } },
      ]) {
        const res = await raw('POST', form.url, { ...(form.body ? { body: form.body } : {}), ...(form.headers ? { headers: form.headers } : {}) });
        expectAnswer(res, 'POST', '/api/ocean/sessions/validate');
        expect(res.json()).toMatchObject({ valid: true, session: { id: session_id, user_id: u.id } });
        expect(res.body).not.toContain(token);
      }
      expectTextError(await raw('POST', '/api/ocean/sessions/validate?token=nope'), 401);
    });

    it('metadata: POST ?value= → {key, set}; GET → {key, value} with the text stored', async () => {
      const set = await raw('POST', '/api/ocean/metadata/site-name?value=Lab%201', { headers: t.admin });
      expectAnswer(set, 'POST', '/api/ocean/metadata/{key}');
      expect(set.json()).toEqual({ key: 'site-name', set: true });
      const got = await raw('GET', '/api/ocean/metadata/site-name', { headers: alice.auth });
      expectAnswer(got, 'GET', '/api/ocean/metadata/{key}');
      expect(got.json()).toMatchObject({ key: 'site-name', value: 'Lab 1' });
      // Text that looks like JSON stays text.
      await raw('POST', `/api/ocean/metadata/json-text?value=${encodeURIComponent('{"a":1}')}`, { headers: t.admin });
      expect((await raw('GET', '/api/ocean/metadata/json-text', { headers: alice.auth })).json().value).toBe('{"a":1}');
      expectValidationError(await raw('POST', '/api/ocean/metadata/no-value', { headers: t.admin }), ['query', 'value'], 'value_error.missing');
    });

    it('profiles: store → exactly {profile_id, stored: true}; GET → {sensor_id, timestamp, metadata}', async () => {
      const stored = await json('POST', '/api/ocean/profiles/store', { profile_id: 'shape', sensor_id: 'T-1', timestamp: BASE, metadata: { depth: 3, tags: ['a'] } }, alice.auth);
      expectAnswer(stored, 'POST', '/api/ocean/profiles/store');
      expect(stored.json()).toEqual({ profile_id: 'shape', stored: true });
      const got = await raw('GET', '/api/ocean/profiles/shape', { headers: alice.auth });
      expectAnswer(got, 'GET', '/api/ocean/profiles/{profile_id}');
      expect(got.json()).toMatchObject({ sensor_id: 'T-1', timestamp: '2026-01-01T00:00:00.000Z', metadata: { depth: 3, tags: ['a'] } });
    });

    it('profiles: storing one for a sensor nobody owns claims it for the caller', async () => {
      const u = await newUser();
      expectAnswer(await json('POST', '/api/ocean/profiles/store', { profile_id: `claim-${u.id}`, sensor_id: `unclaimed ${u.id}`, metadata: {} }, u.auth), 'POST', '/api/ocean/profiles/store');
      expect(await t.store.devices.ownerOf(`unclaimed ${u.id}`)).toBe(u.id);
      expectAnswer(await raw('GET', `/api/ocean/analytics/sensor/${encodeURIComponent(`unclaimed ${u.id}`)}/stats`, { headers: u.auth }), 'GET', '/api/ocean/analytics/sensor/{sensor_id}/stats');
      expectTextError(await raw('GET', `/api/ocean/analytics/sensor/${encodeURIComponent(`unclaimed ${u.id}`)}/stats`, { headers: bob.auth }), 403);
    });

    it('stats: count, avg_value, min_value, max_value, stddev_value, first_reading, last_reading over every value', async () => {
      const res = await raw('GET', '/api/ocean/analytics/sensor/T-1/stats', { headers: alice.auth });
      expectAnswer(res, 'GET', '/api/ocean/analytics/sensor/{sensor_id}/stats');
      expect(res.json()).toMatchObject({ count: 61, min_value: 20, max_value: 95, first_reading: '2026-01-01T00:00:00.000Z', last_reading: '2026-01-01T00:30:00.000Z' });
      expect(res.json().metrics).toHaveLength(2);
      const none = await raw('GET', '/api/ocean/analytics/sensor/42/stats?start=2030-01-01', { headers: alice.auth });
      expectAnswer(none, 'GET', '/api/ocean/analytics/sensor/{sensor_id}/stats');
      expect(none.json()).toMatchObject({ count: 0, avg_value: null, first_reading: null });
    });

    it('timeseries: {sensor_id, interval, data: [{bucket, avg_value, min_value, max_value, count}]} oldest first, 5m by default', async () => {
      const res = await raw('GET', '/api/ocean/analytics/sensor/T-1/timeseries', { headers: alice.auth });
      expectAnswer(res, 'GET', '/api/ocean/analytics/sensor/{sensor_id}/timeseries');
      const body = res.json();
      expect(body.interval).toBe('5m');
      expect(body.data).toHaveLength(7); // 00:00 … 00:30
      const buckets = body.data.map((b: { bucket: string }) => b.bucket);
      expect(buckets).toEqual([...buckets].sort());
      expect(body.data[0]).toEqual({ bucket: '2026-01-01T00:00:00.000Z', avg_value: (20 + 21 + 22 + 20 + 21 + 50 * 5) / 10, min_value: 20, max_value: 50, count: 10 });
      const narrowed = (await raw('GET', '/api/ocean/analytics/sensor/T-1/timeseries?metric=humidity', { headers: alice.auth })).json();
      expect(narrowed.data[0]).toMatchObject({ avg_value: 50, count: 5 });
    });

    it.each([
      ['30s', 30],
      ['5m', 300],
      ['1h', 3600],
      ['1d', 86400],
      ['5 minutes', 300],
      ['1 hour', 3600],
      ['1 week', 604800],
      ['10 seconds', 10],
    ])('timeseries: takes interval %j', async (interval, seconds) => {
      const res = await raw('GET', `/api/ocean/analytics/sensor/T-1/timeseries?interval=${encodeURIComponent(interval)}`, { headers: alice.auth });
      expectAnswer(res, 'GET', '/api/ocean/analytics/sensor/{sensor_id}/timeseries');
      expect(res.json()).toMatchObject({ interval, interval_seconds: seconds });
      expect(res.json().data.reduce((n: number, b: { count: number }) => n + b.count, 0)).toBe(61);
    });

    it('anomalies: {sensor_id, threshold, anomalies: [{timestamp, value, z_score}], count}, threshold 2.0 by default', async () => {
      const res = await raw('GET', '/api/ocean/analytics/sensor/T-1/anomalies', { headers: alice.auth });
      expectAnswer(res, 'GET', '/api/ocean/analytics/sensor/{sensor_id}/anomalies');
      expect(res.json()).toMatchObject({ sensor_id: 'T-1', threshold: 2, count: 1, anomalies: [{ timestamp: '2026-01-01T00:30:00.000Z', value: 95 }] });
      const low = (await raw('GET', '/api/ocean/analytics/sensor/T-1/anomalies?threshold=0.5', { headers: alice.auth })).json();
      const times = low.anomalies.map((a: { timestamp: string }) => a.timestamp);
      expect(times).toEqual([...times].sort().reverse());
      expect(low.count).toBe(low.anomalies.length);
      expect(low.count).toBeLessThanOrEqual(100);
    });

    it('compare: {comparison: {<sensor_id>: {count, avg_value, min_value, max_value, stddev_value}}} in descending avg_value', async () => {
      const res = await json('POST', '/api/ocean/analytics/compare', { sensor_ids: ['7', 'my sensor', 'T-1', '42'], sensor_id: 'ignored', aggregation: 'avg' }, alice.auth);
      expectAnswer(res, 'POST', '/api/ocean/analytics/compare');
      const { comparison } = res.json();
      // T-1 pools temperature and humidity: avg (30 × 21 + 95 + 30 × 50) / 61 ≈ 36.5.
      expect(keysInOrder(res.body, 'comparison')).toEqual(['T-1', '42', '7', 'my sensor']);
      for (const [id, entry] of Object.entries(comparison)) expectShape(entry, COMPARISON_ENTRY, { where: `comparison.${id}` });
      expect(comparison['42']).toMatchObject({ count: 30, avg_value: 30.5, min_value: 30, max_value: 31 });
    });

    it('telemetry ingest and batch: {id, sensor_id, buffered, timestamp} and {count, ids, timestamp}, with the habits of the original clients', async () => {
      const u = await newUser();
      const sensor = `tele ${u.id}`;
      // No Content-Type, a null timestamp, data as JSON text.
      const one = await raw('POST', '/api/ocean/telemetry/ingest', { body: JSON.stringify({ sensor_id: sensor, data: '{"temperature": 21.5}', timestamp: null }), headers: u.auth });
      expectAnswer(one, 'POST', '/api/ocean/telemetry/ingest');
      expect(one.json()).toMatchObject({ sensor_id: sensor, buffered: true });
      expect(Date.parse(one.json().timestamp)).not.toBeNaN();
      // Every form `data` takes, and a numeric sensor id, in one batch; and an empty batch.
      const numericId = 900_000 + users;
      const batch = await json('POST', '/api/ocean/telemetry/batch', [
        { sensor_id: sensor, data: { humidity: 40, note: 'kept' }, timestamp: BASE },
        { sensor_id: sensor, data: '21.7' },
        { sensor_id: sensor, data: 'temperature=21.9;humidity=41' },
        { sensor_id: sensor, data: 'door open' },
        { sensor_id: numericId, data: '{"v": 1}', timestamp: '2026-01-01T00:00:00Z' },
      ], u.auth);
      expectAnswer(batch, 'POST', '/api/ocean/telemetry/batch');
      expect(batch.json()).toMatchObject({ count: 5 });
      expect(batch.json().ids).toHaveLength(5);
      expect(batch.json().ids.every(Number.isInteger)).toBe(true);
      expect(batch.json().records).toBe(1 + 1 + 2 + 0 + 1);
      const empty = await json('POST', '/api/ocean/telemetry/batch', [], u.auth);
      expectAnswer(empty, 'POST', '/api/ocean/telemetry/batch');
      expect(empty.json()).toMatchObject({ count: 0, ids: [] });
    });

    it('telemetry work queue: unprocessed gives back the text sent until mark-processed, whatever the flush did', async () => {
      const u = await newUser();
      const sensor = `queue ${u.id}`;
      const sent = ['{"temperature": 21.5}', 'door open', '7'];
      const ids: number[] = [];
      for (const data of sent) ids.push((await json('POST', '/api/ocean/telemetry/ingest', { sensor_id: sensor, data }, u.auth)).json().id);
      await t.settle();
      const queue = await raw('GET', '/api/ocean/telemetry/unprocessed?limit=10000', { headers: t.admin, contentType: 'application/json', body: '' });
      expectAnswer(queue, 'GET', '/api/ocean/telemetry/unprocessed');
      const mine = queue.json().data.filter((r: { sensor_id: string }) => r.sensor_id === sensor);
      expect(mine.map((r: { id: number; data: string }) => [r.id, r.data])).toEqual(ids.map((id, i) => [id, sent[i]]));
      const marked = await json('POST', '/api/ocean/telemetry/mark-processed', ids.slice(0, 2), t.admin);
      expectAnswer(marked, 'POST', '/api/ocean/telemetry/mark-processed');
      expect(marked.json()).toMatchObject({ processed: 2, success: true });
      const after = (await raw('GET', '/api/ocean/telemetry/unprocessed?limit=10000', { headers: t.admin })).json();
      expect(after.data.filter((r: { sensor_id: string }) => r.sensor_id === sensor).map((r: { id: number }) => r.id)).toEqual([ids[2]]);
    });

    it('export: a streamed download, as before', async () => {
      const res = await raw('GET', '/api/ocean/analytics/export?format=csv&sensor_id=42', { headers: alice.auth });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-disposition']).toMatch(/^attachment; filename=/);
      expect(res.body.trim().split('\n')).toHaveLength(31);
    });
  });

  describe('documentation pages', () => {
    it('serves Swagger UI at /docs, the OpenAPI document at /openapi.json and ReDoc at /redoc', async () => {
      const docs = await raw('GET', '/docs');
      const page = docs.statusCode === 302 ? await raw('GET', docs.headers.location as string) : docs;
      expect(page.statusCode).toBe(200);
      expect(page.body).toMatch(/swagger-ui/i);
      const spec = await raw('GET', '/openapi.json');
      expect(spec.statusCode).toBe(200);
      expect(spec.json().openapi).toMatch(/^3\./);
      const redoc = await raw('GET', '/redoc');
      expect(redoc.statusCode).toBe(200);
      expect(redoc.headers['content-type']).toMatch(/^text\/html/);
      expect(redoc.body).toContain('<redoc spec-url="/openapi.json">');
      expect(redoc.body).toMatch(/<script src="[^"]+redoc[^"]*\.js">/);
    });

    it('serves ReDoc from the service itself: the page names no other host, its script comes from the redoc package', async () => {
      const page = (await raw('GET', '/redoc')).body;
      expect(page).not.toMatch(/\/\/|https?:/);
      const scripts = [...page.matchAll(/<script src="([^"]+)">/g)].map((m) => m[1]!);
      expect(scripts).toHaveLength(1);
      expect(scripts[0]).toMatch(/^\/[^/]/);
      const script = await raw('GET', scripts[0]!);
      expect(script.statusCode).toBe(200);
      expect(script.headers['content-type']).toMatch(/^application\/javascript/);
      expect(script.headers['cache-control']).toMatch(/max-age=\d+/);
      expect(script.body.length).toBeGreaterThan(100_000);
      expect(script.body).toContain('Redoc');
      // Revalidation costs no body.
      const again = await raw('GET', scripts[0]!, { headers: { 'if-none-match': String(script.headers.etag) } });
      expect(again.statusCode).toBe(304);
      expect(again.body).toBe('');
    });
  });
});
