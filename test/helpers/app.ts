import { rm } from 'node:fs/promises';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import { openService, type Service } from '../../src/service.js';
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
 * listened; drive it with app.inject(). It is started (committer, health, the consumer when
 * REDIS_URL is set) unless start: false. Frames over HTTP are in analytics when their answer
 * comes; JSON readings once `service.committer.whenIdle()` resolves.
 */
export async function createTestApp(
  options: { env?: Record<string, string>; dataDir?: string; start?: boolean; now?: () => number } = {},
): Promise<TestApp> {
  const dataDir = options.dataDir ?? (await makeTempDir('ocean-test-')).path;
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: TEST_ADMIN_TOKEN, LOG_LEVEL: 'silent', ...options.env });
  const service = await openService(config, { logger: pino({ level: 'silent' }), ...(options.now ? { now: options.now } : {}) });
  if (options.start ?? true) await service.start();
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
