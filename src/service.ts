import { Redis } from 'ioredis';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { resolveAdminToken } from './admin-token.js';
import { AnalyticsClient } from './analytics/client.js';
import { buildApp } from './app.js';
import { singleBackup } from './backup/take.js';
import type { Config } from './config.js';
import { HealthMonitor } from './health.js';
import { StreamConsumer } from './ingest/consumer.js';
import { DecodeWorker } from './ingest/decode-pool.js';
import { Flusher } from './ingest/flusher.js';
import { IngestPipeline } from './ingest/pipeline.js';
import { readingStreamPublisher } from './ingest/reading-streams.js';
import { ReplayMemory } from './ingest/replay-memory.js';
import { RedisReplayStore } from './ingest/replay-store-redis.js';
import { SqliteReplayStore } from './ingest/replay-store-sqlite.js';
import type { IngestStatus } from './ingest/status.js';
import { createMetrics, type Metrics } from './metrics.js';
import { copyOperationalDbOffThread } from './operational/backup.js';
import { openOperationalStore, type OperationalStore } from './operational/store.js';

export interface Service {
  app: FastifyInstance;
  store: OperationalStore;
  analytics: AnalyticsClient;
  pipeline: IngestPipeline;
  flusher: Flusher;
  consumer: StreamConsumer | undefined;
  replay: ReplayMemory;
  health: HealthMonitor;
  metrics: Metrics;
  adminToken: string;
  /** Starts the flusher, health checks, the purge of expired sessions and idempotency keys and, when REDIS_URL is set, the stream consumer. */
  start(): Promise<void>;
  /** Stops HTTP, the consumer (after its batch), flushes, closes the stores. Safe to call twice. */
  close(): Promise<void>;
}

export interface ServiceOptions {
  logger: Logger;
  metrics?: Metrics;
  /** Unix seconds, for frame time checks and replay windows; a benchmark may run a faster clock. */
  now?: () => number;
  /** Milliseconds of real time per second of `now` (for Redis TTLs under a faster clock). */
  msPerSecond?: number;
}

/** Expired sessions and idempotency keys are deleted this often. */
const PURGE_MS = 10 * 60 * 1000;

/**
 * Opens every resource once and hands it to what needs it. main.ts listens on `app`; tests use
 * the same composition around temp directories.
 */
