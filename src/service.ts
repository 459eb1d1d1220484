import { Redis } from 'ioredis';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { resolveAdminToken } from './admin-token.js';
import { AnalyticsEngine } from './analytics/engine.js';
import { buildApp } from './app.js';
import type { Config } from './config.js';
import { StreamConsumer } from './ingest/consumer.js';
import { Flusher } from './ingest/flusher.js';
import { IngestPipeline } from './ingest/pipeline.js';
import { RedisReplayMemory } from './ingest/redis-replay.js';
import type { IngestStatus } from './ingest/status.js';
import { createMetrics, type Metrics } from './metrics.js';
import { InMemoryReplayMemory } from './nanogridata/replay.js';
import { openOperationalStore, type OperationalStore } from './operational/store.js';

export interface Service {
  app: FastifyInstance;
  store: OperationalStore;
  analytics: AnalyticsEngine;
  pipeline: IngestPipeline;
  flusher: Flusher;
  consumer: StreamConsumer | undefined;
  metrics: Metrics;
  adminToken: string;
  /** Starts the flusher and, when REDIS_URL is set, the stream consumer. */
  start(): Promise<void>;
  /** Stops HTTP, the consumer (after its batch), flushes, closes the stores. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Opens every resource once and hands it to what needs it. main.ts listens on `app`; tests use
 * the same composition around temp directories.
 */
export async function openService(config: Config, options: { logger: Logger; metrics?: Metrics }): Promise<Service> {
  const { logger } = options;
  const metrics = options.metrics ?? createMetrics();
  const adminToken = resolveAdminToken(config.adminToken, config.dataDir, logger);
  const store = openOperationalStore(join(config.dataDir, 'ocean.db'), { sessionTtlS: config.sessionTtlS });
  let analytics: AnalyticsEngine;
  try {
    analytics = await AnalyticsEngine.open({
      path: join(config.dataDir, 'analytics.duckdb'),
      memoryLimit: config.duckdb.memoryLimit,
      threads: config.duckdb.threads,
      metrics,
      logger,
    });
  } catch (err) {
    store.close();
    throw err;
  }

  const redis = config.redisUrl
    ? // Commands wait for a (re)connection, but at most 2 s: then HTTP answers 503 and the consumer backs off.
      new Redis(config.redisUrl, { maxRetriesPerRequest: 3, commandTimeout: 2000 })
    : undefined;
  redis?.on('error', (err: Error) => logger.debug({ err }, 'redis connection error'));
  const replay = redis ? new RedisReplayMemory(redis, `${config.ingest.stream}:replay:`) : new InMemoryReplayMemory();
  const pipeline = new IngestPipeline({ store, nanogridata: config.nanogridata, replay, metrics });
  const flusher = new Flusher({
    store,
    analytics,
    metrics,
    logger,
    batchRows: config.ingest.flushBatchRows,
    intervalMs: config.ingest.flushIntervalMs,
    retentionS: config.ingest.bufferRetentionS,
  });
  const consumer = redis ? new StreamConsumer({ redis, config: config.ingest, pipeline, metrics, logger }) : undefined;
  if (!redis) logger.info('REDIS_URL unset: no stream consumer; HTTP ingest only');

  const ingestStatus = (): IngestStatus => ({
    consumer: consumer?.status() ?? { enabled: false, connected: false },
    flusher: flusher.status(),
  });
  const app = await buildApp({ config, adminToken, store, analytics, pipeline, metrics, ingestStatus, logger });

  let closing: Promise<void> | undefined;
  return {
    app,
    store,
    analytics,
    pipeline,
    flusher,
    consumer,
    metrics,
    adminToken,
    async start() {
      await flusher.start();
      consumer?.start();
    },
    close() {
      closing ??= (async () => {
        await app.close();
        await consumer?.stop();
        await flusher.stop();
        await analytics.close();
        store.close();
        redis?.disconnect();
      })();
      return closing;
    },
  };
}
