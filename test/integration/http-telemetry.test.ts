import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, SHARED, type TestApp } from '../helpers/app.js';
import { appWithAliceAndBob, createUserWithSession, type TestUser } from '../helpers/sessions.js';

/** The work queue's counters, and its rows not yet in analytics, as the admin's status reports them. */
const statusCounts = async (t: TestApp) =>
  (await t.app.inject({ method: 'GET', url: '/api/ocean/status', headers: t.admin })).json().telemetry_buffer as { rows: number; unprocessed: number; queued: number };

describe('HTTP telemetry', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  beforeEach(async () => ({ t, alice, bob } = await appWithAliceAndBob()));
  afterEach(() => t.close());

  const post = (url: string, payload: unknown, headers: Record<string, string>) =>
    t.app.inject({ method: 'POST', url: `/api/ocean/telemetry/${url}`, headers, payload: payload as object });
  /** The work queue's counters, and its rows not yet in analytics, as the admin's status reports them. */
  const counts = () => statusCounts(t);
  const queue = () => t.store.buffer.queued(10_000);
  const duck = (sensor: string) => t.measurements(sensor);

  it('accepts one reading, keeps its data as sent in the work queue and turns its numeric fields into records', async () => {
    const data = { temperature: 21.5, pressure: 101325, label: 'x', ok: true, nested: { a: 1 } };
    const res = await post('ingest', { sensor_id: 'alice-s1', data, timestamp: 1_767_225_600 }, alice.auth);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ id: expect.any(Number), sensor_id: 'alice-s1', buffered: true, timestamp: expect.any(String), status: 'accepted', records: 2 });
    expect((await queue())).toEqual([expect.objectContaining({ id: res.json().id, sensor_id: 'alice-s1', ts: 1_767_225_600, data: JSON.stringify(data), record_count: 2 })]);
    await t.settle();
    expect(await duck('alice-s1')).toEqual([
      ['pressure', 101325],
      ['temperature', 21.5],
    ]);
    // The sensor is now Alice's.
    expect(await t.store.devices.ownerOf('alice-s1')).toBe(alice.id);
  });

  it.each([
    ['JSON text of an object', '{"v": 3, "note": "kept"}', [['v', 3]]],
    ['a bare number', '21.5', [['value', 21.5]]],
    ['k=v pairs', 'temp=20.5;hum=40;state=on', [['hum', 40], ['temp', 20.5]]],
    ['plain text', 'door opened', []],
    ['a JSON array', '[1,2,3]', []],
    ['a JSON number', 7, [['value', 7]]],
  ])('accepts data as %s, keeps it exactly as sent and records its numbers', async (_name, data, records) => {
    const res = await post('ingest', { sensor_id: 'alice-s1', data, timestamp: '2026-01-01T00:00:10Z' }, alice.auth);
    expect(res.statusCode).toBe(200);
    expect(res.json().records).toBe(records.length);
    expect((await queue())[0]).toMatchObject({ data: typeof data === 'string' ? data : JSON.stringify(data), ts: 1_767_225_610 });
    await t.settle();
    expect(await duck('alice-s1')).toEqual(records);
  });

  it('defaults the timestamp to now, also when it is null', async () => {
    const before = Date.now() / 1000;
    await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, alice.auth);
    await post('ingest', { sensor_id: 'alice-s1', data: { v: 2 }, timestamp: null }, alice.auth);
    for (const row of (await queue())) {
      expect(row.ts).toBeGreaterThanOrEqual(before - 1);
      expect(row.ts).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    }
  });

  it('takes a numeric sensor id as its text and a sensor id with a space', async () => {
    expect((await post('ingest', { sensor_id: 42, data: { v: 1 } }, alice.auth)).json()).toMatchObject({ sensor_id: '42' });
    expect((await post('ingest', { sensor_id: 'lab 3 probe', data: { v: 1 } }, alice.auth)).statusCode).toBe(200);
    expect((await queue()).map((r) => r.sensor_id)).toEqual(['42', 'lab 3 probe']);
  });

  const deep = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
  it.each([
    ['a missing sensor_id', { data: { v: 1 } }, { loc: ['body', 'sensor_id'] }],
    ['a bad timestamp', { sensor_id: 's', data: { v: 1 }, timestamp: 'soon' }, { loc: ['body', 'timestamp'] }],
    ['a value beyond ±10^15', { sensor_id: 's', data: { v: 1e200 } }, { msg: expect.stringMatching(/outside/) }],
    // As the raw body: serialising it here would exhaust the test's own stack.
    ['data nested 5,000 deep (as an object)', `{"sensor_id":"s","data":${deep(5000)}}`, { msg: expect.stringMatching(/nested/) }],
    ['data nested 5,000 deep (as text)', { sensor_id: 's', data: deep(5000) }, { msg: expect.stringMatching(/nested/) }],
    ['data over 64 KiB', { sensor_id: 's', data: 'x'.repeat(65 * 1024) }, { msg: expect.stringMatching(/larger/) }],
    ['more than 1,000 numeric fields', { sensor_id: 's', data: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`m${i}`, i])) }, { msg: expect.stringMatching(/numeric fields/) }],
  ])('refuses %s with 422 and stores nothing', async (_name, payload, issue) => {
    const res =
      typeof payload === 'string'
        ? await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: { ...alice.auth, 'content-type': 'application/json' }, payload })
        : await post('ingest', payload, alice.auth);
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ error: 'validation_error', statusCode: 422, detail: [expect.objectContaining(issue)] });
    expect((await counts()).rows).toBe(0);
  });

  it("answers 401 without a session and 403 for another user's sensor, storing nothing", async () => {
    expect((await post('ingest', { sensor_id: 's', data: { v: 1 } }, {})).statusCode).toBe(401);
    await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, alice.auth);
    const res = await post('ingest', { sensor_id: 'alice-s1', data: { v: 2 } }, bob.auth);
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ error: 'forbidden', statusCode: 403, detail: expect.any(String) });
    expect((await counts()).rows).toBe(1);
  });

  it('refuses U+0000 in text kept as sent (data, field names, user names) with 422 and stores nothing; inside JSON data it is an escape', async () => {
    for (const data of ['a\u0000b', { 'v\u0000': 1 }]) {
      const res = await post('ingest', { sensor_id: 'alice-s1', data }, alice.auth);
      expect(res.statusCode, JSON.stringify(data)).toBe(422);
      expect(res.json().detail[0].msg).toContain('U+0000');
    }
    const user = await t.app.inject({ method: 'POST', url: '/api/ocean/users', headers: t.admin, payload: { username: 'a\u0000b', email: 'a@example.com' } });
    expect(user.statusCode).toBe(422);
    expect((await counts()).rows).toBe(0);
    const escaped = await post('ingest', { sensor_id: 'alice-s1', data: { note: 'a\u0000b', v: 1 } }, alice.auth);
    expect(escaped.statusCode).toBe(200);
    expect((await queue())[0]!.data).toBe(JSON.stringify({ note: 'a\u0000b', v: 1 }));
  });

  it('answers each of many concurrent ingests on its own: accepted ones stored, refused ones not', async () => {
    await post('ingest', { sensor_id: 'alice-s1', data: { v: 0 } }, alice.auth);
    const requests = Array.from({ length: 200 }, (_, i) =>
      i % 4 === 3
        ? post('ingest', { sensor_id: 'alice-s1', data: { v: i } }, bob.auth) // Alice's sensor: 403
        : post('ingest', { sensor_id: i % 2 ? 'alice-s1' : 'alice-s2', data: { v: i, w: 1 } }, alice.auth),
    );
    const results = await Promise.all(requests);
    const accepted = results.filter((r) => r.statusCode === 200);
    expect(results.filter((r) => r.statusCode !== 200 && r.statusCode !== 403).map((r) => r.body)).toEqual([]);
    expect(accepted).toHaveLength(150);
    expect(results.filter((r) => r.statusCode === 403)).toHaveLength(50);
    expect(new Set(accepted.map((r) => r.json().id)).size).toBe(150);
    expect((await counts()).rows).toBe(151);
    const stored = new Set((await queue()).map((r) => r.id));
    for (const r of accepted) expect(stored.has(r.json().id)).toBe(true);
  });

  it('ingests a batch in one go and answers with every id; an empty batch is fine', async () => {
    const readings = Array.from({ length: 50 }, (_, i) => ({ sensor_id: `alice-s${i % 3}`, data: { v: i, w: i * 2 }, timestamp: 1_767_225_600 + i }));
    const res = await post('batch', readings, alice.auth);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toEqual({ count: 50, ids: expect.any(Array), timestamp: expect.any(String), status: 'accepted', records: 100 });
    expect(new Set(body.ids).size).toBe(50);
    expect((await counts()).rows).toBe(50);
    expect((await post('batch', [], alice.auth)).json()).toMatchObject({ count: 0, ids: [] });
  });

  it('validates a whole batch before storing any of it', async () => {
    const readings: unknown[] = Array.from({ length: 20 }, (_, i) => ({ sensor_id: 'alice-s1', data: { v: i } }));
    readings[17] = { sensor_id: 'alice-s1', data: { v: 1e300 } };
    const res = await post('batch', readings, alice.auth);
    expect(res.statusCode).toBe(422);
    expect(res.json().detail[0].loc).toEqual(['body', 17, 'data']);
    expect((await counts()).rows).toBe(0);
  });

  it("stores nothing of a batch that touches another user's sensor", async () => {
    await post('ingest', { sensor_id: 'bob-s1', data: { v: 1 } }, bob.auth);
    const readings = [
      { sensor_id: 'alice-new', data: { v: 1 } },
      { sensor_id: 'bob-s1', data: { v: 2 } },
    ];
    expect((await post('batch', readings, alice.auth)).statusCode).toBe(403);
    expect((await counts()).rows).toBe(1);
    expect(await t.store.devices.ownerOf('alice-new')).toBeUndefined();
  });

  it('accepts a batch of 10,000 and refuses 10,001', async () => {
    const make = (n: number) => Array.from({ length: n }, (_, i) => ({ sensor_id: 'a', data: { v: i }, timestamp: 1_767_225_600 }));
    const ok = await post('batch', make(10_000), alice.auth);
    expect(ok.statusCode).toBe(200);
    expect(ok.json().count).toBe(10_000);
    expect((await post('batch', make(10_001), alice.auth)).statusCode).toBe(422);
    expect((await counts()).rows).toBe(10_000);
  });

  // Both make the embedded SQLite refuse writes; the shared mode's equivalent (PostgreSQL down) is in postgres-service.test.ts.
  it.skipIf(SHARED)('never reports success when the write fails (5xx, nothing stored)', async () => {
    t.service.store.db.pragma('query_only = ON'); // reads (auth) still work, every write fails
    try {
      const one = await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, alice.auth);
      expect(one.statusCode).toBe(500);
      expect(one.json()).toEqual({ detail: 'internal error', error: 'internal_error', message: 'internal error', statusCode: 500 });
      const batch = await post('batch', [{ sensor_id: 'alice-s1', data: { v: 1 } }], alice.auth);
      expect(batch.statusCode).toBe(500);
      expect(batch.body).not.toContain('accepted');
      const credits = await t.app.inject({ method: 'POST', url: `/api/ocean/billing/${alice.id}/add-credits?amount=1`, headers: t.admin });
      expect(credits.statusCode).toBe(500);
    } finally {
      t.service.store.db.pragma('query_only = OFF');
    }
    expect((await counts()).rows).toBe(0);
    expect((await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, alice.auth)).statusCode).toBe(200);
  });

  it.skipIf(SHARED)('answers 5xx, not success, when the database is gone', async () => {
    t.service.store.close();
    const res = await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, t.admin);
    expect(res.statusCode).toBeGreaterThanOrEqual(500);
    expect(res.json()).toMatchObject({ statusCode: res.statusCode });
    expect(res.body).not.toContain('accepted');
  });

  it('lists the work queue for the admin, data exactly as sent, with a limit of 1..10000', async () => {
    await post('batch', Array.from({ length: 5 }, (_, i) => ({ sensor_id: 'alice-s1', data: `v=${i}`, timestamp: 1_767_225_600 + i })), alice.auth);
    const res = await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed?limit=3', headers: t.admin });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.count).toBe(3);
    expect(body.data[0]).toEqual({ id: expect.any(Number), sensor_id: 'alice-s1', timestamp: '2026-01-01T00:00:00.000Z', data: 'v=0', source: 'http', records: 1, created_at: expect.any(String) });
    for (const q of ['?limit=0', '?limit=10001', '?limit=abc']) {
      expect((await t.app.inject({ method: 'GET', url: `/api/ocean/telemetry/unprocessed${q}`, headers: t.admin })).statusCode).toBe(422);
    }
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed', headers: alice.auth })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed' })).statusCode).toBe(401);
  });

  it('keeps readings in the work queue across the flush into DuckDB until mark-processed names them', async () => {
    const { ids } = (await post('batch', Array.from({ length: 4 }, (_, i) => ({ sensor_id: 'alice-s1', data: { v: i } })), alice.auth)).json();
    await t.settle();
    expect(await counts()).toEqual({ rows: 4, unprocessed: 0, queued: 4 });
    expect((await queue()).map((r) => r.id)).toEqual(ids);
    const first = await post('mark-processed', [ids[0], ids[1]], t.admin);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ processed: 2, success: true, requested: 2 });
    const again = await post('mark-processed', { ids: [ids[1], ids[2], 99999] }, t.admin);
    expect(again.json()).toEqual({ processed: 1, success: true, requested: 3 });
    expect(await counts()).toEqual({ rows: 4, unprocessed: 0, queued: 1 });
    const left = (await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed', headers: t.admin })).json();
    expect(left.data.map((r: { id: number }) => r.id)).toEqual([ids[3]]);
    expect((await post('mark-processed', ['x'], t.admin)).statusCode).toBe(422);
    expect((await post('mark-processed', [ids[3]], alice.auth)).statusCode).toBe(403);
    // Analytics has every reading, marked or not.
    expect(await duck('alice-s1')).toHaveLength(4);
  });
});

