import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TestApp } from '../helpers/app.js';
import { appWithAliceAndBob, type TestUser } from '../helpers/sessions.js';

describe('HTTP telemetry', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  beforeEach(async () => ({ t, alice, bob } = await appWithAliceAndBob()));
  afterEach(() => t.close());

  const post = (url: string, payload: unknown, headers: Record<string, string>) =>
    t.app.inject({ method: 'POST', url: `/api/ocean/telemetry/${url}`, headers, payload: payload as object });
  const counts = () => t.service.store.buffer.counts();

  it('accepts one reading, stores it in the buffer and turns its numeric fields into records', async () => {
    const res = await post('ingest', { sensor_id: 'alice-s1', data: { temperature: 21.5, pressure: 101325, label: 'x', ok: true }, timestamp: 1_767_225_600 }, alice.auth);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'accepted', id: expect.any(Number), sensor_id: 'alice-s1', records: 2, buffered: true });
    const [row] = t.service.store.buffer.unprocessed(10);
    expect(row).toMatchObject({ id: res.json().id, sensor_id: 'alice-s1', ts: 1_767_225_600, record_count: 2 });
    expect(row!.records.map((r) => [r.metric, r.value])).toEqual([
      ['temperature', 21.5],
      ['pressure', 101325],
    ]);
    // The sensor is now Alice's.
    expect(t.service.store.devices.ownerOf('alice-s1')).toBe(alice.id);
  });

  it('accepts data as JSON text (as the original) and an ISO timestamp', async () => {
    const res = await post('ingest', { sensor_id: 'alice-s1', data: '{"v": 3}', timestamp: '2026-01-01T00:00:10Z' }, alice.auth);
    expect(res.statusCode).toBe(200);
    expect(res.json().records).toBe(1);
    expect(t.service.store.buffer.unprocessed(1)[0]!.ts).toBe(1_767_225_610);
  });

  it('defaults the timestamp to now', async () => {
    const before = Date.now() / 1000;
    await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, alice.auth);
    const ts = t.service.store.buffer.unprocessed(1)[0]!.ts;
    expect(ts).toBeGreaterThanOrEqual(before - 1);
    expect(ts).toBeLessThanOrEqual(Date.now() / 1000 + 1);
  });

  it.each([
    ['data that is not JSON', { sensor_id: 's', data: 'not json' }],
    ['data that is a JSON array', { sensor_id: 's', data: '[1,2]' }],
    ['data that is a number', { sensor_id: 's', data: 5 }],
    ['a missing sensor_id', { data: { v: 1 } }],
    ['a bad timestamp', { sensor_id: 's', data: { v: 1 }, timestamp: 'soon' }],
  ])('refuses %s with 422 and stores nothing', async (_name, payload) => {
    const res = await post('ingest', payload, alice.auth);
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ error: 'validation_error', statusCode: 422, message: expect.any(String) });
    expect(counts().rows).toBe(0);
  });

  it("answers 401 without a session and 403 for another user's sensor, storing nothing", async () => {
    expect((await post('ingest', { sensor_id: 's', data: { v: 1 } }, {})).statusCode).toBe(401);
    await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, alice.auth);
    const res = await post('ingest', { sensor_id: 'alice-s1', data: { v: 2 } }, bob.auth);
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ error: 'forbidden', statusCode: 403 });
    expect(counts().rows).toBe(1);
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
    expect(accepted).toHaveLength(150);
    expect(results.filter((r) => r.statusCode === 403)).toHaveLength(50);
    expect(new Set(accepted.map((r) => r.json().id)).size).toBe(150);
    expect(counts().rows).toBe(151);
    const stored = new Set(t.service.store.buffer.unprocessed(1000).map((r) => r.id));
    for (const r of accepted) expect(stored.has(r.json().id)).toBe(true);
  });

  it('ingests a batch in one go and answers with every id', async () => {
    const readings = Array.from({ length: 50 }, (_, i) => ({ sensor_id: `alice-s${i % 3}`, data: { v: i, w: i * 2 }, timestamp: 1_767_225_600 + i }));
    const res = await post('batch', readings, alice.auth);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ status: 'accepted', count: 50, records: 100 });
    expect(new Set(body.ids).size).toBe(50);
    expect(counts().rows).toBe(50);
  });

  it('validates a whole batch before storing any of it', async () => {
    const readings: unknown[] = Array.from({ length: 20 }, (_, i) => ({ sensor_id: 'alice-s1', data: { v: i } }));
    readings[17] = { sensor_id: 'alice-s1', data: 'broken' };
    const res = await post('batch', readings, alice.auth);
    expect(res.statusCode).toBe(422);
    expect(res.json().message).toMatch(/17/);
    expect(counts().rows).toBe(0);
  });

  it("stores nothing of a batch that touches another user's sensor", async () => {
    await post('ingest', { sensor_id: 'bob-s1', data: { v: 1 } }, bob.auth);
    const readings = [
      { sensor_id: 'alice-new', data: { v: 1 } },
      { sensor_id: 'bob-s1', data: { v: 2 } },
    ];
    expect((await post('batch', readings, alice.auth)).statusCode).toBe(403);
    expect(counts().rows).toBe(1);
    expect(t.service.store.devices.ownerOf('alice-new')).toBeUndefined();
  });

  it('accepts a batch of 10,000 and refuses 10,001 or an empty one', async () => {
    const make = (n: number) => Array.from({ length: n }, (_, i) => ({ sensor_id: 'a', data: { v: i }, timestamp: 1_767_225_600 }));
    const ok = await post('batch', make(10_000), alice.auth);
    expect(ok.statusCode).toBe(200);
    expect(ok.json().count).toBe(10_000);
    expect((await post('batch', make(10_001), alice.auth)).statusCode).toBe(422);
    expect((await post('batch', [], alice.auth)).statusCode).toBe(422);
    expect(counts().rows).toBe(10_000);
  });

  it('never reports success when the write fails (5xx, nothing stored)', async () => {
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
    expect(counts().rows).toBe(0);
    expect((await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, alice.auth)).statusCode).toBe(200);
  });

  it('answers 5xx, not success, when the database is gone', async () => {
    t.service.store.close();
    const res = await post('ingest', { sensor_id: 'alice-s1', data: { v: 1 } }, t.admin);
    expect(res.statusCode).toBeGreaterThanOrEqual(500);
    expect(res.json()).toMatchObject({ statusCode: res.statusCode });
    expect(res.body).not.toContain('accepted');
  });

  it('lists unprocessed rows for the admin with a limit of 1..10000', async () => {
    await post('batch', Array.from({ length: 5 }, (_, i) => ({ sensor_id: 'alice-s1', data: { v: i } })), alice.auth);
    const res = await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed?limit=3', headers: t.admin });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.count).toBe(3);
    expect(body.data[0]).toMatchObject({ sensor_id: 'alice-s1', processed: false, record_count: 1, records: [expect.objectContaining({ metric: 'v', value: 0 })] });
    for (const q of ['?limit=0', '?limit=10001', '?limit=abc']) {
      expect((await t.app.inject({ method: 'GET', url: `/api/ocean/telemetry/unprocessed${q}`, headers: t.admin })).statusCode).toBe(422);
    }
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed', headers: alice.auth })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed' })).statusCode).toBe(401);
  });

  it('marks rows processed from an array of ids or {ids}, counting only real changes', async () => {
    const { ids } = (await post('batch', Array.from({ length: 4 }, (_, i) => ({ sensor_id: 'alice-s1', data: { v: i } })), alice.auth)).json();
    const first = await post('mark-processed', [ids[0], ids[1]], t.admin);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({ marked: 2, requested: 2 });
    const again = await post('mark-processed', { ids: [ids[1], ids[2], 99999] }, t.admin);
    expect(again.json()).toEqual({ marked: 1, requested: 3 });
    expect(counts()).toEqual({ rows: 4, unprocessed: 1 });
    const left = (await t.app.inject({ method: 'GET', url: '/api/ocean/telemetry/unprocessed', headers: t.admin })).json();
    expect(left.data.map((r: { id: number }) => r.id)).toEqual([ids[3]]);
    expect((await post('mark-processed', ['x'], t.admin)).statusCode).toBe(422);
    expect((await post('mark-processed', [ids[3]], alice.auth)).statusCode).toBe(403);
  });
});
