import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createUserWithSession } from '../helpers/sessions.js';

const expectErrorShape = (body: unknown, statusCode: number, error?: string) => {
  expect(body).toMatchObject({ statusCode, error: error ?? expect.any(String), message: expect.any(String) });
  expect(JSON.stringify(body)).not.toMatch(/\bat .+\.(ts|js):\d+/); // no stack trace
};

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

  it('creates a user (201) with its billing account, as admin', async () => {
    const res = await createUser({ username: 'alice', email: 'alice@example.com' });
    expect(res.statusCode).toBe(201);
    const user = res.json();
    expect(user).toEqual({ id: expect.any(Number), username: 'alice', email: 'alice@example.com', created_at: expect.any(String) });
    const billing = await t.app.inject({ method: 'GET', url: `/api/ocean/billing/${user.id}`, headers: t.admin });
    expect(billing.statusCode).toBe(200);
    expect(billing.json()).toMatchObject({ user_id: user.id, credits: 0, plan: 'free' });
  });

  it('answers 401 without a token and 403 with a user session for user creation', async () => {
    const noToken = await createUser({ username: 'alice', email: 'alice@example.com' }, {});
    expect(noToken.statusCode).toBe(401);
    expectErrorShape(noToken.json(), 401, 'unauthorized');
    const bob = await createUserWithSession(t, 'bob');
    const asUser = await createUser({ username: 'carol', email: 'carol@example.com' }, bob.auth);
    expect(asUser.statusCode).toBe(403);
    expectErrorShape(asUser.json(), 403, 'forbidden');
  });

  it('checks authentication before validating the body', async () => {
    const res = await createUser({ username: '!' }, {});
    expect(res.statusCode).toBe(401);
  });

  it.each([
    ['an invalid email', { username: 'alice', email: 'not-an-email' }, /email/],
    ['an invalid username', { username: 'a b', email: 'alice@example.com' }, /username/],
    ['a too short username', { username: 'ab', email: 'alice@example.com' }, /username/],
    ['a missing email', { username: 'alice' }, /email/],
  ])('refuses %s with 400 in the JSON error shape', async (_name, payload, field) => {
    const res = await createUser(payload);
    expect(res.statusCode).toBe(400);
    const body = res.json();
    expectErrorShape(body, 400, 'validation_error');
    expect(body.message).toMatch(field);
  });

  it('refuses bad JSON with 400 in the JSON error shape', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/ocean/users',
      headers: { ...t.admin, 'content-type': 'application/json' },
      payload: '{"username": ',
    });
    expect(res.statusCode).toBe(400);
    expectErrorShape(res.json(), 400);
  });

  it('answers 409 for a duplicate username or email and the database stays writable (ingest still stores)', async () => {
    const alice = await createUserWithSession(t, 'alice');
    const dupName = await createUser({ username: 'alice', email: 'other@example.com' });
    expect(dupName.statusCode).toBe(409);
    expectErrorShape(dupName.json(), 409, 'conflict');
    expect(dupName.json().message).toMatch(/username/);
    const dupEmail = await createUser({ username: 'alice2', email: 'ALICE@example.com' });
    expect(dupEmail.statusCode).toBe(409);
    expect(dupEmail.json().message).toMatch(/email/);

    // Every kind of write still works afterwards (the original leaked a write lock here).
    expect((await createUser({ username: 'bob', email: 'bob@example.com' })).statusCode).toBe(201);
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
    expect(t.service.store.buffer.unprocessed(10).map((r) => r.id)).toContain(id);
  });

  it('lets a user read itself, refuses another user (403) and lets the admin read anyone', async () => {
    const alice = await createUserWithSession(t, 'alice');
    const bob = await createUserWithSession(t, 'bob');
    const own = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${alice.id}`, headers: alice.auth });
    expect(own.statusCode).toBe(200);
    expect(own.json()).toMatchObject({ id: alice.id, username: 'alice', email: 'alice@example.com' });
    const other = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${bob.id}`, headers: alice.auth });
    expect(other.statusCode).toBe(403);
    expectErrorShape(other.json(), 403, 'forbidden');
    const admin = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${bob.id}`, headers: t.admin });
    expect(admin.statusCode).toBe(200);
    const none = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${alice.id}` });
    expect(none.statusCode).toBe(401);
    const badToken = await t.app.inject({ method: 'GET', url: `/api/ocean/users/${alice.id}`, headers: { authorization: 'Bearer nope' } });
    expect(badToken.statusCode).toBe(401);
  });

  it('answers 404 for an unknown user and 400 for a non-numeric id', async () => {
    const missing = await t.app.inject({ method: 'GET', url: '/api/ocean/users/999', headers: t.admin });
    expect(missing.statusCode).toBe(404);
    expectErrorShape(missing.json(), 404, 'not_found');
    const bad = await t.app.inject({ method: 'GET', url: '/api/ocean/users/abc', headers: t.admin });
    expect(bad.statusCode).toBe(400);
    expectErrorShape(bad.json(), 400, 'validation_error');
  });
});
