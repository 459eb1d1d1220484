import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadNanogridataConfig } from '../../src/config.js';
import { DecodePool } from '../../src/ingest/decode-pool.js';
import type { CommitOptions, IngestUnit } from '../../src/ingest/pipeline.js';
import { encodeFrame, pressurePayload } from '../../src/nanogridata/encoder.js';
import { createPgAnalytics } from '../../src/postgres/analytics.js';
import type { Pg } from '../../src/postgres/connect.js';
import { foldActivity } from '../../src/postgres/activity.js';
import { PgIngest } from '../../src/postgres/ingest.js';
import { openPgStore } from '../../src/postgres/store.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { pressureSecret, waitFor } from '../helpers/frames.js';
import { rounded } from '../helpers/measurements.js';
import { skipWithoutPostgres, usePostgres } from '../helpers/postgres-server.js';

const NOW = 1_767_225_600;
const { secret, env } = pressureSecret();
const frame = (deviceId: string, k: number, options: { level?: number; payloadType?: number; secret?: Buffer } = {}) =>
  encodeFrame({
    modelId: 0x10,
    level: options.level ?? 1 + (k % 2),
    timestamp: NOW,
    secret: options.secret ?? secret,
    ...(options.payloadType !== undefined ? { payloadType: options.payloadType } : {}),
    payload:
      options.payloadType === undefined
        ? pressurePayload({ deviceId, labId: 'LAB-1', entries: Array.from({ length: 1 + (k % 3) }, (_, e) => ({ ts: NOW - 10 + k + e / 10, value: 100_000 + k * 7 + e })) })
        : { device_id: deviceId, alarm: `door-${k}` },
  });

const reading = (sensor: string, value: number) => ({
  kind: 'reading' as const,
  reading: { sensor_id: sensor, timestamp: NOW - 5, data: JSON.stringify({ t: value }), values: [['t', value]] as Array<[string, number]> },
});

/** Outcomes without the work-queue ids (each store numbers its own rows). */
const comparable = (outcomes: readonly object[]) => outcomes.map(({ bufferId: _b, ...o }: { bufferId?: number }) => o);

