import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import pg from 'pg';
import { pino } from 'pino';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import type { StoreOperations } from '../../src/operational/store.js';
import { foldActivity } from '../../src/postgres/activity.js';
import { inTransaction } from '../../src/postgres/connect.js';
import { PgSeries, prepareReadings, storeReadings } from '../../src/postgres/readings.js';
import { openService, type Service } from '../../src/service.js';
import { openSharedService, type SharedService } from '../../src/shared-service.js';
import { commitRows, countMeasurements, segmentsOf, type MeasurementRow } from './measurements.js';
import { makeTempDir } from './temp-dir.js';

export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The PostgreSQL server of the `shared` test project (test/helpers/postgres-global.ts). */
    postgresUrl: string;
  }
}

/**
 * Which store the test files of the matrix run against: the `shared` project of vitest.config.ts
 * sets OCEAN_TEST_STORE=postgres and starts one PostgreSQL for the run; every test app gets a new
 * database on it. The same tests, unchanged, run against the embedded stores in the default project.
 */
export const SHARED = process.env.OCEAN_TEST_STORE === 'postgres';

export interface TestApp {
  /** The embedded service (its SQLite, DuckDB, committer): only in the embedded mode; a test that reads it is embedded-only. */
  service: Service;
  /** The shared-mode service, when the matrix runs on PostgreSQL. */
  shared: SharedService | undefined;
  app: Service['app'];
  /** The operational store of either mode (await its answers). */
  store: StoreOperations & { buffer: { counts(): { rows: number; queued: number } | Promise<{ rows: number; queued: number }> } };
  config: Config;
  dataDir: string;
  /** The shared mode's database URL (pass it back as `database` to open the same data again). */
  database: string | undefined;
  adminToken: string;
  /** Authorization header for the admin. */
  admin: { authorization: string };
  /** Stores measurements as the ingest path does (either store). */
  seed(rows: readonly MeasurementRow[]): Promise<void>;
  /** Measurements stored in analytics (optionally one sensor's). */
  count(sensorId?: string): Promise<number>;
  /** A sensor's measurements as [metric, value], by metric and time. */
  measurements(sensorId: string): Promise<Array<[string, number]>>;
  /** Resolves once what ingest changes a moment after its answer is done (the embedded committer; the shared mode's activity fold). */
  settle(): Promise<void>;
  /** Closes the service; removes the data dir unless keepDir. */
  close(options?: { keepDir?: boolean }): Promise<void>;
}

/** A new, empty database on the shared project's server. */
async function newDatabase(serverUrl: string): Promise<string> {
  const name = `ocean_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * The whole service around an app that has not listened; drive it with app.inject(). Embedded:
 * real SQLite and DuckDB files in a temp dir; in the `shared` project, a new database on the run's
 * PostgreSQL (`database` names one to open again, as a restart would). It is started (committer,
 * health, the consumer when REDIS_URL is set) unless start: false. Frames over HTTP are in
 * analytics when their answer comes; JSON readings once `settle()` resolves.
 */
export async function createTestApp(
  options: { env?: Record<string, string>; dataDir?: string; start?: boolean; now?: () => number; database?: string } = {},
): Promise<TestApp> {
  const dataDir = options.dataDir ?? (await makeTempDir('ocean-test-')).path;
  const database = SHARED ? (options.database ?? (await newDatabase(inject('postgresUrl')))) : undefined;
  const env = { DATA_DIR: dataDir, ADMIN_TOKEN: TEST_ADMIN_TOKEN, LOG_LEVEL: 'silent', ...(database ? { DATABASE_URL: database } : {}), ...options.env };
  const config = loadConfig(env);
  const serviceOptions = { logger: pino({ level: 'silent' }), ...(options.now ? { now: options.now } : {}) };
  const now = options.now ?? (() => Date.now() / 1000);
  const close = async (service: { close(): Promise<void> }, keepDir: boolean) => {
    await service.close();
    if (!keepDir) await rm(dataDir, { recursive: true, force: true });
  };
  // The token in force: the configured one, or the one the embedded service generated (ADMIN_TOKEN empty).
  const tokenOf = (adminToken: string) => ({ adminToken, admin: { authorization: `Bearer ${adminToken}` } });
  const common = { config, dataDir, database };

  if (config.database) {
    const shared = await openSharedService(config, serviceOptions);
    if (options.start ?? true) await shared.start();
    const series = new PgSeries(shared.pool);
    return {
      ...common,
      ...tokenOf(shared.adminToken),
      get service(): Service {
        throw new Error('this test reads the embedded service: it is not for the shared mode');
      },
      shared,
      app: shared.app,
      store: shared.store,
      async seed(rows) {
        const prepared = await prepareReadings(series, segmentsOf(rows));
        await inTransaction(shared.pool, (client) => storeReadings(client, prepared));
      },
      async count(sensorId) {
        const { rows } = await shared.pool.query(
          `SELECT count(*) AS n FROM readings r JOIN series s USING (series)${sensorId === undefined ? '' : ' WHERE s.sensor_id = $1'}`,
          sensorId === undefined ? [] : [sensorId],
        );
        return rows[0].n as number;
      },
      async measurements(sensorId) {
        const { rows } = await shared.pool.query(
          'SELECT s.metric, r.value FROM readings r JOIN series s USING (series) WHERE s.sensor_id = $1 ORDER BY s.metric COLLATE "C", r.ts',
          [sensorId],
        );
        return rows.map((r) => [String(r.metric), Number(r.value)]);
      },
      async settle() {
        // Another fold of the same instance may hold the lock: fold until one ran here.
        while ((await foldActivity(shared.pool, now())) === undefined) await new Promise((r) => setTimeout(r, 20));
      },
      close: ({ keepDir = false } = {}) => close(shared, keepDir),
    };
  }
  const service = await openService(config, serviceOptions);
  if (options.start ?? true) await service.start();
  return {
    ...common,
    ...tokenOf(service.adminToken),
    service,
    shared: undefined,
    app: service.app,
    store: service.store,
    async seed(rows) {
      await commitRows(service.analytics, rows);
    },
    count: (sensorId) => countMeasurements(service.analytics, sensorId),
    async measurements(sensorId) {
      const rows = await service.analytics.all('test', 'SELECT metric, value FROM measurements WHERE sensor_id = $1 ORDER BY metric, ts', [sensorId]);
      return rows.map((r) => [String(r.metric), Number(r.value)]);
    },
    settle: () => service.committer.whenIdle(),
    close: ({ keepDir = false } = {}) => close(service, keepDir),
  };
}
