import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { createUserWithSession } from '../helpers/sessions.js';

/** /api/ocean/status: what a load balancer needs for anyone, the details for the admin only. */
describe('GET /api/ocean/status', () => {
  let redisServer: RedisServer;
  let t: TestApp;
  const ORIGINAL_KEYS = ['cpu_efficient', 'engine', 'memory_usage_mb', 'status', 'telemetry_buffer_size'];
  beforeAll(async () => {
    redisServer = await startRedis();
    // The stream consumer is configured (its name defaults to the host name) but not started.
    t = await createTestApp({ env: { REDIS_URL: redisServer.url } });
  });
  afterAll(async () => {
    await t?.close();
    await redisServer?.stop();
  });
  const status = (headers: Record<string, string> = {}) => t.app.inject({ method: 'GET', url: '/api/ocean/status', headers });

  it("answers anyone the original's keys only: no host name, Redis state, sizes or ingest details", async () => {
    const user = await createUserWithSession(t, 'status-user');
    for (const headers of [{}, user.auth, { authorization: 'Bearer not-a-token' }]) {
      const res = await status(headers);
      expect(res.statusCode).toBe(200);
      expect(Object.keys(res.json()).sort()).toEqual(ORIGINAL_KEYS);
      expect(res.json()).toMatchObject({ status: 'operational', cpu_efficient: true });
      expect(res.body).not.toContain(hostname());
      expect(res.body).not.toContain('redis');
    }
  });

  it('gives the admin the details: engines, buffer, database sizes, ingest state with the consumer name', async () => {
    const res = await status(t.admin);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(Object.keys(body)).toEqual(expect.arrayContaining([...ORIGINAL_KEYS, 'engines', 'telemetry_buffer', 'db_size_bytes', 'ingest', 'timestamp']));
    expect(body.engines.stream).toBe('redis');
    expect(body.ingest.consumer).toMatchObject({ enabled: true, consumer: hostname() });
  });
});