describe.skipIf(skipWithoutPostgres())('ingest into PostgreSQL (the shared mode)', () => {
  const pg = usePostgres();
  const open: Array<{ close(): Promise<unknown> }> = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((o) => o.close()));
  });

  async function embedded(): Promise<TestApp> {
    const t = await createTestApp({ env, now: () => NOW });
    open.push(t);
    return t;
  }
  function instance(pool: Pg): PgIngest {
    const decoder = new DecodePool(loadNanogridataConfig(env), pino({ level: 'silent' }), 1);
    open.push(decoder);
    return new PgIngest({ pool, decoder, now: () => NOW });
  }

  it('answers a batch unit for unit as the embedded pipeline does, and stores the same readings', async () => {
    const t = await embedded();
    const [pool] = await pg.database();
    const ingest = instance(pool!);
    const store = openPgStore(pool!, { sessionTtlS: 3600 });
    // A user claims C-1 by JSON in both: frames for it are held for the admin.
    const embeddedUser = t.service.store.users.create({ username: 'alice', email: 'alice@example.com' }).id;
    t.service.store.devices.claimForUser('C-1', embeddedUser);
    await store.devices.claimForUser('C-1', (await store.users.create({ username: 'alice', email: 'alice@example.com' })).id);
    // An admin registers H-1 in both: unsigned JSON readings cannot write to it.
    t.service.store.devices.register({ deviceId: 'H-1', ownerId: null });
    await store.devices.register({ deviceId: 'H-1', ownerId: null });

    const good = Array.from({ length: 12 }, (_, k) => frame(`P-${k % 4}`, k));
    const units: IngestUnit[] = [
      ...good.map((bytes) => ({ kind: 'frame' as const, bytes })),
      { kind: 'frame', bytes: good[3]! }, // the same frame again in one body: a replay
      { kind: 'frame', bytes: frame('P-9', 1, { secret: Buffer.alloc(32, 1) }) }, // bad_mac
      { kind: 'frame', bytes: frame('C-1', 2) }, // claim_conflict
      { kind: 'frame', bytes: frame('E-1', 3, { payloadType: 3 }) }, // an event
      { kind: 'frame', bytes: frame('P-1', 4, { level: 0 }) }, // unsigned, refused by default
      { kind: 'invalid', reason: 'bad_entry', detail: 'no frame field' },
      reading('J-1', 21.5),
      reading('H-1', 3),
    ];
    const options: CommitOptions = { source: 'http_frames', anonymous: true };
    const viaEmbedded = await t.service.pipeline.commit(await t.service.pipeline.prepare(units), options);
    const viaPg = await ingest.commit(await ingest.prepare(units), options);
    expect(comparable(viaPg)).toEqual(comparable(viaEmbedded));
    expect(viaPg.filter((o) => o.ok)).toHaveLength(14);
    expect(new Set(viaPg.filter((o) => !o.ok).map((o) => (o as { reason: string }).reason))).toEqual(
      new Set(['replay', 'bad_mac', 'claim_conflict', 'bad_entry', 'device_authority', 'unsigned']),
    );

    // The same body again: every frame a replay, in both.
    const again = units.filter((u) => u.kind === 'frame');
    expect(comparable(await ingest.commit(await ingest.prepare(again), options))).toEqual(
      comparable(await t.service.pipeline.commit(await t.service.pipeline.prepare(again), options)),
    );

    // The same readings, activity, events and conflicts on both.
    await t.service.committer.whenIdle();
    const analytics = createPgAnalytics(pool!, { maxExports: 1, timeoutMs: 10_000 });
    for (const sensor of ['P-0', 'P-1', 'P-2', 'P-3', 'J-1']) {
      expect(rounded(await analytics.sensorStats(sensor)), sensor).toEqual(rounded(await t.service.analytics.sensorStats(sensor)));
    }
    expect((await analytics.sensors()).sensors.map((s) => [s.sensor_id, s.count])).toEqual(
      (await t.service.analytics.sensors()).sensors.map((s) => [s.sensor_id, s.count]),
    );
    // Both count device activity a moment after the commit: the embedded side effects within 500 ms, the shared fold when it runs.
    await foldActivity(pool!, NOW);
    await waitFor(() => (t.service.store.devices.get('P-3')?.frames ?? 0) > 0, { what: 'embedded device activity' });
    // Each store gave alice its own id: compared as owned or not.
    const device = (d: { created_at: number; owner_id: string | null } | undefined) => d && { ...d, created_at: 0, owner_id: d.owner_id !== null };
    for (const id of ['P-0', 'P-3', 'E-1', 'J-1', 'C-1']) expect(device(await store.devices.get(id)), id).toEqual(device(t.service.store.devices.get(id)));
    expect((await store.devices.conflicts()).map((c) => [c.device_id, c.frames])).toEqual(t.service.store.devices.conflicts().map((c) => [c.device_id, c.frames]));
    const events = (list: Array<{ id: number; created_at: string }>) => list.map(({ id: _i, created_at: _c, ...e }) => e);
    expect(events(await store.deviceEvents.list('E-1', { limit: 10 }))).toEqual(events(t.service.store.deviceEvents.list('E-1', { limit: 10 })));
  });

  it('stores each stream entry once when two instances read it, and knows a redelivery from a replay', async () => {
    const [a, b] = await pg.database(2);
    const [ia, ib] = [instance(a!), instance(b!)];
    const frames = Array.from({ length: 600 }, (_, k) => frame(`S-${k % 20}`, k));
    const total = frames.reduce((n, _, k) => n + 1 + (k % 3), 0);
    // Entry k holds frame k; instance A takes entries 0-399, B 200-599 (200 delivered to both: one was presumed dead).
    const batch = (from: number, to: number) => {
      const units: IngestUnit[] = frames.slice(from, to).map((bytes) => ({ kind: 'frame', bytes }));
      const tags = Int32Array.from({ length: to - from }, (_, k) => 1 + from + k);
      return { units, options: { source: 'stream', anonymous: true, tags } as CommitOptions };
    };
    const run = async (ingest: PgIngest, from: number, to: number) => {
      const outcomes = [];
      for (let at = from; at < to; at += 100) {
        const { units, options } = batch(at, at + 100);
        outcomes.push(...(await ingest.commit(await ingest.prepare(units), options)));
      }
      return outcomes;
    };
    const [oa, ob] = await Promise.all([run(ia, 0, 400), run(ib, 200, 600)]);
    const all = [...oa, ...ob];
    expect(all.filter((o) => o.ok && !o.redelivery)).toHaveLength(600);
    expect(all.filter((o) => o.ok && o.redelivery)).toHaveLength(200);
    expect(all.filter((o) => !o.ok)).toHaveLength(0);
    expect((await a!.query('SELECT count(*) AS n FROM readings')).rows[0].n).toBe(total);
    // Device activity counted once per stored frame, whichever instance stored it (folded by one of them).
    await Promise.all([foldActivity(a!, NOW), foldActivity(b!, NOW)]);
    await foldActivity(a!, NOW);
    expect((await a!.query('SELECT sum(frames)::bigint AS f, sum(records)::bigint AS r FROM devices')).rows[0]).toEqual({ f: 600, r: total });
    // The same frame in another entry (another tag) is a replay.
    const replayed = await ia.commit(await ia.prepare([{ kind: 'frame', bytes: frames[5]! }]), { source: 'stream', anonymous: true, tags: Int32Array.of(99_999) });
    expect(replayed).toEqual([{ ok: false, reason: 'replay' }]);
  });

  it("holds the frames of a sensor another instance claims while the batch is being stored (the claim's row appears under it)", async () => {
    const [pool] = await pg.database();
    const ingest = instance(pool!);
    const store = openPgStore(pool!, { sessionTtlS: 3600 });
    const alice = (await store.users.create({ username: 'alice', email: 'alice@example.com' })).id;
    const units: IngestUnit[] = [{ kind: 'frame', bytes: frame('RACE-1', 1) }, { kind: 'frame', bytes: frame('OTHER-1', 2) }];
    const prepared = await ingest.prepare(units);
    // Another instance's claim of RACE-1, not yet committed when this batch looks its sensors up.
    const other = await pool!.connect();
    await other.query('BEGIN');
    await other.query("INSERT INTO devices(device_id, owner_id, created_at, origin) VALUES ('RACE-1', $1, 0, 'claim')", [alice]);
    const committing = ingest.commit(prepared, { source: 'http_frames' });
    // The batch's transaction waits for the claim's row; then the claim commits.
    await waitFor(async () => (await pool!.query("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).rows[0].n > 0, { what: 'the batch waiting for the claim' });
    await other.query('COMMIT');
    other.release();
    const outcomes = await committing;
    expect(outcomes[0]).toMatchObject({ ok: false, reason: 'claim_conflict' });
    expect(outcomes[1]).toMatchObject({ ok: true });
    expect((await store.devices.conflicts()).map((c) => [c.device_id, c.claimed_by, c.frames])).toEqual([['RACE-1', alice, 1]]);
    expect((await createPgAnalytics(pool!, { maxExports: 1, timeoutMs: 10_000 }).sensors()).sensors.map((x) => x.sensor_id)).toEqual(['OTHER-1']);
    // Held, not remembered: the same frame once the admin has settled the sensor is stored.
    await store.devices.register({ deviceId: 'RACE-1', ownerId: alice });
    expect(await ingest.commit(await ingest.prepare([units[0]!]), { source: 'http_frames' })).toEqual([{ ok: true, records: 2 }]);
  });

  it('keeps the work queue of JSON readings as the embedded store does (unprocessed, mark-processed)', async () => {
    const t = await embedded();
    const [pool] = await pg.database();
    const ingest = instance(pool!);
    const store = openPgStore(pool!, { sessionTtlS: 3600 });
    const batch = [1, 2, 3, 4].map((v) => reading(`Q-${v % 2}`, v).reading);
    const options: CommitOptions = { source: 'http' };
    const ids = (outcomes: Array<{ ok: boolean; bufferId?: number }>) => outcomes.map((o) => o.bufferId!);
    const [e, p] = [ids(t.service.pipeline.ingestReadings(batch, options)), ids(await ingest.ingestReadings(batch, options))];
    const queue = (rows: Array<{ id: number; created_at: number }>, own: number[]) => rows.map((r) => ({ ...r, id: own.indexOf(r.id), created_at: typeof r.created_at }));
    expect(queue(await store.buffer.queued(10), p)).toEqual(queue(t.service.store.buffer.queued(10), e));
    expect(queue(await store.buffer.queued(2, p[1]), p)).toEqual(queue(t.service.store.buffer.queued(2, e[1]), e));
    expect(await store.buffer.markProcessed([p[0]!, p[2]!, p[2]!, 999_999])).toBe(t.service.store.buffer.markProcessed([e[0]!, e[2]!, e[2]!, 999_999]));
    expect(queue(await store.buffer.queued(10), p)).toEqual(queue(t.service.store.buffer.queued(10), e));
    expect((await store.buffer.counts()).queued).toBe(t.service.store.buffer.counts().queued);
    // Processed rows past the retention go; queued ones stay however old.
    expect(await store.buffer.prune(NOW + 10)).toBe(2);
    expect((await store.buffer.counts())).toEqual({ rows: 2, queued: 2 });
  });

  it('stores JSON readings of a user with the claim, or none of them (403) when one sensor is another user\'s', async () => {
    const [pool] = await pg.database();
    const ingest = instance(pool!);
    const store = openPgStore(pool!, { sessionTtlS: 3600 });
    const alice = (await store.users.create({ username: 'alice', email: 'alice@example.com' })).id;
    const bob = (await store.users.create({ username: 'bob', email: 'bob@example.com' })).id;
    const r = (sensor: string, v: number) => reading(sensor, v).reading;
    const stored = await ingest.ingestReadings([r('A-1', 1), r('A-2', 2)], { source: 'http', owner: alice });
    expect(stored.map((o) => o.ok && o.records)).toEqual([1, 1]);
    await expect(ingest.ingestReadings([r('B-1', 1), r('A-1', 5)], { source: 'http', owner: bob })).rejects.toMatchObject({ statusCode: 403 });
    expect(await store.devices.ownerOf('B-1')).toBeUndefined();
    expect((await pool!.query('SELECT count(*) AS n FROM readings')).rows[0].n).toBe(2);
    expect((await store.billing.get(alice))!.usage).toBe(0);
    expect(await foldActivity(pool!, NOW)).toEqual({ devices: 2, records: 2 });
    expect((await store.billing.get(alice))!.usage).toBe(2);
    expect((await pool!.query('SELECT count(*) AS n FROM telemetry_buffer WHERE queued')).rows[0].n).toBe(2);
  });
});
