import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readManifest, type Manifest } from '../../src/backup/manifest.js';
import { restoreBackup } from '../../src/backup/restore.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { pressureFrames, waitFor } from '../helpers/frames.js';
import { parsePromText, sumOf } from '../helpers/prom-text.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';
import { streamTestEnv, xaddFrames } from '../helpers/stream-env.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

/** XADDs the frames; the last entry's id. */
const addFrames = async (redis: Redis, stream: string, frames: Buffer[]) => (await xaddFrames(redis, stream, frames)).at(-1)!;

/** Per sensor-id prefix: records DuckDB holds, and how many of them repeat another (sensor, metric, ts, value). */
async function holdings(t: TestApp): Promise<Map<string, { records: number; doubles: number }>> {
  const rows = await t.service.analytics.all(
    'test',
    `SELECT split_part(sensor_id, '-', 1) AS prefix, count(*)::INTEGER AS records,
            (count(*) - count(DISTINCT (sensor_id, metric, ts, value)))::INTEGER AS doubles
     FROM measurements GROUP BY prefix`,
  );
  return new Map(rows.map((r) => [String(r.prefix), { records: Number(r.records), doubles: Number(r.doubles) }]));
}

const measurements = async (t: TestApp) => Number((await t.service.analytics.all('test', 'SELECT count(*)::INTEGER AS n FROM measurements'))[0]!.n);

/** Every entry added so far has been delivered to the group and acknowledged. */
async function allAcknowledged(redis: Redis, stream: string, lastId: string): Promise<boolean> {
  const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  const info = new Map<string, unknown>();
  for (let i = 0; i + 1 < groups[0]!.length; i += 2) info.set(String(groups[0]![i]), groups[0]![i + 1]);
  return info.get('last-delivered-id') === lastId && Number(info.get('pending')) === 0;
}

