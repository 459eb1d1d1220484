import { Redis } from 'ioredis';
import type { FastifyInstance } from 'fastify';
import { Admission, admitted } from './analytics/admission.js';
import { buildApp, type ServiceFacts } from './app.js';
import type { Config } from './config.js';
import { AppError } from './errors.js';
import { HealthMonitor } from './health.js';
import { StreamConsumer } from './ingest/consumer.js';
import { DecodePool } from './ingest/decode-pool.js';
import { ingestFrameBody, ownerOption, type HttpIngest } from './ingest/http-ingest.js';
import { readingStreamPublisher } from './ingest/reading-streams.js';
import type { IngestStatus } from './ingest/status.js';
import { createMetrics, type Metrics } from './metrics.js';
import { foldActivity } from './postgres/activity.js';
import { createPgAnalytics } from './postgres/analytics.js';
import { openPostgres, type Pg } from './postgres/connect.js';
import { PgIngest } from './postgres/ingest.js';
import { runMaintenance } from './postgres/maintenance.js';
import { migratePostgres } from './postgres/migrations.js';
import { watchDeviceSecrets } from './postgres/secrets.js';
import { shutDownInOrder } from './shutdown.js';
import { openPgStore, type PgStore } from './postgres/store.js';
import type { ServiceOptions } from './service.js';

export interface SharedService {
  app: FastifyInstance;
  pool: Pg;
  store: PgStore;
  ingest: PgIngest;
  consumer: StreamConsumer | undefined;
  health: HealthMonitor;
  metrics: Metrics;
  adminToken: string;
  /** Migrates the schema (once over all instances), loads the device secrets, starts the consumer and the periodic jobs. */
  start(): Promise<void>;
  /** Stops HTTP, the consumer (after its batch), the jobs, closes the pool. Safe to call twice. */
  close(): Promise<void>;
}

/** Device activity appended by the commits is folded into devices and usage this often (one instance at a time). */
const FOLD_MS = 1000;
/** Expired sessions and Idempotency-Keys, fingerprints past the replay window and old work-queue rows go this often. */
const MAINTENANCE_MS = 60 * 1000;
/** Entries pending this long on another instance (dead or hung) are claimed by this one. */
const CLAIM_IDLE_MS = 30_000;
/** Seconds a fingerprint is remembered beyond the drift window (as the embedded replay index). */
const REPLAY_MARGIN_S = 10;

/**
 * The shared mode (DATABASE_URL): the same app over one PostgreSQL that any number of instances
 * share. Operational data, readings and the replay memory (fingerprints) are in the database, so
 * this process keeps nothing that another instance would need: every instance answers the same,
 * and a frame lands once whichever instance reads it (postgres/ingest.ts).
 */
