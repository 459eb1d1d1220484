import Database from 'better-sqlite3';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countMeasurements } from '../helpers/measurements.js';
import { readRecordBatch, recordAt } from '../../src/operational/record-batch.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

/**
 * A DATA_DIR written by the release with integer user ids (test/fixtures/v1-data-dir, made by
 * that release's code: see its README) opens with the current code with nothing lost.
 */
const FIXTURE = join(import.meta.dirname, '../fixtures/v1-data-dir');
const TOKENS = {
  alice: 'pquRQlwrej4BX5H_bZ7NUMABgIW2TTIbyQlvxYYPYQc',
  bob: 'p52-LWosy0AxsZVEP4s0_hs3Gn4O_Nn_xE9p3ph-h2o',
};
/** The fixture was written at this time (unix seconds); the service runs on a clock an hour later, whatever the date. */
const WRITTEN_AT = 1_796_153_603;
const now = () => WRITTEN_AT + 3600;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Row = Record<string, unknown>;

/** Every row of the v1 tables that name a user, read from the fixture itself (never from the new code). */
function readV1(path: string) {
  const db = new Database(path, { readonly: true });
  try {
    const all = (sql: string) => db.prepare(sql).all() as Row[];
    return {
      version: db.pragma('user_version', { simple: true }),
      users: all('SELECT * FROM users ORDER BY id'),
      billing: all('SELECT * FROM billing ORDER BY user_id'),
      ledger: all('SELECT * FROM billing_ledger ORDER BY id'),
      sessions: all('SELECT * FROM sessions ORDER BY id'),
      devices: all('SELECT * FROM devices ORDER BY device_id'),
      metadata: all('SELECT * FROM metadata ORDER BY namespace, key'),
      buffer: all('SELECT * FROM telemetry_buffer ORDER BY id'),
    };
  } finally {
    db.close();
  }
}

