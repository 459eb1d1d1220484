import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { copyAnalytics, openAnalyticsReadOnly, type ReadOnlyAnalytics } from '../analytics/backup.js';
import { copyOperationalDbOffThread } from '../operational/backup.js';
import { DUCKDB_FILE, SQLITE_FILE } from './manifest.js';
import type { BackupSources } from './take.js';

/**
 * The backup sources of a stopped service: its files in `dataDir`, opened read-only. DuckDB is held
 * open (and with it its file lock) from before the first copy to after the second, so a service
 * that is running, or starts meanwhile, is refused rather than written beside the copies.
 */
export function offlineSources(dataDir: string): BackupSources {
  const need = (name: string) => {
    const path = join(dataDir, name);
    if (!existsSync(path)) throw new Error(`${path} does not exist: DATA_DIR must be the service's data directory`);
    return path;
  };
  let held: ReadOnlyAnalytics | undefined;
  return {
    mode: 'offline',
    async analytics(target) {
      if (!held) throw new Error('the analytics file is copied inside around()');
      return copyAnalytics(held.connection, target, held.catalog);
    },
    operational: (target) => copyOperationalDbOffThread(need(SQLITE_FILE), target),
    async around(fn) {
      need(SQLITE_FILE);
      held = await openAnalyticsReadOnly(need(DUCKDB_FILE));
      try {
        return await fn();
      } finally {
        held.close();
        held = undefined;
      }
    },
  };
}
