import { createTestApp, type TestApp } from './app.js';

export interface TestUser {
  id: string;
  username: string;
  email: string;
  token: string;
  /** Authorization header with the user's session token. */
  auth: { authorization: string };
}

/** Creates a user through the API (admin) and opens a session for it. */
export async function createUserWithSession(t: TestApp, username: string): Promise<TestUser> {
  const created = await t.app.inject({
    method: 'POST',
    url: '/api/ocean/users',
    headers: t.admin,
    payload: { username, email: `${username}@example.com` },
  });
  if (created.statusCode !== 200) throw new Error(`create user ${username}: ${created.statusCode} ${created.body}`);
  const user = created.json<{ id: string; username: string; email: string }>();
  const session = await t.app.inject({
    method: 'POST',
    url: '/api/ocean/sessions/create',
    headers: t.admin,
    payload: { user_id: user.id, username },
  });
  if (session.statusCode !== 200) throw new Error(`create session ${username}: ${session.statusCode} ${session.body}`);
  const { token } = session.json<{ token: string }>();
  return { id: user.id, username: user.username, email: user.email, token, auth: { authorization: `Bearer ${token}` } };
}

/** A fresh test app with two users, alice and bob, each with a session. */
export async function appWithAliceAndBob(): Promise<{ t: TestApp; alice: TestUser; bob: TestUser }> {
  const t = await createTestApp();
  return { t, alice: await createUserWithSession(t, 'alice'), bob: await createUserWithSession(t, 'bob') };
}
