import { chmodSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

/** The data files hold device secrets and tokens: the service's user alone may read them. */
describe('data file modes', () => {
  let parent: TempDir;
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
    await parent.cleanup();
  });

  it('creates the data dir 0700 and ocean.db (with its -wal and -shm), analytics.duckdb and admin.token 0600', async () => {
    parent = await makeTempDir('ocean-modes-');
    const dataDir = join(parent.path, 'data'); // the service creates it
    // ADMIN_TOKEN empty: the service generates admin.token.
    t = await createTestApp({ dataDir, env: { ADMIN_TOKEN: '' }, start: true });
    const ingest = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: t.admin, payload: { sensor_id: 'S-1', data: { v: 1 } } });
    expect(ingest.statusCode).toBe(200);
    expect(mode(dataDir)).toBe('700');
    for (const file of ['ocean.db', 'ocean.db-wal', 'ocean.db-shm', 'analytics.duckdb', 'admin.token']) {
      expect(existsSync(join(dataDir, file)), file).toBe(true);
      expect(mode(join(dataDir, file)), file).toBe('600');
    }
  });

  it('makes the files of an earlier release 0600 when it opens them', async () => {
    parent = await makeTempDir('ocean-modes-');
    t = await createTestApp({ dataDir: parent.path, start: true });
    await t.close({ keepDir: true });
    const files = ['ocean.db', 'analytics.duckdb'].map((f) => join(parent.path, f));
    for (const file of files) chmodSync(file, 0o644);
    t = await createTestApp({ dataDir: parent.path, start: true });
    for (const file of files) expect(mode(file), file).toBe('600');
  });
});
