import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, SHARED, type TestApp } from '../helpers/app.js';
import { expectErrorShape } from '../helpers/error-shape.js';
import { createUserWithSession } from '../helpers/sessions.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

describe('POST /api/ocean/admin/backup', () => {
  let t: TestApp;
  let temp: TempDir;

  beforeEach(async () => {
    t = await createTestApp({ start: true });
    temp = await makeTempDir('ocean-admin-backup-');
  });

  afterEach(async () => {
    await t.close();
    await temp.cleanup();
  });

  const post = (dir: unknown, headers: Record<string, string> = t.admin) => t.app.inject({ method: 'POST', url: '/api/ocean/admin/backup', headers, payload: { dir } });

  it('is for the admin only', async () => {
    const user = await createUserWithSession(t, 'uma');
    expect((await post(join(temp.path, 'a'), {})).statusCode).toBe(401);
    expect((await post(join(temp.path, 'a'), user.auth)).statusCode).toBe(403);
  });

  // The data is in PostgreSQL, not DATA_DIR: the route refuses before it looks at the directory.
  it.runIf(SHARED)('answers 409 shared_mode naming pg_dump, whatever the directory, and writes nothing', async () => {
    const used = join(temp.path, 'used');
    mkdirSync(used);
    writeFileSync(join(used, 'notes.txt'), 'keep me');
    writeFileSync(join(temp.path, 'a-file'), 'not a directory');
    const dirs = ['backups/today', join(temp.path, 'new', 'backup'), used, join(temp.path, 'a-file', 'backup'), join(temp.path, 'one')];
    const answers = [...(await Promise.all(dirs.map((dir) => post(dir)))), await post(join(temp.path, 'one'))];
    for (const res of answers) {
      expectErrorShape(res, 409, 'shared_mode');
      expect(res.json<{ message: string }>().message).toContain('pg_dump');
    }
    expect(existsSync(join(temp.path, 'new'))).toBe(false);
    expect(readdirSync(temp.path).sort()).toEqual(['a-file', 'used']);
    expect(readdirSync(used)).toEqual(['notes.txt']);
  });

  // Embedded only: the backup of the SQLite and DuckDB files; the shared mode refuses every directory (above).
  it.skipIf(SHARED)('refuses a relative path and a directory that holds anything', async () => {
    const relative = await post('backups/today');
    expect(relative.statusCode).toBe(400);
    expect(relative.json<{ error: string }>().error).toBe('bad_backup_dir');
    const used = join(temp.path, 'used');
    mkdirSync(used);
    writeFileSync(join(used, 'notes.txt'), 'keep me');
    const res = await post(used);
    expect(res.statusCode).toBe(409);
    expect(res.json<{ message: string }>().message).toContain('is not empty');
  });

  // Embedded only: the shared mode creates no backup directory.
  it.skipIf(SHARED)('answers 409 naming the directory when it cannot be created (a path under a file), and makes new ones 0700', async () => {
    const file = join(temp.path, 'a-file');
    writeFileSync(file, 'not a directory');
    const res = await post(join(file, 'backup'));
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ error: 'backup_dir_not_usable', message: expect.stringContaining('ENOTDIR') });
    const made = join(temp.path, 'new', 'backup');
    expect((await post(made)).statusCode).toBe(200);
    expect(statSync(made).mode & 0o777).toBe(0o700);
  });

  // Embedded only: the shared mode runs no backup (pg_dump does), so none is ever running.
  it.skipIf(SHARED)('runs one backup at a time', async () => {
    const [a, b] = await Promise.all([post(join(temp.path, 'one')), post(join(temp.path, 'two'))]);
    expect([a.statusCode, b.statusCode].sort()).toEqual([200, 409]);
    expect([a, b].find((r) => r.statusCode === 409)!.json<{ error: string }>().error).toBe('backup_running');
  });
});
