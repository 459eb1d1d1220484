import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { launchTsx, stop } from '../helpers/child-process.js';
import { waitFor } from '../helpers/frames.js';
import { freePort } from '../helpers/redis-server.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

/**
 * The service as `npm start` runs it, in a data dir it creates: every file in it is 0600, DuckDB's
 * WAL included (the engine creates that one itself, after the service's start-up).
 */
describe('the files a fresh service creates', () => {
  let parent: TempDir | undefined;
  let child: ChildProcess | undefined;
  afterAll(async () => {
    await stop(child);
    await parent?.cleanup();
  });

  it('are 0600, in a data dir of 0700', async () => {
    parent = await makeTempDir('ocean-e2e-modes-');
    const dataDir = join(parent.path, 'data');
    const port = await freePort();
    const service = launchTsx('src/main.ts', [], { env: { PORT: String(port), DATA_DIR: dataDir, ADMIN_TOKEN: '', LOG_LEVEL: 'warn' } });
    child = service.proc;
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => {
      if (child!.exitCode !== null) throw new Error(`the service died: ${service.stderr().slice(-2000)}`);
      return (await fetch(`${base}/health`).catch(() => undefined))?.ok;
    }, { what: 'service up', timeoutMs: 30_000 });
    const admin = { authorization: `Bearer ${readFileSync(join(dataDir, 'admin.token'), 'utf8').trim()}`, 'content-type': 'application/json' };
    const ingest = await fetch(`${base}/api/ocean/telemetry/ingest`, { method: 'POST', headers: admin, body: JSON.stringify({ sensor_id: 'S-1', data: { v: 1 } }) });
    expect(ingest.status).toBe(200);
    // Flushed into DuckDB: its WAL holds the rows until a checkpoint.
    await waitFor(async () => {
      const status = (await (await fetch(`${base}/api/ocean/status`, { headers: admin })).json()) as { telemetry_buffer: { unprocessed: number } };
      return status.telemetry_buffer.unprocessed === 0;
    }, { what: 'the reading committed' });
    const files = readdirSync(dataDir).sort();
    expect(files).toEqual(expect.arrayContaining(['admin.token', 'analytics.duckdb', 'analytics.duckdb.wal', 'ocean.db', 'ocean.db-shm', 'ocean.db-wal']));
    const modes = Object.fromEntries(files.map((f) => [f, (statSync(join(dataDir, f)).mode & 0o777).toString(8)]));
    expect(modes).toEqual(Object.fromEntries(files.map((f) => [f, '600'])));
    expect((statSync(dataDir).mode & 0o777).toString(8)).toBe('700');
  });
});
