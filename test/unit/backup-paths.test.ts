import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pathLiteral } from '../../src/analytics/backup.js';
import { readManifest } from '../../src/backup/manifest.js';

describe('backup paths and manifests', () => {
  it('quotes a path for ATTACH by doubling quotes, and refuses relative paths and control characters', () => {
    expect(pathLiteral("/backups/it's here/analytics.duckdb")).toBe("'/backups/it''s here/analytics.duckdb'");
    expect(pathLiteral("/b/x'; DROP TABLE t; --")).toBe("'/b/x''; DROP TABLE t; --'");
    expect(() => pathLiteral('relative/analytics.duckdb')).toThrow(/not a usable backup path/);
    expect(() => pathLiteral('/b/a\nb')).toThrow(/not a usable backup path/);
    expect(() => pathLiteral('/b/a\u0000b')).toThrow(/not a usable backup path/);
  });

  it('takes a directory without a manifest, or with a manifest of another shape, for no backup', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocean-manifest-'));
    try {
      await expect(readManifest(dir)).rejects.toThrow(/not a finished backup/);
      writeFileSync(join(dir, 'manifest.json'), '{"format":"ocean-core-backup"');
      await expect(readManifest(dir)).rejects.toThrow(/is not JSON/);
      writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ format: 'ocean-core-backup', format_version: 1 }));
      await expect(readManifest(dir)).rejects.toThrow(/not an Ocean Core backup manifest/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
