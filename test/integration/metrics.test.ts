import { randomBytes } from 'node:crypto';
import { totalmem } from 'node:os';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, gasPayload, pressurePayload } from '../../src/nanogridata/encoder.js';
import { createTestApp, SHARED, type TestApp } from '../helpers/app.js';
import { PRESSURE_MODEL, pressureFrames, pressureSecret, waitFor } from '../helpers/frames.js';
import { parsePromText, samplesOf, sumOf, type PromSample } from '../helpers/prom-text.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

const GAS_MODEL = 0x20; // no NANOGRIDATA_SECRET_20 configured here: its signed frames are `no_secret`
const ACCEPTED = 12;

describe('metrics', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  let acceptedRecords = 0;
  /** What the frames endpoint answered for each rejected request, by reason. */
  const answeredRejections = new Map<string, number>();
  const expectedRejections = { bad_mac: 2, replay: 1, timestamp_drift: 1, no_secret: 1, truncated: 1, bad_magic: 1 };
  const rejectedTotal = Object.values(expectedRejections).reduce((a, b) => a + b, 0);
  let samples: PromSample[];

  const postFrames = async (body: Buffer) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/ocean/telemetry/frames',
      headers: { 'content-type': 'application/octet-stream' },
      payload: body,
    });
    expect(res.statusCode).toBe(200);
    return res.json<{ accepted: number; rejected: Array<{ index: number; reason: string }> }>();
  };

  const scrape = async () => {
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    return parsePromText(res.body);
  };

  beforeAll(async () => {
    const { secret, env } = pressureSecret();
    t = await createTestApp({ env });
    alice = await createUserWithSession(t, 'alice');
    bob = await createUserWithSession(t, 'bob');
    const now = Math.floor(Date.now() / 1000);

    // N accepted frames in one body.
    const good = pressureFrames({ count: ACCEPTED, devices: 3, secret, now });
    acceptedRecords = good.records;
    const result = await postFrames(Buffer.concat(good.frames));
    expect(result).toMatchObject({ accepted: ACCEPTED, rejected: [] });

    // M rejected frames, each in its own body, for several reasons.
    const wrongSecret = randomBytes(32);
    const signed = (opts: { model?: number; timestamp?: number; key?: Buffer; device: string; payload?: object }) =>
      encodeFrame({
        modelId: opts.model ?? PRESSURE_MODEL,
        level: 1,
        timestamp: opts.timestamp ?? now,
        payload: opts.payload ?? pressurePayload({ deviceId: opts.device, entries: [{ value: 101_325 }] }),
        secret: opts.key ?? secret,
      });
    const truncated = signed({ device: 'R-trunc' }).subarray(0, 20);
    const badMagic = Buffer.from(signed({ device: 'R-magic' }));
    badMagic[0] = badMagic[0]! ^ 0xff;
    const rejected: Buffer[] = [
      signed({ device: 'R-mac-1', key: wrongSecret }),
      signed({ device: 'R-mac-2', key: wrongSecret }),
      good.frames[0]!, // an identical repeat of an accepted frame
      signed({ device: 'R-drift', timestamp: now - 7200 }),
      signed({ device: 'R-gas', model: GAS_MODEL, payload: gasPayload({ deviceId: 'R-gas', gasType: 'CO2', entries: [{ value: 400 }] }) }),
      truncated,
      badMagic,
    ];
    for (const frame of rejected) {
      const r = await postFrames(frame);
      expect(r.accepted).toBe(0);
      for (const { reason } of r.rejected) answeredRejections.set(reason, (answeredRejections.get(reason) ?? 0) + 1);
    }

    // JSON readings over HTTP (source "http").
    for (let i = 0; i < 3; i++) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/ocean/telemetry/ingest',
        headers: alice.auth,
        payload: { sensor_id: 'alice-1', data: { temperature: 20 + i, humidity: 40 } },
      });
      expect(res.statusCode).toBeLessThan(300);
    }

    // Requests on a parameterised route, with different raw URLs, and on no route at all.
    for (const id of [alice.id, bob.id, 987_654]) {
      await t.app.inject({ method: 'GET', url: `/api/ocean/users/${id}?probe=${id}`, headers: t.admin });
    }
    await t.app.inject({ method: 'GET', url: '/no/such/route/424242' });

    await t.settle();
    samples = await scrape();
  });

  afterAll(async () => {
    await t?.close();
  });

  it('counts every accepted frame under source http_frames', () => {
    expect(sumOf(samples, 'ocean_telemetry_ingested_total', { source: 'http_frames' })).toBe(ACCEPTED);
    expect(sumOf(samples, 'ocean_records_ingested_total', { source: 'http_frames' })).toBe(acceptedRecords);
  });

  it('counts JSON readings under source http, and starts the stream source at zero', () => {
    expect(sumOf(samples, 'ocean_telemetry_ingested_total', { source: 'http' })).toBe(3);
    expect(sumOf(samples, 'ocean_records_ingested_total', { source: 'http' })).toBe(6);
    expect(samplesOf(samples, 'ocean_telemetry_ingested_total', { source: 'stream' }).map((s) => s.value)).toEqual([0]);
  });

  it('counts every rejected frame once, under the reason the endpoint answered', () => {
    expect(Object.fromEntries(answeredRejections)).toEqual(expectedRejections);
    const byReason = Object.fromEntries(samplesOf(samples, 'ocean_frames_rejected_total').map((s) => [s.labels.reason, s.value]));
    expect(byReason).toEqual(expectedRejections);
    expect(sumOf(samples, 'ocean_frames_rejected_total')).toBe(rejectedTotal);
  });

  it('labels request metrics with the route pattern, never the raw URL', () => {
    const route = '/api/ocean/users/:user_id';
    expect(sumOf(samples, 'ocean_requests_total', { method: 'GET', route, status_code: '200' })).toBe(2);
    expect(sumOf(samples, 'ocean_requests_total', { method: 'GET', route, status_code: '404' })).toBe(1);
    expect(sumOf(samples, 'ocean_request_duration_seconds_count', { method: 'GET', route, status_code: '200' })).toBe(2);
    expect(sumOf(samples, 'ocean_requests_total', { route: '/api/ocean/telemetry/frames', status_code: '200' })).toBe(1 + 7);

    const routes = new Set(
      samples.filter((s) => s.name === 'ocean_requests_total' || s.name.startsWith('ocean_request_duration_seconds')).map((s) => s.labels.route),
    );
    for (const r of routes) {
      expect(r).toBeDefined();
      expect(r).not.toMatch(/\/\d+(\/|$)|\?|424242|987654/);
    }
    // An unknown URL is counted under one fixed label, not under its path.
    expect(sumOf(samples, 'ocean_requests_total', { method: 'GET', status_code: '404' })).toBe(2);
  });

  it('records request durations in buckets that resolve sub-millisecond times', () => {
    const buckets = samplesOf(samples, 'ocean_request_duration_seconds_bucket', { route: '/api/ocean/users/:user_id', status_code: '200' });
    const bounds = buckets.map((b) => Number(b.labels.le)).filter(Number.isFinite);
    expect(Math.min(...bounds)).toBeLessThanOrEqual(0.0001);
    expect(Math.max(...bounds)).toBeGreaterThanOrEqual(5);
  });

  it('reports ingest commits, committed records and store operation durations', () => {
    expect(sumOf(samples, 'ocean_ingest_commit_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(sumOf(samples, 'ocean_committed_records_total')).toBe(acceptedRecords + 6);
    // Embedded: the committer's DuckDB appends; shared: the health probe of PostgreSQL (its only timed operation).
    const timed = SHARED ? { engine: 'postgresql', op: 'health_ping' } : { engine: 'duckdb', op: 'commit' };
    expect(sumOf(samples, 'ocean_database_query_duration_seconds_count', timed)).toBeGreaterThanOrEqual(1);
  });

  it('reports work-queue rows by state and database sizes from cheap counters', () => {
    // Only JSON readings are kept in the work queue; frames go straight to analytics.
    expect(sumOf(samples, 'ocean_telemetry_buffer_rows', { state: 'total' })).toBe(3);
    expect(sumOf(samples, 'ocean_telemetry_buffer_rows', { state: 'unprocessed' })).toBe(0);
    expect(sumOf(samples, 'ocean_telemetry_buffer_rows', { state: 'queued' })).toBe(3);
    const engines = SHARED ? ['postgresql'] : ['sqlite', 'duckdb'];
    for (const engine of engines) expect(sumOf(samples, 'ocean_database_size_bytes', { engine }), engine).toBeGreaterThan(0);
    expect(samplesOf(samples, 'ocean_database_size_bytes').map((s) => s.labels.engine).sort()).toEqual([...engines].sort());
    // The shared mode's pool, by state (embedded: no pool, no samples).
    const pool = Object.fromEntries(samplesOf(samples, 'ocean_database_pool_connections').map((s) => [s.labels.state, s.value]));
    if (SHARED) {
      expect(pool).toEqual({ total: expect.any(Number), idle: expect.any(Number), waiting: 0 });
      expect(pool.total).toBeGreaterThanOrEqual(1);
    } else expect(pool).toEqual({});
  });

  it('exports the ingest gauges and zeroed error counters without Redis', () => {
    expect(samplesOf(samples, 'ocean_ingest_pending').map((s) => s.value)).toEqual([0]);
    expect(samplesOf(samples, 'ocean_ingest_lag').map((s) => s.value)).toEqual([0]);
    expect(samplesOf(samples, 'ocean_ingest_connected').map((s) => s.value)).toEqual([0]);
    const errors = Object.fromEntries(samplesOf(samples, 'ocean_errors_total').map((s) => [s.labels.component, s.value]));
    expect(errors).toEqual({ http: 0, consumer: 0, committer: 0 });
  });

  it('exports the memory limit the alerts divide by, and Redis memory and dead letters at zero without Redis', () => {
    const one = (name: string) => {
      const values = samplesOf(samples, name).map((s) => s.value);
      expect(values, name).toHaveLength(1);
      return values[0]!;
    };
    const limit = one('ocean_memory_limit_bytes');
    expect(limit).toBeGreaterThan(0);
    expect(limit).toBeLessThanOrEqual(totalmem());
    expect(one('ocean_redis_memory_used_bytes')).toBe(0);
    expect(one('ocean_redis_maxmemory_bytes')).toBe(0);
    expect(one('ocean_dead_letters_total')).toBe(0);
  });

  it('exports the default process metrics with the ocean_ prefix', () => {
    for (const name of [
      'ocean_process_resident_memory_bytes',
      'ocean_process_cpu_seconds_total',
      'ocean_process_start_time_seconds',
      'ocean_nodejs_eventloop_lag_seconds',
      'ocean_nodejs_eventloop_lag_p99_seconds',
      'ocean_nodejs_heap_size_used_bytes',
    ]) {
      expect(samplesOf(samples, name).length, name).toBeGreaterThan(0);
    }
    expect(samples.filter((s) => !s.name.startsWith('ocean_'))).toEqual([]);
  });

  it('keeps counters separate between two apps in one process', async () => {
    const other = await createTestApp({ env: pressureSecret().env });
    try {
      const res = await other.app.inject({ method: 'GET', url: '/metrics' });
      const fresh = parsePromText(res.body);
      expect(sumOf(fresh, 'ocean_telemetry_ingested_total')).toBe(0);
      expect(sumOf(fresh, 'ocean_frames_rejected_total')).toBe(0);
    } finally {
      await other.close();
    }
  });
});

