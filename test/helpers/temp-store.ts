import { join } from 'node:path';
import { openOperationalStore, type OperationalStore } from '../../src/operational/store.js';
import { makeTempDirSync } from './temp-dir.js';

export interface TempStore {
  store: OperationalStore;
  dir: string;
  path: string;
  /** Closes the store (if still open) and removes the directory. */
  cleanup(): void;
}

/** An operational store on a fresh SQLite file in its own temp directory. */
export function openTempStore(options: { sessionTtlS?: number } = {}): TempStore {
  const temp = makeTempDirSync('ocean-op-');
  const dir = temp.path;
  const path = join(dir, 'ocean.db');
  const store = openOperationalStore(path, { sessionTtlS: options.sessionTtlS ?? 86400 });
  return {
    store,
    dir,
    path,
    cleanup() {
      store.close();
      temp.cleanup();
    },
  };
}
