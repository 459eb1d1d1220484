import { join } from 'node:path';
import { AnalyticsEngine } from '../../src/analytics/engine.js';
import { makeTempDir } from './temp-dir.js';

export interface TempAnalytics {
  engine: AnalyticsEngine;
  dir: string;
  path: string;
  /** Closes the engine (safe if already closed) and removes the directory. */
  cleanup(): Promise<void>;
}

/** A DuckDB analytics store on a fresh file in its own temp directory. */
export async function openTempAnalytics(): Promise<TempAnalytics> {
  const temp = await makeTempDir('ocean-duck-');
  const dir = temp.path;
  const path = join(dir, 'analytics.duckdb');
  const engine = await AnalyticsEngine.open({ path, memoryLimit: '256MB', threads: 2 });
  return {
    engine,
    dir,
    path,
    async cleanup() {
      await engine.close();
      await temp.cleanup();
    },
  };
}