export async function openService(config: Config, options: ServiceOptions): Promise<Service> {
  const { logger } = options;
  const now = options.now ?? (() => Date.now() / 1000);
  const metrics = options.metrics ?? createMetrics();
  const adminToken = resolveAdminToken(config.adminToken, config.dataDir, logger);
  const sqlitePath = join(config.dataDir, 'ocean.db');
  const store = openOperationalStore(sqlitePath, {
    sessionTtlS: config.sessionTtlS,
    idempotencyKeyTtlS: config.idempotencyKeyTtlS,
    now,
    maxSensorsPerUser: config.userLimits.maxSensors,
  });
  // The DuckDB store opens in its worker thread on first use (start() or the first query).
  const analytics = new AnalyticsClient({
    path: join(config.dataDir, 'analytics.duckdb'),
    memoryLimit: config.duckdb.memoryLimit,
    threads: config.duckdb.threads,
    queryTimeoutMs: config.duckdb.queryTimeoutMs,
    maxExports: config.userLimits.exportsRunning,
    limits: {
      perCallerRunning: config.userLimits.analyticsRunning,
      perCallerWaiting: config.userLimits.analyticsWaiting,
      queue: config.userLimits.analyticsQueue,
      perCallerExports: config.userLimits.exportsPerUser,
      maxDurationMs: config.userLimits.exportMaxDurationMs,
      minBytesPerS: config.userLimits.exportMinBytesPerS,
    },
    metrics,
    logger,
  });

  const redis = config.redisUrl
    ? // Commands wait for a (re)connection, but at most 2 s: then HTTP answers 503 and the consumer backs off.
      new Redis(config.redisUrl, { maxRetriesPerRequest: 3, commandTimeout: 2000 })
    : undefined;
  redis?.on('error', (err: Error) => logger.debug({ err }, 'redis connection error'));
  const { maxDriftS } = config.nanogridata;
  const replayStore = redis
    ? new RedisReplayStore(redis, { prefix: `${config.ingest.stream}:replay:`, maxDriftS, now, ...(options.msPerSecond ? { msPerSecond: options.msPerSecond } : {}) })
    : new SqliteReplayStore(store.db, { maxDriftS, now });
  const replay = new ReplayMemory(replayStore, store.db, logger);
  const pipeline = new IngestPipeline({
    store,
    decoder: new DecodeWorker(config.nanogridata, logger),
    replay,
    metrics,
    logger,
    now,
    ...(redis ? { onReadingsStored: readingStreamPublisher(redis, config.ingest.readingStreamMaxLen, logger, metrics) } : {}),
  });
  const flusher = new Flusher({
    store,
    analytics,
    metrics,
    logger,
    batchRecords: config.ingest.flushBatchRecords,
    intervalMs: config.ingest.flushIntervalMs,
    retentionS: config.ingest.bufferRetentionS,
    now,
  });
  const consumer = redis
    ? new StreamConsumer({ redis, config: config.ingest, pipeline, outbox: store.streamOutbox, metrics, logger })
    : undefined;
  if (!redis) logger.info('REDIS_URL unset: no stream consumer; HTTP ingest only, replay memory in ocean.db');

  const ingestStatus = (): IngestStatus => ({
    consumer: consumer?.status() ?? { enabled: false, connected: false },
    flusher: flusher.status(),
    replay: replay.status(),
  });
  const health = new HealthMonitor({ store, analytics, ingestStatus, dataDir: config.dataDir, metrics, logger });
  const backup = singleBackup({
    mode: 'online',
    analytics: (path) => analytics.backupTo(path),
    operational: (path) => copyOperationalDbOffThread(sqlitePath, path),
    hold: (fn) => flusher.pausedWhile(fn),
  }, logger);
  const app = await buildApp({ config, adminToken, store, analytics, pipeline, metrics, ingestStatus, health, backup, logger });

  let purgeTimer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  return {
    app,
    store,
    analytics,
    pipeline,
    flusher,
    consumer,
    replay,
    health,
    metrics,
    adminToken,
    async start() {
      // Both worker threads first: a DuckDB file that cannot be opened stops the start here.
      await Promise.all([analytics.open(), pipeline.ready()]);
      await flusher.start();
      consumer?.start();
      await health.start();
      void replay.flush();
      purgeTimer = setInterval(() => {
        try {
          const purged = store.sessions.purgeExpired();
          if (purged > 0) logger.info({ purged }, 'deleted expired sessions');
          const keys = store.billing.purgeIdempotencyKeys();
          if (keys > 0) logger.info({ purged: keys }, 'deleted expired idempotency keys');
        } catch (err) {
          logger.warn({ err }, 'could not delete expired sessions or idempotency keys');
        }
      }, PURGE_MS);
      purgeTimer.unref();
    },
    close() {
      // Every step runs even when one before it fails; each failure is logged, and the first is thrown.
      closing ??= (async () => {
        clearInterval(purgeTimer);
        const failures: unknown[] = [];
        const step = async (name: string, fn: () => unknown) => {
          try {
            await fn();
          } catch (err) {
            failures.push(err);
            logger.error({ err, step: name }, 'shutdown step failed');
          }
        };
        await step('http', () => app.close());
        await step('consumer', () => consumer?.stop());
        await step('flusher', () => flusher.stop());
        await step('health', () => health.stop());
        await step('replay memory', () => replay.flush());
        await step('pipeline', () => pipeline.close());
        await step('analytics', () => analytics.close());
        await step('store', () => store.close());
        await step('redis', () => redis?.disconnect());
        if (failures.length > 0) throw failures[0];
      })();
      return closing;
    },
  };
}
