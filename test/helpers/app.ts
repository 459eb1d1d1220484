import { rm } from 'node:fs/promises';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import { openService, type Service } from '../../src/service.js';
import { withLegacyAppend } from './legacy-append.js';
import { makeTempDir } from './temp-dir.js';

export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface TestApp {
  service: Service;
  app: Service['app'];
  config: Config;
  dataDir: string;
  adminToken: string;
  /** Authorization header for the admin. */
  admin: { authorization: string };
  /** Closes the service; removes the data dir unless keepDir. */
  close(options?: { keepDir?: boolean }): Promise<void>;
}

/**
 * The whole service (real SQLite and DuckDB files in a temp dir) around an app that has not
 * listened; drive it with app.inject(). Workers (flusher, consumer) start only with start: true;
 * otherwise call service.flusher.flush() where a test needs analytics to see ingested data.
 */
export async function createTestApp(
  options: { env?: Record<string, string>; dataDir?: string; start?: boolean; now?: () => number } = {},
): Promise<TestApp> {
  const dataDir = options.dataDir ?? (await makeTempDir('ocean-test-')).path;
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: TEST_ADMIN_TOKEN, LOG_LEVEL: 'silent', ...options.env });
  const service = await openService(config, { logger: pino({ level: 'silent' }), ...(options.now ? { now: options.now } : {}) });
  withLegacyAppend(service.analytics);
  if (options.start) await service.start();
  return {
    service,
    app: service.app,
    config,
    dataDir,
    adminToken: service.adminToken,
    admin: { authorization: `Bearer ${service.adminToken}` },
    async close({ keepDir = false } = {}) {
      await service.close();
      if (!keepDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