describe('buffer retention', () => {
  it('deletes processed readings past BUFFER_RETENTION_S and keeps unprocessed ones, however old, until marked', async () => {
    // The restarted service's clock runs two days ahead of the rows' creation times: every row is past the one-day retention.
    const clock = Math.floor(Date.now() / 1000) + 2 * 86_400;
    let t = await createTestApp();
    try {
      const alice = await createUserWithSession(t, 'alice');
      const post = (url: string, payload: unknown, headers: Record<string, string>) =>
        t.app.inject({ method: 'POST', url: `/api/ocean/telemetry/${url}`, headers, payload: payload as object });
      const { ids } = (await post('batch', Array.from({ length: 3 }, (_, i) => ({ sensor_id: 'alice-s1', data: { v: i } })), alice.auth)).json();
      await t.settle();
      expect(await statusCounts(t)).toEqual({ rows: 3, unprocessed: 0, queued: 3 });
      expect((await t.store.buffer.queued(10)).map((r) => r.id)).toEqual(ids);

      expect((await post('mark-processed', [ids[0]], t.admin)).statusCode).toBe(200);
      // Retention runs at start and then every minute: a restart over the same data dir runs it now.
      await t.close({ keepDir: true });
      t = await createTestApp({ dataDir: t.dataDir, now: () => clock, ...(t.database ? { database: t.database } : {}) });
      expect(await statusCounts(t)).toEqual({ rows: 2, unprocessed: 0, queued: 2 });
      const listed = (await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed', headers: t.admin })).json();
      expect(listed.data.map((r: { id: number }) => r.id)).toEqual(ids.slice(1));
      // Analytics keeps all three readings: retention takes work-queue rows only.
      expect(await t.count('alice-s1')).toBe(3);
    } finally {
      await t.close();
    }
  });
});
