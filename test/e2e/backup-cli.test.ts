import { randomBytes } from 'node:crypto';
import { existsSync, openSync, readdirSync, readSync, statSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/backup/manifest.js';
import { createTestApp, TEST_ADMIN_TOKEN, type TestApp } from '../helpers/app.js';
import { exited, launchTsx } from '../helpers/child-process.js';
import { waitFor } from '../helpers/frames.js';
import { freePort } from '../helpers/redis-server.js';
import { runTsx } from '../helpers/run-cli.js';
import { createUserWithSession } from '../helpers/sessions.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

/** The commands as `npm run backup|restore` runs them, on a port where nothing listens unless a test says so. */
const backup = (dir: string, env: Record<string, string>) => runTsx('src/cli/backup.ts', [dir], { env, timeoutMs: 120_000 });
const restore = (dir: string, env: Record<string, string>) => runTsx('src/cli/restore.ts', [dir], { env, timeoutMs: 120_000 });

describe('npm run backup / npm run restore', () => {
  let temp: TempDir;
  let apps: TestApp[];
  let env: Record<string, string>;
  let dataDir: string;

  beforeEach(async () => {
    temp = await makeTempDir('ocean-backup-cli-');
    apps = [];
    dataDir = join(temp.path, 'data');
    env = { DATA_DIR: dataDir, PORT: String(await freePort()), ADMIN_TOKEN: TEST_ADMIN_TOKEN };
  });

  afterEach(async () => {
    for (const t of apps) await t.close({ keepDir: true });
    await temp.cleanup();
  });

  /** A service on the data dir (in this process; it holds the data dir's DuckDB lock while open). */
  const open = async () => {
    const t = await createTestApp({ dataDir, start: true });
    apps.push(t);
    return t;
  };
  const close = async (t: TestApp) => {
    await t.close({ keepDir: true });
    apps.splice(apps.indexOf(t), 1);
  };
  /** A data dir with a user, a session and readings in both stores; the service stopped. */
  const populate = async () => {
    const t = await open();
    const user = await createUserWithSession(t, 'dora');
    for (let i = 0; i < 10; i++) {
      const res = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: user.auth, payload: { sensor_id: 'D-1', data: { v: i } } });
      expect(res.statusCode).toBe(200);
    }
    await t.service.committer.whenIdle();
    await close(t);
    return user;
  };

  it('backs up a stopped service from its files and restores it, moving the data that was there aside', { timeout: 120_000 }, async () => {
    const user = await populate();
    const dir = join(temp.path, 'b1');
    const made = await backup(dir, env);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toContain('no service answers');
    const manifest = JSON.parse(made.stdout) as Manifest;
    expect(manifest).toMatchObject({ mode: 'offline', counts: { users: 1, sessions: 1, measurements: 10, buffer_messages: 10 }, ingest: { buffer_last_id: 10, duckdb_high_water: 10 } });
    // A backup holds device secrets: the user's alone, as the data dir is.
    const mode = (path: string) => statSync(path).mode & 0o777;
    expect([dir, ...['ocean.db', 'analytics.duckdb', 'manifest.json'].map((f) => join(dir, f))].map(mode)).toEqual([0o700, 0o600, 0o600, 0o600]);

    // The data dir changes after the backup; the restore brings back the backup's state.
    const later = await open();
    await later.app.inject({ method: 'POST', url: '/api/ocean/users', headers: later.admin, payload: { username: 'eve', email: 'eve@example.com' } });
    let lastIdGiven = 0;
    for (let i = 0; i < 5; i++) {
      const res = await later.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: user.auth, payload: { sensor_id: 'D-1', data: { v: 100 + i } } });
      lastIdGiven = res.json<{ id: number }>().id;
    }
    await close(later);
    const restored = await restore(dir, env);
    expect(restored.code, restored.stderr).toBe(0);
    const { aside } = JSON.parse(restored.stdout) as { aside: string };
    expect(restored.stderr).toContain(`telemetry_buffer ids continue above ${lastIdGiven}`);
    expect(aside.startsWith(`${dataDir}.before-restore-`), aside).toBe(true);
    expect(readdirSync(aside)).toEqual(expect.arrayContaining(['ocean.db', 'analytics.duckdb']));
    expect(readdirSync(temp.path).filter((n) => n.includes('.restoring-'))).toEqual([]);
    expect([dataDir, join(dataDir, 'ocean.db')].map(mode)).toEqual([0o700, 0o600]);

    // The restored service: eve (made after the backup) is gone, dora's session and readings are there.
    const t = await open();
    expect((await t.app.inject({ method: 'GET', url: `/api/ocean/users/${user.id}`, headers: user.auth })).statusCode).toBe(200);
    expect(t.service.store.db.prepare('SELECT count(*) AS n FROM users').get()).toEqual({ n: 1 });
    const stats = await t.app.inject({ method: 'GET', url: '/api/ocean/analytics/sensor/D-1/stats', headers: user.auth });
    expect(stats.json<{ count: number }>().count).toBe(10);
    // A new reading takes an id above every one given out before the restore (a client may still name
    // those in mark-processed), and reaches analytics.
    const next = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: user.auth, payload: { sensor_id: 'D-1', data: { v: 7 } } });
    expect(next.json<{ id: number }>().id).toBe(lastIdGiven + 1);
    await t.service.committer.whenIdle();
    const after = await t.app.inject({ method: 'GET', url: '/api/ocean/analytics/sensor/D-1/stats', headers: user.auth });
    expect(after.json<{ count: number }>().count).toBe(11);
  });

  it('asks a running service for the backup over its admin route', { timeout: 120_000 }, async () => {
    await populate();
    const t = await open();
    await t.app.listen({ port: Number(env.PORT), host: '127.0.0.1' });
    const dir = join(temp.path, 'online');
    const made = await backup(dir, env);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toContain('asking the service');
    expect(JSON.parse(made.stdout)).toMatchObject({ mode: 'online', counts: { users: 1, measurements: 10 } });
    // A wrong token is refused, and the directory left as it was.
    const refused = await backup(join(temp.path, 'refused'), { ...env, ADMIN_TOKEN: 'not-the-admin-token-at-all' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('answered 401');
    expect(existsSync(join(temp.path, 'refused'))).toBe(false);
  });

  it('refuses to restore into a data dir a running service holds, and to back up its files directly', { timeout: 120_000 }, async () => {
    await populate();
    const dir = join(temp.path, 'b2');
    expect((await backup(dir, env)).code).toBe(0);
    await open(); // running, but not listening where the commands look
    const restored = await restore(dir, env);
    expect(restored.code).toBe(1);
    expect(restored.stderr).toMatch(/in use by another process.*stop the service first/);
    expect(readdirSync(temp.path).sort()).toEqual(['b2', 'data']);
    const direct = await backup(join(temp.path, 'b3'), env);
    expect(direct.code).toBe(1);
    expect(direct.stderr).toContain('in use by another process');
  });

  it('refuses a backup whose file does not match its checksum, changing nothing', { timeout: 120_000 }, async () => {
    await populate();
    const dir = join(temp.path, 'b4');
    expect((await backup(dir, env)).code).toBe(0);
    // One byte of the DuckDB copy flipped, in place.
    const fd = openSync(join(dir, 'analytics.duckdb'), 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, 4096);
    byte[0]! ^= 0xff;
    writeSync(fd, byte, 0, 1, 4096);
    closeSync(fd);
    const restored = await restore(dir, env);
    expect(restored.code).toBe(1);
    expect(restored.stderr).toContain('analytics.duckdb does not match its SHA-256');
    expect(readdirSync(temp.path).sort()).toEqual(['b4', 'data']);
  });

  it('refuses, saying how a shared PostgreSQL store is backed up, when DATABASE_URL is set, without printing it', { timeout: 120_000 }, async () => {
    await populate();
    const made = await backup(join(temp.path, 'b5'), { ...env, DATABASE_URL: 'postgres://ocean:s3cret-pw@db.example:5432/ocean' });
    expect(made.code, made.stderr).toBe(1);
    expect(existsSync(join(temp.path, 'b5'))).toBe(false);
    expect(made.stderr).toContain('pg_dump --format=custom');
    expect(made.stderr).toContain('pg_restore');
    expect(made.stderr).not.toContain('s3cret-pw');
  });

  it('leaves nothing that looks complete when killed with SIGKILL mid-backup', { timeout: 180_000 }, async () => {
    // Large enough that copying and checksumming ocean.db takes well over a second.
    const t = await open();
    const blob = randomBytes(512 * 1024).toString('base64');
    t.service.store.transaction(() => {
      for (let i = 0; i < 400; i++) t.service.store.metadata.set(`bulk-${i}`, `${i}${blob}`);
    });
    await close(t);
    const dir = join(temp.path, 'killed');
    const child = launchTsx('src/cli/backup.ts', [dir], { env });
    await waitFor(() => child.stderr().includes('copying ocean.db') || child.proc.exitCode !== null, { what: 'the SQLite copy to begin', timeoutMs: 120_000 });
    child.proc.kill('SIGKILL');
    await exited(child.proc);
    expect(child.proc.signalCode, child.stderr()).toBe('SIGKILL');
    expect(existsSync(join(dir, 'analytics.duckdb'))).toBe(true);
    expect(existsSync(join(dir, 'manifest.json'))).toBe(false);

    const restored = await restore(dir, env);
    expect(restored.code).toBe(1);
    expect(restored.stderr).toContain('not a finished backup');
    expect(readdirSync(temp.path).sort()).toEqual(['data', 'killed']);
    // A second backup into the same directory is refused rather than mixed with the remains.
    const again = await backup(dir, env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('is not empty');
  });
});