describe('metrics of the stream consumer', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let t: TestApp;
  const stream = `m${randomBytes(4).toString('hex')}:frames`;

  beforeAll(async () => {
    redisServer = await startRedis({ maxmemory: '64mb' });
    redis = new Redis(redisServer.url);
    t = await createTestApp({
      env: { ...pressureSecret().env, REDIS_URL: redisServer.url, INGEST_STREAM: stream, DEAD_LETTER_STREAM: `${stream}:dead`, INGEST_BLOCK_MS: '100' },
      start: true,
    });
  });

  afterAll(async () => {
    await t?.close();
    redis?.disconnect();
    await redisServer?.stop();
  });

  const scrape = async () => parsePromText((await t.app.inject({ method: 'GET', url: '/metrics' })).body);

  it('counts each dead letter once, when its batch is stored', async () => {
    await redis.xadd(stream, '*', 'frame_hex', 'not-hex');
    await redis.xadd(stream, '*', 'something', 'else');
    await waitFor(async () => (await redis.xlen(`${stream}:dead`)) === 2, { what: 'two dead letters' });
    // Counted when Redis has answered the XADD, a moment after the letters appear in the stream.
    await waitFor(async () => sumOf(await scrape(), 'ocean_dead_letters_total') >= 2, { what: 'dead letters counted' });
    expect(sumOf(await scrape(), 'ocean_dead_letters_total')).toBe(2);
  });

  it('reports free and total bytes of the file system of DATA_DIR from the health checks', async () => {
    const samples = await scrape();
    const free = sumOf(samples, 'ocean_disk_free_bytes');
    const size = sumOf(samples, 'ocean_disk_size_bytes');
    expect(free).toBeGreaterThan(0);
    expect(size).toBeGreaterThanOrEqual(free);
  });

  it("reports Redis' used memory and maxmemory", async () => {
    // Read every 2 s while the consumer is connected.
    const samples = await waitFor(async () => {
      const s = await scrape();
      return sumOf(s, 'ocean_redis_maxmemory_bytes') > 0 ? s : null;
    }, { what: 'Redis memory figures', timeoutMs: 10_000 });
    expect(sumOf(samples, 'ocean_redis_maxmemory_bytes')).toBe(64 * 1024 * 1024);
    const used = sumOf(samples, 'ocean_redis_memory_used_bytes');
    expect(used).toBeGreaterThan(0);
    expect(used).toBeLessThan(64 * 1024 * 1024);
  });
});
