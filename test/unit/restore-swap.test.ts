import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { restorePlaces, swapIn } from '../../src/backup/restore.js';

describe('installing a restored copy', () => {
  let root: string;
  let data: string;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'ocean-swap-'));
    data = join(root, 'data');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const files = (dir: string, entries: Record<string, string>) => {
    mkdirSync(dir, { recursive: true });
    for (const [name, text] of Object.entries(entries)) writeFileSync(join(dir, name), text);
  };

  it('stages beside a data dir that can be renamed, and swaps by renaming it aside', async () => {
    files(data, { 'ocean.db': 'old', 'ocean.db-wal': 'old wal', 'admin.token': 'token' });
    const places = await restorePlaces(data, 's1');
    expect(places).toEqual({ staging: `${data}.restoring-s1`, aside: `${data}.before-restore-s1`, inside: false });
    files(places.staging, { 'ocean.db': 'new', 'admin.token': 'token' });
    expect(await swapIn(data, places)).toBe(`${data}.before-restore-s1`);
    expect(readFileSync(join(data, 'ocean.db'), 'utf8')).toBe('new');
    expect(readdirSync(`${data}.before-restore-s1`).sort()).toEqual(['admin.token', 'ocean.db', 'ocean.db-wal']);
    expect(readdirSync(root).sort()).toEqual(['data', 'data.before-restore-s1']);
  });

  it('installs into a data dir that does not exist yet, with nothing aside', async () => {
    const places = await restorePlaces(data, 's2');
    files(places.staging, { 'ocean.db': 'new' });
    expect(await swapIn(data, places)).toBeNull();
    expect(readdirSync(root)).toEqual(['data']);
  });

  it('inside a data dir that cannot be renamed (a volume), moves the files instead and leaves everything else where it is', async () => {
    files(data, { 'ocean.db': 'old', 'ocean.db-wal': 'old wal', 'analytics.duckdb': 'old duck', 'admin.token': 'token' });
    files(join(data, 'before-restore-s0'), { 'ocean.db': 'older' });
    files(join(data, 'backups', 'b1'), { 'manifest.json': '{}' });
    const places = { staging: join(data, '.restoring-s3'), aside: join(data, 'before-restore-s3'), inside: true };
    files(places.staging, { 'ocean.db': 'new', 'analytics.duckdb': 'new duck', 'admin.token': 'token' });
    expect(await swapIn(data, places)).toBe(places.aside);
    expect(readdirSync(data).sort()).toEqual(['admin.token', 'analytics.duckdb', 'backups', 'before-restore-s0', 'before-restore-s3', 'ocean.db']);
    expect(readFileSync(join(data, 'analytics.duckdb'), 'utf8')).toBe('new duck');
    expect(readdirSync(places.aside).sort()).toEqual(['admin.token', 'analytics.duckdb', 'ocean.db', 'ocean.db-wal']);
    expect(readFileSync(join(places.aside, 'ocean.db'), 'utf8')).toBe('old');
    expect(readFileSync(join(data, 'before-restore-s0', 'ocean.db'), 'utf8')).toBe('older');
  });
});