describe('backup during ingest and billing load, restored into a new data dir', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let apps: TestApp[];
  let dirs: TempDir[];
  let env: Record<string, string>;
  let secret: Buffer;
  let stream: string;
  let dead: string;

  beforeEach(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    apps = [];
    dirs = [];
    ({ secret, stream, dead, env } = streamTestEnv(redisServer.url));
    Object.assign(env, { INGEST_BATCH_SIZE: '200' });
  });

  afterEach(async () => {
    for (const t of apps) await t.close();
    for (const d of dirs) await d.cleanup();
    redis.disconnect();
    await redisServer.stop();
  });

  const tempDir = async (prefix: string) => {
    const d = await makeTempDir(prefix);
    dirs.push(d);
    return d.path;
  };
  const start = async (dataDir: string) => {
    const t = await createTestApp({ env, dataDir, start: true });
    apps.push(t);
    return t;
  };
  const stopApp = async (t: TestApp) => {
    await t.close({ keepDir: true });
    apps.splice(apps.indexOf(t), 1);
  };

  it('keeps every reading acknowledged before it once, doubles nothing replayed after it, and keeps ledgers, sessions and ids whole', { timeout: 120_000 }, async () => {
    const original = await start(await tempDir('ocean-live-'));
    const users: TestUser[] = [];
    for (const name of ['ann', 'bob', 'cem']) users.push(await createUserWithSession(original, name));
    const credit = (t: TestApp, user: TestUser, amount: number) =>
      t.app.inject({ method: 'POST', url: `/api/ocean/billing/${user.id}/add-credits?amount=${amount}`, headers: t.admin });
    for (const u of users) expect((await credit(original, u, 1000)).statusCode).toBe(200);

    // Wave 1: frames and JSON readings, every one stored and acknowledged before the backup begins.
    const wave1 = pressureFrames({ count: 1500, devices: 5, secret, prefix: 'W1' });
    const wave1Last = await addFrames(redis, stream, wave1.frames);
    for (let i = 0; i < 20; i++) {
      const res = await original.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: users[0]!.auth, payload: { sensor_id: 'H1-a', data: { temperature: 20 + i } } });
      expect(res.statusCode).toBe(200);
    }
    await waitFor(() => allAcknowledged(redis, stream, wave1Last), { what: 'wave 1 acknowledged', timeoutMs: 60_000 });

    // Wave 2 and billing run while the backup is taken.
    const wave2 = pressureFrames({ count: 3000, devices: 5, secret, prefix: 'W2' });
    let loading = true;
    const producer = (async () => {
      let last = '';
      for (let i = 0; i < wave2.frames.length; i += 100) {
        last = await addFrames(redis, stream, wave2.frames.slice(i, i + 100));
        await new Promise((r) => setImmediate(r));
      }
      return last;
    })();
    const billing = (async () => {
      let n = 0;
      while (loading) {
        const u = users[n % users.length]!;
        const res = await credit(original, u, n % 3 === 0 ? -7 : 5);
        expect([200, 409]).toContain(res.statusCode);
        n++;
        // inject() can settle without a turn of the event loop: yield one, or the backup never runs.
        await new Promise((r) => setImmediate(r));
      }
      return n;
    })();
    // The backup starts once part of wave 2 is in DuckDB, so it holds some of it and not the rest.
    await waitFor(async () => ((await holdings(original)).get('W2')?.records ?? 0) >= 1000, { what: 'part of wave 2 stored', timeoutMs: 60_000 });
    const backupDir = join(await tempDir('ocean-backups-'), 'b1');
    const res = await original.app.inject({ method: 'POST', url: '/api/ocean/admin/backup', headers: original.admin, payload: { dir: backupDir } });
    expect(res.statusCode, res.body).toBe(200);
    const manifest = res.json<Manifest>();
    loading = false;
    const wave2Last = await producer;
    expect(await billing).toBeGreaterThan(0);
    await waitFor(() => allAcknowledged(redis, stream, wave2Last), { what: 'wave 2 acknowledged', timeoutMs: 60_000 });

    // The manifest on disk is the one answered, and the two stores agree on a position.
    expect(await readManifest(backupDir)).toEqual(manifest);
    expect(manifest.mode).toBe('online');
    expect(manifest.ingest.duckdb_high_water).toBeLessThanOrEqual(manifest.ingest.buffer_last_id);
    expect(manifest.counts.users).toBe(3);
    expect(readdirSync(backupDir).sort()).toEqual(['analytics.duckdb', 'manifest.json', 'ocean.db']);
    await stopApp(original);

    // Restore into a data dir that does not exist yet, and start the service on it.
    const restoredDir = join(await tempDir('ocean-restored-'), 'data');
    const { aside } = await restoreBackup(backupDir, restoredDir, { stamp: 'test' });
    expect(aside).toBeNull();
    const restored = await start(restoredDir);
    // Started: the committer has taken up DuckDB's mark and committed the JSON readings above it.
    await restored.service.committer.whenIdle();
    expect(restored.service.committer.status().queue_through).toBe(manifest.ingest.buffer_last_id);
    expect(restored.service.committer.backlog()).toBe(0);

    const held = await holdings(restored);
    expect(held.get('W1'), 'wave 1: every record acknowledged before the backup, once').toEqual({ records: wave1.records, doubles: 0 });
    expect(held.get('H1'), 'JSON readings stored before the backup, once').toEqual({ records: 20, doubles: 0 });
    expect(held.get('W2')?.records).toBeGreaterThanOrEqual(1000);
    expect(held.get('W2')?.doubles).toBe(0);
    const before = await measurements(restored);

    // Replays after the restore: the same frames added again as new entries, then the group moved back
    // to the start of what the stream still holds (acknowledged entries are trimmed, in whole nodes:
    // most are still there). The replay memory
    // is DuckDB's, restored with it: every frame in the backup is refused as a replay; a frame of wave 2
    // acknowledged after DuckDB was copied is not in the backup, and is stored now, once. Nothing is
    // stored twice, and fresh frames still flow.
    const deadBefore = await redis.xlen(dead);
    const replayed = wave1.frames.length + wave2.frames.length;
    const storedFrames = async () =>
      sumOf(parsePromText((await restored.app.inject({ method: 'GET', url: '/metrics' })).body), 'ocean_telemetry_ingested_total', { source: 'stream' });
    const replayLast = await addFrames(redis, stream, [...wave1.frames, ...wave2.frames]);
    await waitFor(() => allAcknowledged(redis, stream, replayLast), { what: 're-added frames settled', timeoutMs: 60_000 });
    const refused = (await redis.xrange(dead, '-', '+')).slice(deadBefore);
    expect(new Set(refused.map(([, f]) => f[f.indexOf('reason') + 1]))).toEqual(new Set(['replay']));
    // Every re-added frame was refused or stored: refused, wave 1 and what the backup holds of wave 2.
    const storedAgain = await storedFrames();
    expect(refused.length + storedAgain).toBe(replayed);
    expect(refused.length).toBeGreaterThanOrEqual(wave1.frames.length);
    // Moving the group back delivers every entry the stream still holds again: an entry whose frame
    // was stored is only acknowledged, one whose frame was refused (or stored under another entry) is a
    // replay again; nothing is stored, and fresh frames still flow.
    await redis.xgroup('SETID', stream, 'ocean', '0');
    const fresh = pressureFrames({ count: 10, devices: 1, secret, prefix: 'W3' });
    const freshLast = await addFrames(redis, stream, fresh.frames);
    await waitFor(() => allAcknowledged(redis, stream, freshLast), { what: 'stream settled after the group moved back', timeoutMs: 60_000 });
    const letters = (await redis.xrange(dead, '-', '+')).slice(deadBefore);
    expect(new Set(letters.map(([, f]) => f[f.indexOf('reason') + 1]))).toEqual(new Set(['replay']));
    expect(await storedFrames()).toBe(storedAgain + fresh.frames.length);
    const after = await holdings(restored);
    expect(after.get('W1')).toEqual({ records: wave1.records, doubles: 0 });
    expect(after.get('W2'), 'wave 2 whole once: in the backup, or stored when sent again').toEqual({ records: wave2.records, doubles: 0 });
    expect(after.get('W3')).toEqual({ records: fresh.records, doubles: 0 });
    expect(await measurements(restored)).toBe(before + (wave2.records - (held.get('W2')?.records ?? 0)) + fresh.records);

    // Ledgers: every balance is the sum of its ledger and the last balance written.
    const db = restored.service.store.db;
    const mismatched = db
      .prepare(
        `SELECT b.user_id FROM billing b
         WHERE b.credits != (SELECT coalesce(sum(delta), 0) FROM billing_ledger l WHERE l.user_id = b.user_id)
            OR b.credits != coalesce((SELECT balance_after FROM billing_ledger l WHERE l.user_id = b.user_id ORDER BY id DESC LIMIT 1), 0)`,
      )
      .all();
    expect(mismatched).toEqual([]);
    expect(db.prepare('SELECT count(*) AS n FROM billing_ledger').get()).toEqual({ n: manifest.counts.ledger });

    // Sessions opened before the backup validate.
    for (const u of users) {
      const v = await restored.app.inject({ method: 'POST', url: '/api/ocean/sessions/validate', headers: u.auth });
      expect(v.statusCode, u.username).toBe(200);
    }

    // New ids continue above the backup's, and new readings reach DuckDB.
    const change = await credit(restored, users[1]!, 3);
    expect(change.json<{ ledger_id: number }>().ledger_id).toBeGreaterThan(manifest.last_ids.ledger);
    const stored = await measurements(restored);
    const ingest = await restored.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: users[0]!.auth, payload: { sensor_id: 'H1-a', data: { temperature: 99 } } });
    expect(ingest.json<{ id: number }>().id).toBeGreaterThan(manifest.last_ids.buffer);
    await restored.service.committer.whenIdle();
    expect(await measurements(restored)).toBe(stored + 1);
    expect(existsSync(join(restoredDir, 'admin.token'))).toBe(false);
  });
});
