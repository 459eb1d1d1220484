import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/frames.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

/** The original's real-time side channel: each HTTP reading also lands in telemetry:stream:<sensor_id>, bounded. */
describe('per-sensor reading streams', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let t: TestApp;
  let alice: TestUser;
  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    t = await createTestApp({ env: { REDIS_URL: redisServer.url, READING_STREAM_MAXLEN: '10' } });
    alice = await createUserWithSession(t, 'alice');
  });
  afterAll(async () => {
    await t.close();
    redis.disconnect();
    await redisServer.stop();
  });

  it('appends the text each client sent, per sensor, and keeps each stream near its bound', async () => {
    const sent = ['{"temperature": 21.5}', 'door open', '7'];
    for (const data of sent) {
      expect((await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: alice.auth, payload: { sensor_id: 'S-1', data } })).statusCode).toBe(200);
    }
    const batch = Array.from({ length: 500 }, (_, i) => ({ sensor_id: 'S-2', data: { v: i } }));
    expect((await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/batch', headers: alice.auth, payload: batch })).statusCode).toBe(200);

    const s1 = await waitFor(async () => {
      const entries = await redis.xrange('telemetry:stream:S-1', '-', '+');
      return entries.length === 3 ? entries : undefined;
    }, { what: 'three entries on S-1' });
    expect(s1.map(([, fields]) => fields)).toEqual(sent.map((data) => ['data', data]));
    await waitFor(async () => (await redis.xrevrange('telemetry:stream:S-2', '+', '-', 'COUNT', 1))[0]?.[1][1] === '{"v":499}', { what: 'the last S-2 reading' });
    // MAXLEN ~ trims whole nodes: near the bound, far below what was sent.
    expect(await redis.xlen('telemetry:stream:S-2')).toBeLessThan(200);
  });

  it('sends the readings it still holds when the service shuts down', async () => {
    const other = await createTestApp({ env: { REDIS_URL: redisServer.url } });
    const bob = await createUserWithSession(other, 'bob');
    const res = await other.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: bob.auth, payload: { sensor_id: 'S-3', data: 'last words' } });
    expect(res.statusCode).toBe(200);
    // At once, well inside the 50 ms a reading may be held: only the shutdown sends it.
    await other.close();
    expect((await redis.xrange('telemetry:stream:S-3', '-', '+')).map(([, fields]) => fields)).toEqual([['data', 'last words']]);
  });
});
