import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

/**
 * The files that run twice: against the embedded stores (the `embedded` project, with every other
 * file) and against PostgreSQL (the `shared` project: DATABASE_URL, one server for the run).
 */
const MATRIX = [
  'test/compat/**/*.test.ts',
  ...[
    'analytics-fairness',
    'analytics-limits',
    'analytics-routes',
    'device-authority',
    'error-bodies',
    'frames-limits',
    'http-admin-backup',
    'http-billing',
    'http-billing-idempotency',
    'http-devices',
    'http-metadata',
    'http-service',
    'http-sessions',
    'http-telemetry',
    'http-users',
    'ingest-analytics',
    'ingest-holds',
    'ingest-stream',
    'logging',
    'metrics',
    'reading-streams',
    'service-close',
    'status',
    'user-sensor-limits',
  ].map((f) => `test/integration/${f}.test.ts`),
];

/** Debian's PostgreSQL server (postgresql package), as test/helpers/postgres-server.ts finds it. */
const hasPostgres = () => {
  const root = '/usr/lib/postgresql';
  return existsSync(root) && readdirSync(root).some((major) => existsSync(join(root, major, 'bin', 'postgres')));
};
const shared = hasPostgres() || process.env.CI === 'true';
if (!shared) console.warn('skipping the shared-mode (PostgreSQL) run of the API and ingest suites: PostgreSQL server binaries not found (Debian: apt-get install postgresql)');

export default defineConfig({
  test: {
    globals: false,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: integration files spawn redis-server and child services; keep parallelism modest.
    maxWorkers: 2,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'embedded', include: ['test/**/*.test.ts'] } },
      ...(shared
        ? [{ extends: true as const, test: { name: 'shared', include: MATRIX, env: { OCEAN_TEST_STORE: 'postgres' }, globalSetup: ['test/helpers/postgres-global.ts'] } }]
        : []),
    ],
  },
});
