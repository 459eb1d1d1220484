import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { createUserWithSession } from '../helpers/sessions.js';


describe('HTTP users', () => {
  let t: TestApp;
  beforeEach(async () => {
    t = await createTestApp();
  });
  afterEach(async () => {
    await t.close();
  });

  const createUser = (payload: unknown, headers: Record<string, string> = t.admin) =>
    t.app.inject({ method: 'POST', url: '/api/ocean/users', headers, payload: payload as object });

  it('creates a user (200, as the original) with a UUID id and its billing account, as admin', async () => {
    const res = await createUser({ username: 'alice', email: 'alice@example.com' });
    expect(res.statusCode).toBe(200);
    const user = res.json();
    expect(user).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
      username: 'alice',
      email: 'alice@example.com',
      created_at: expect.any(String),
      updated_at: expect.any(String),
      status: 'active',
    });
    const billing = await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${user.id}`, headers: t.admin });
    expect(billing.statusCode).toBe(200);
    expect(billing.json()).toMatchObject({ user_id: user.id, credits: 0, plan: 'free' });
  });

  it('answers 401 without a token and 403 with a user session for user creation', async () => {
    const noToken = await createUser({ username: 'alice', email: 'alice@example.com' }, {});
    expectErrorShape(noToken, 401, 'unauthorized');
    const bob = await createUserWithSession(t, 'bob');
    const asUser = await createUser({ username: 'carol', email: 'carol@example.com' }, bob.auth);
    expectErrorShape(asUser, 403, 'forbidden');
  });

  it('checks authentication before validating the body', async () => {
    const res = await createUser({ username: '!' }, {});
    expect(res.statusCode).toBe(401);
  });

  it.each([
    ['an empty email', { username: 'alice', email: '' }, 'email', 'value_error.any_str.min_length'],
    ['an empty username', { username: '', email: 'alice@example.com' }, 'username', 'value_error.any_str.min_length'],
    ['a username past 64 characters', { username: 'a'.repeat(65), email: 'alice@example.com' }, 'username', 'value_error.any_str.max_length'],
    ['an email past 254 characters', { username: 'alice', email: `${'a'.repeat(250)}@x.io` }, 'email', 'value_error.any_str.max_length'],
    ['a missing email', { username: 'alice' }, 'email', 'value_error.missing'],
    ['an object for a username', { username: { a: 1 }, email: 'alice@example.com' }, 'username', 'type_error.str'],
  ])('refuses %s with 422 and FastAPI-style detail', async (_name, payload, field, type) => {
    const res = await createUser(payload);
    expect(res.statusCode).toBe(422);
    const body = res.json();
    expectErrorShape(res, 422, 'validation_error');
    expect(body.detail).toEqual([{ loc: ['body', field], msg: expect.any(String), type }]);
    expect(body.message).toMatch(field);
  });

  it('takes any non-empty text as username and email, as the original', async () => {
    for (const [username, email] of [['a b', 'not-an-email'], ['ab', 'x'], ['Émile Zola', 'émile@exemple.fr']]) {
      const res = await createUser({ username, email });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ username, email });
    }
  });

  it('refuses bad JSON with 422 (as FastAPI) in the JSON error shape', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/ocean/users',
      headers: { ...t.admin, 'content-type': 'application/json' },
      payload: '{"username": ',
    });
    expectErrorShape(res, 422);
    expect(res.json().detail).toEqual([{ loc: ['body'], msg: expect.any(String), type: 'value_error.jsondecode' }]);
  });

  it('answers 409 for a duplicate username or email and the database stays writable (ingest still stores)', async () => {
    const alice = await createUserWithSession(t, 'alice');
    const dupName = await createUser({ username: 'alice', email: 'other@example.com' });
    expectErrorShape(dupName, 409, 'conflict');
    expect(dupName.json().message).toMatch(/username/);
    const dupEmail = await createUser({ username: 'alice2', email: 'ALICE@example.com' });
    expect(dupEmail.statusCode).toBe(409);
    expect(dupEmail.json().message).toMatch(/email/);

    // Every kind of write still works afterwards (the original leaked a write lock here).
    expect((await createUser({ username: 'bob', email: 'bob@example.com' })).statusCode).toBe(200);
    const credits = await t.app.inject({ method: 'POST', url: `/api/ocean/billing/${alice.id}/add-credits?amount=5`, headers: t.admin });
    expect(credits.statusCode).toBe(200);
    const ingest = await t.app.inject({
      method: 'POST',
      url: '/api/ocean/telemetry/ingest',
      headers: alice.auth,
      payload: { sensor_id: 'alice-s1', data: { temperature: 21.5 } },
    });
    expect(ingest.statusCode).toBe(200);
    const { id } = ingest.json();
    expect(id).toBeGreaterThan(0);
    expect((await t.store.buffer.queued(10)).map((r) => r.id)).toContain(id);
  });

  it('lets a user read itself, refuses another user (403) and lets the admin read anyone', async () => {
    const alice = await createUserWithSession(t, 'alice');
    const bob = await createUserWithSession(t, 'bob');
    const own = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${alice.id}`, headers: alice.auth });
    expect(own.statusCode).toBe(200);
    expect(own.json()).toMatchObject({ id: alice.id, username: 'alice', email: 'alice@example.com' });
    const other = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${bob.id}`, headers: alice.auth });
    expectErrorShape(other, 403, 'forbidden');
    const admin = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${bob.id}`, headers: t.admin });
    expect(admin.statusCode).toBe(200);
    const none = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${alice.id}` });
    expect(none.statusCode).toBe(401);
    const badToken = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${alice.id}`, headers: { authorization: 'Bearer nope' } });
    expect(badToken.statusCode).toBe(401);
  });

  it('answers 404 for an unknown user id, whatever text it is', async () => {
    for (const id of ['999', 'abc', '00000000-0000-4000-8000-000000000000']) {
      const missing = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${id}`, headers: t.admin });
        expectErrorShape(missing, 404, 'not_found');
      expect(typeof missing.json().detail).toBe('string');
    }
  });
});