export async function openSharedService(config: Config, options: ServiceOptions): Promise<SharedService> {
  const { logger } = options;
  const database = config.database;
  if (!database) throw new Error('openSharedService needs DATABASE_URL');
  if (!config.adminToken) throw new Error('the shared mode needs ADMIN_TOKEN');
  const adminToken = config.adminToken;
  const now = options.now ?? (() => Date.now() / 1000);
  const metrics = options.metrics ?? createMetrics();
  const { userLimits } = config;

  const pool = openPostgres(database.url, { max: database.poolMax, statementTimeoutMs: config.duckdb.queryTimeoutMs });
  let secrets: Awaited<ReturnType<typeof watchDeviceSecrets>> | undefined;
  const store = openPgStore(pool, {
    sessionTtlS: config.sessionTtlS,
    idempotencyKeyTtlS: config.idempotencyKeyTtlS,
    now,
    maxSensorsPerUser: userLimits.maxSensors,
    // This instance checks the next frame with a device's new secret (the others follow on the NOTIFY).
    onSecretSet: async () => secrets?.reload(),
  });
  const analytics = admitted(
    createPgAnalytics(pool, {
      maxExports: userLimits.exportsRunning,
      timeoutMs: config.duckdb.queryTimeoutMs,
      limits: { maxDurationMs: userLimits.exportMaxDurationMs, minBytesPerS: userLimits.exportMinBytesPerS },
      memoryLimit: config.duckdb.memoryLimit,
    }),
    new Admission({
      // Analytics may hold half of the pool at most: ingest and the API keep the rest.
      running: Math.max(1, Math.floor(database.poolMax / 2)),
      perCallerRunning: userLimits.analyticsRunning,
      perCallerWaiting: userLimits.analyticsWaiting,
      queue: userLimits.analyticsQueue,
      timeoutMs: config.duckdb.queryTimeoutMs,
      exports: userLimits.exportsRunning,
      perCallerExports: userLimits.exportsPerUser,
    }),
  );

  const redis = config.redisUrl ? new Redis(config.redisUrl, { maxRetriesPerRequest: 3, commandTimeout: 2000 }) : undefined;
  redis?.on('error', (err: Error) => logger.debug({ err }, 'redis connection error'));
  const decoder = new DecodePool(config.nanogridata, logger);
  const pipeline = new PgIngest({ pool, decoder, now, maxSensorsPerUser: userLimits.maxSensors, metrics });
  const readingStreams = redis && readingStreamPublisher(redis, config.ingest.readingStreamMaxLen, logger, metrics);
  const readings = async (batch: Parameters<HttpIngest['readings']>[0], owner: string | undefined) => {
    const outcomes = await pipeline.ingestReadings(batch, { source: 'http', ...ownerOption(owner) });
    readingStreams?.publish(batch);
    return outcomes;
  };
  const ingest: HttpIngest = {
    frames: (body, o) => ingestFrameBody(pipeline, body, o),
    reading: async (reading, owner) => (await readings([reading], owner))[0]!,
    readings,
  };
  // Each instance is its own consumer in the group (INGEST_CONSUMER, default the host name).
  const consumer = redis
    ? new StreamConsumer({ redis, config: config.ingest, consumerName: config.ingest.consumerName, pipeline, metrics, logger, claimIdleMs: CLAIM_IDLE_MS })
    : undefined;
  if (!redis) logger.info('REDIS_URL unset: no stream consumer; HTTP ingest only');

  const ingestStatus = (): IngestStatus => {
    const poolState = { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount };
    // Taken on each /metrics scrape and /health answer (at most every 250 ms), so the gauge is as fresh.
    for (const [state, n] of Object.entries(poolState)) metrics.databasePool.set({ state }, n);
    return { consumer: consumer?.status() ?? { enabled: false, connected: false }, database: { pool: poolState } };
  };
  const health = new HealthMonitor({
    probes: [{ name: 'postgresql', check: () => pool.query('SELECT 1'), whenDown: 'database_unreachable' }],
    ingestStatus,
    dataDir: config.dataDir,
    metrics,
    logger,
  });
  let databaseBytes = 0;
  const facts: ServiceFacts = {
    engine: 'postgresql',
    engines: { operational: 'postgresql', analytics: 'postgresql' },
    sizes: () => ({ postgresql: databaseBytes }),
    buffer: async () => ({ ...(await store.buffer.counts()), unprocessed: 0 }),
    ingest: ingestStatus,
  };
  const backup = async (): Promise<never> => {
    throw new AppError(
      'shared_mode',
      409,
      'DATABASE_URL is set: the shared PostgreSQL is backed up with its own tools, e.g. pg_dump --format=custom --file=ocean.pgdump "$DATABASE_URL" (consistent while the service runs)',
    );
  };
  const app = await buildApp({ config, adminToken, store, analytics, ingest, metrics, health, facts, backup, logger });

  const replayWindowS = config.nanogridata.maxDriftS + REPLAY_MARGIN_S;
  const timers: NodeJS.Timeout[] = [];
  const running = new Set<Promise<void>>();
  /** Runs job every ms, one round at a time; a failure is logged (the database may be down) and the next round tries again. */
  const every = (ms: number, name: string, job: () => Promise<unknown>) => {
    let round: Promise<void> | undefined;
    const timer = setInterval(() => {
      if (round) return;
      round = job()
        .then(
          () => undefined,
          (err: unknown) => logger.warn({ err, job: name }, 'a periodic job failed; retried next round'),
        )
        .finally(() => {
          running.delete(round!);
          round = undefined;
        });
      running.add(round);
    }, ms);
    timer.unref();
    timers.push(timer);
  };
  let started = false;
  let closing: Promise<void> | undefined;
  return {
    app,
    pool,
    store,
    ingest: pipeline,
    consumer,
    health,
    metrics,
    adminToken,
    async start() {
      started = true;
      const applied = await migratePostgres(pool);
      if (applied.length > 0) logger.info({ versions: applied }, 'database schema migrated');
      await decoder.ready();
      secrets = await watchDeviceSecrets(pool, database.url, (s) => decoder.setDeviceSecrets(s), logger);
      await consumer?.start();
      await health.start();
      every(FOLD_MS, 'device activity', () => foldActivity(pool, now()));
      const maintain = async () => {
        const done = await runMaintenance(pool, { now: now(), replayWindowS, idempotencyKeyTtlS: config.idempotencyKeyTtlS, bufferRetentionS: config.ingest.bufferRetentionS });
        if (done) logger.info(done, 'periodic maintenance done');
      };
      // As the embedded purge: once at start, then every minute.
      await maintain().catch((err: unknown) => logger.warn({ err }, 'maintenance at start failed; retried in a minute'));
      every(MAINTENANCE_MS, 'maintenance', maintain);
      const measure = async () => {
        const { rows } = await pool.query<{ bytes: number }>('SELECT pg_database_size(current_database()) AS bytes');
        databaseBytes = rows[0]!.bytes;
      };
      await measure().catch(() => undefined);
      every(MAINTENANCE_MS, 'database size', measure);
    },
    close() {
      closing ??= (async () => {
        for (const timer of timers) clearInterval(timer);
        await shutDownInOrder(logger, [
          ['http', () => app.close()],
          ['consumer', () => consumer?.stop()],
          ['health', () => health.stop()],
          ['secrets', () => secrets?.close()],
          ['decoder', () => decoder.close()],
          ['reading streams', () => readingStreams?.close()],
          ['redis', () => redis?.disconnect()],
          ['periodic jobs', () => Promise.all(running)],
          // The activity committed last is folded now rather than left for another instance's next round.
          ['device activity', () => started && foldActivity(pool, now())],
          ['pool', () => pool.end()],
        ]);
      })();
      return closing;
    },
  };
}