describe('upgrade of a v1 data dir (integer user ids)', () => {
  let temp: TempDir;
  let dir: string;
  let v1: ReturnType<typeof readV1>;
  let t: TestApp;
  /** v1 integer id → the UUID it became. */
  let idOf: Map<number, string>;
  const auth = (token: string) => ({ authorization: `Bearer ${token}` });
  const get = (url: string, headers: Record<string, string> = t.admin) => t.app.inject({ method: 'GET', url: `/api/ocean${url}`, headers });

  beforeAll(async () => {
    temp = await makeTempDir('ocean-upgrade-');
    dir = temp.path;
    for (const file of ['ocean.db', 'analytics.duckdb']) await cp(join(FIXTURE, file), join(dir, file));
    v1 = readV1(join(dir, 'ocean.db'));
    t = await createTestApp({ dataDir: dir, now });
    const rows = t.service.store.db.prepare('SELECT id, legacy_id FROM users').all() as Array<{ id: string; legacy_id: number }>;
    idOf = new Map(rows.map((r) => [r.legacy_id, r.id]));
  });
  afterAll(async () => {
    await t?.close({ keepDir: true });
    await temp.cleanup();
  });

  it('is a v1 file with integer ids, and opens at the current schema version', () => {
    expect(v1.version).toBe(1);
    expect(v1.users.map((u) => typeof u.id)).toEqual(['number', 'number', 'number']);
    expect(t.service.store.db.pragma('user_version', { simple: true })).toBe(5);
    expect(t.service.store.db.pragma('foreign_key_check')).toEqual([]);
    expect(t.service.store.db.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  it('keeps every user, each with a fresh UUID, its times and status active', async () => {
    expect(idOf.size).toBe(v1.users.length);
    for (const old of v1.users) {
      const id = idOf.get(old.id as number)!;
      expect(id).toMatch(UUID);
      const res = await get(`/users/${id}`);
      expect(res.statusCode).toBe(200);
      const created = new Date((old.created_at as number) * 1000).toISOString();
      expect(res.json()).toEqual({ id, username: old.username, email: old.email, created_at: created, updated_at: created, status: 'active' });
    }
    expect(new Set(idOf.values()).size).toBe(v1.users.length);
  });

  it('keeps every session: the tokens still validate, for the same (renamed) user', async () => {
    expect((t.service.store.db.prepare('SELECT id, user_id, expires_at FROM sessions ORDER BY id').all() as Row[])).toEqual(
      v1.sessions.map((s) => ({ id: s.id, user_id: idOf.get(s.user_id as number), expires_at: s.expires_at })),
    );
    for (const [name, token] of Object.entries(TOKENS)) {
      const res = await t.app.inject({ method: 'POST', url: `/api/ocean/sessions/validate?token=${token}` });
      expect(res.statusCode, name).toBe(200);
      const legacy = v1.users.find((u) => u.username === name)!.id as number;
      const session = v1.sessions.find((s) => s.user_id === legacy)!;
      expect(res.json().session).toMatchObject({ id: session.id, user_id: idOf.get(legacy), username: name });
      // and the token opens the user's own resources
      expect((await get(`/users/${idOf.get(legacy)}`, auth(token))).statusCode).toBe(200);
    }
  });

  it('keeps every billing row and every ledger row; new ledger rows continue above the old ids', async () => {
    for (const old of v1.billing) {
      const userId = idOf.get(old.user_id as number)!;
      const res = await get(`/billing/${userId}`);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ id: expect.stringMatching(UUID), user_id: userId, plan: old.plan, credits: old.credits, usage: old.usage });
    }
    const ledger = t.service.store.db.prepare('SELECT * FROM billing_ledger ORDER BY id').all() as Row[];
    expect(ledger).toEqual(v1.ledger.map((l) => ({ ...l, user_id: idOf.get(l.user_id as number) })));
    const alice = idOf.get(1)!;
    const added = await t.app.inject({ method: 'POST', url: `/api/ocean/billing/${alice}/add-credits?amount=5`, headers: t.admin });
    expect(added.json()).toMatchObject({ credits: 75, ledger_id: Math.max(...v1.ledger.map((l) => l.id as number)) + 1 });
  });

  it('keeps devices with their owners mapped, and their secrets', () => {
    const devices = t.service.store.db.prepare('SELECT * FROM devices ORDER BY device_id').all() as Row[];
    // Owners from before the upgrade count as registered (origin admin): a signed frame never unassigns them.
    expect(devices).toEqual(
      v1.devices.map((d) => ({ ...d, owner_id: d.owner_id === null ? null : idOf.get(d.owner_id as number), origin: d.owner_id !== null || d.secret !== null ? 'admin' : 'frame' })),
    );
  });

  it('keeps metadata and profiles as stored', async () => {
    expect(t.service.store.db.prepare('SELECT * FROM metadata ORDER BY namespace, key').all()).toEqual(v1.metadata);
    expect((await get('/metadata/site')).json()).toMatchObject({ key: 'site', value: 'north' });
    expect((await get('/metadata/config')).json()).toMatchObject({ value: { floors: [1, 2], open: true } });
    const profile = await get('/profiles/p-alice', auth(TOKENS.alice));
    expect(profile.json()).toEqual({ profile_id: 'p-alice', sensor_id: 'alice-t1', timestamp: '2026-01-01T00:00:00.000Z', metadata: { depth_m: 12 } });
  });

  it('keeps the buffered readings and the DuckDB rows, and flushes the one left unflushed exactly once', async () => {
    // Every row keeps its id (DuckDB's high-water mark refers to them) and its records, now packed.
    const rows = t.service.store.db.prepare('SELECT * FROM telemetry_buffer ORDER BY id').all() as Row[];
    expect(rows.map((r) => ({ id: r.id, source: r.source, sensor_id: r.sensor_id, messages: r.messages, record_count: r.record_count }))).toEqual(
      v1.buffer.map((r) => ({ id: r.id, source: r.source, sensor_id: r.sensor_id, messages: 1, record_count: r.record_count })),
    );
    rows.forEach((row, i) => {
      const old = v1.buffer[i]!;
      const columns = readRecordBatch(row.records as Buffer);
      expect(Array.from({ length: columns.length }, (_, k) => recordAt(columns, k))).toEqual(
        (JSON.parse(old.records as string) as object[]).map((r) => ({ ...r, lab_id: old.lab_id, model_id: old.model_id })),
      );
      // A JSON reading keeps what the client sent (v1 kept it as JSON text) and stays in the work queue until marked.
      if (old.model_id === null) expect({ data: row.data, ts: row.ts, queued: row.queued }).toEqual({ data: (old.raw as Buffer).toString('utf8'), ts: old.ts, queued: old.processed === 0 ? 1 : 0 });
    });
    const queued = v1.buffer.filter((r) => r.model_id === null && r.processed === 0).length;
    expect(t.service.store.buffer.counts()).toEqual({ rows: 13, unprocessed: 1, queued });
    expect(await countMeasurements(t.service.analytics)).toBe(22);
    expect((await get('/analytics/sensor/alice-t2/stats', auth(TOKENS.alice))).json()).toMatchObject({ count: 2, avg_value: 16 });

    // As main does: the flusher resumes from DuckDB's high-water mark.
    await t.service.start();
    await t.service.flusher.flush();
    expect(await countMeasurements(t.service.analytics)).toBe(23);
    expect(t.service.store.buffer.counts()).toEqual({ rows: 13, unprocessed: 0, queued });
    const stats = (await get('/analytics/sensor/alice-t1/stats', auth(TOKENS.alice))).json();
    expect(stats).toMatchObject({ count: 21, max_value: 99 });
    await t.service.flusher.flush();
    expect(await countMeasurements(t.service.analytics)).toBe(23);
  });

  it('opens again with the same ids (the migration ran once)', async () => {
    await t.close({ keepDir: true });
    t = await createTestApp({ dataDir: dir, now });
    const rows = t.service.store.db.prepare('SELECT id, legacy_id FROM users').all() as Array<{ id: string; legacy_id: number }>;
    expect(new Map(rows.map((r) => [r.legacy_id, r.id]))).toEqual(idOf);
    expect((await t.app.inject({ method: 'POST', url: `/api/ocean/sessions/validate?token=${TOKENS.bob}` })).statusCode).toBe(200);
  });
});
