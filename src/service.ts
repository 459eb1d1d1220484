import { Redis } from 'ioredis';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { resolveAdminToken } from './admin-token.js';
import { AnalyticsClient } from './analytics/client.js';
import { buildApp, type ServiceFacts } from './app.js';
import { singleBackup } from './backup/take.js';
import type { Config } from './config.js';
import { HealthMonitor } from './health.js';
import { Committer } from './ingest/committer.js';
import { StreamConsumer } from './ingest/consumer.js';
import { consumerNameOf } from './ingest/consumer-name.js';
import { DecodePool } from './ingest/decode-pool.js';
import { ingestFrameBody, ownerOption, type HttpIngest } from './ingest/http-ingest.js';
import { IngestCoalescer } from './ingest/ingest-coalescer.js';
import { applyEarlierActivity } from './ingest/device-activity.js';
import { IngestPipeline } from './ingest/pipeline.js';
import { readingStreamPublisher } from './ingest/reading-streams.js';
import { ReplayIndex } from './ingest/replay-index.js';
import { SideEffects } from './ingest/side-effects.js';
import type { IngestStatus } from './ingest/status.js';
import { createMetrics, type Metrics } from './metrics.js';
import { copyOperationalDbOffThread } from './operational/backup.js';
import { openOperationalStore, type OperationalStore } from './operational/store.js';
import { shutDownInOrder } from './shutdown.js';

export interface Service {
  app: FastifyInstance;
  store: OperationalStore;
  analytics: AnalyticsClient;
  pipeline: IngestPipeline;
  committer: Committer;
  consumer: StreamConsumer | undefined;
  replay: ReplayIndex;
  health: HealthMonitor;
  metrics: Metrics;
  adminToken: string;
  /**
   * Takes up the ingest state from DuckDB (replay index, side effects, readings not yet committed),
   * starts health checks, periodic purges and, when REDIS_URL is set, the stream consumer (which
   * throws ConsumerRefusedError when another data dir serves the group).
   */
  start(): Promise<void>;
  /** Stops HTTP, the consumer (after its batch), the committer, closes the stores. Safe to call twice. */
  close(): Promise<void>;
}

export interface ServiceOptions {
  logger: Logger;
  metrics?: Metrics;
  /** Unix seconds, for frame time checks, the replay window and retention; a benchmark may run a faster clock. */
  now?: () => number;
}

const fileSize = (path: string) => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

/** Expired sessions and idempotency keys, and work-queue rows past retention, are deleted this often. */
const PURGE_MS = 60 * 1000;
/** Seconds a fingerprint is remembered beyond the drift window. */
const REPLAY_MARGIN_S = 10;
/** The replay index forgets frames that left the window this often. */
const FORGET_MS = 5000;

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
  const duckdbPath = join(config.dataDir, 'analytics.duckdb');
  const store = openOperationalStore(sqlitePath, {
    sessionTtlS: config.sessionTtlS,
    idempotencyKeyTtlS: config.idempotencyKeyTtlS,
    now,
    maxSensorsPerUser: config.userLimits.maxSensors,
  });
  // The DuckDB store opens in its worker thread on first use (start() or the first query).
  const analytics = new AnalyticsClient({
    path: duckdbPath,
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
  // A copy of a frame has its header time, accepted within ±maxDriftS of the clock: remembering each
  // frame until its header time is maxDriftS behind the clock catches every copy that could pass;
  // the margin covers a batch decoded just before the window moved and committed just after.
  const replayWindowS = config.nanogridata.maxDriftS + REPLAY_MARGIN_S;
  const replay = new ReplayIndex({ windowS: replayWindowS });
  const effects = new SideEffects(store, logger);
  const committer = new Committer({ analytics, store, effects, metrics, logger, now, replayWindowS });
  const readingStreams = redis && readingStreamPublisher(redis, config.ingest.readingStreamMaxLen, logger, metrics);
  const pipeline = new IngestPipeline({
    store,
    decoder: new DecodePool(config.nanogridata, logger),
    replay,
    committer,
    metrics,
    now,
    ...(readingStreams ? { onReadingsStored: readingStreams.publish } : {}),
  });
  const consumer = redis
    ? new StreamConsumer({ redis, config: config.ingest, consumerName: consumerNameOf(config.dataDir, config.ingest.consumerName), pipeline, metrics, logger })
    : undefined;
  if (!redis) logger.info('REDIS_URL unset: no stream consumer; HTTP ingest only');

  const ingestStatus = (): IngestStatus => ({
    consumer: consumer?.status() ?? { enabled: false, connected: false },
    committer: { ...committer.status(), backlog: committer.backlog() },
    replay: { frames: replay.size, bytes: replay.bytes },
  });
  const sqlitePing = store.db.prepare('SELECT 1');
  const health = new HealthMonitor({
    probes: [
      { name: 'sqlite', check: () => sqlitePing.get(), whenDown: 'unhealthy' },
      // DuckDB on a connection of its own, never behind user queries.
      { name: 'duckdb', check: () => analytics.healthPing(), whenDown: 'unhealthy' },
    ],
    ingestStatus,
    dataDir: config.dataDir,
    metrics,
    logger,
  });
  const facts: ServiceFacts = {
    engine: 'sqlite+duckdb',
    engines: { operational: 'sqlite', analytics: 'duckdb' },
    sizes: () => ({ sqlite: fileSize(sqlitePath) + fileSize(`${sqlitePath}-wal`), duckdb: fileSize(duckdbPath) + fileSize(`${duckdbPath}.wal`) }),
    buffer: () => ({ ...store.buffer.counts(), unprocessed: committer.backlog() }),
    ingest: ingestStatus,
  };
  // Single readings from concurrent requests share one SQLite transaction (group commit).
  const coalescer = new IngestCoalescer(store, pipeline);
  const ingest: HttpIngest = {
    frames: (body, options) => ingestFrameBody(pipeline, body, options),
    reading: async (reading, owner) => (await coalescer.submit([reading], owner))[0]!,
    readings: async (readings, owner) => pipeline.ingestReadings(readings, { source: 'http', ...ownerOption(owner) }),
  };
  const backup = singleBackup({
    mode: 'online',
    analytics: (path) => analytics.backupTo(path),
    operational: (path) => copyOperationalDbOffThread(sqlitePath, path),
  }, logger);
  const app = await buildApp({ config, adminToken, store, analytics, ingest, metrics, health, facts, backup, logger });

  let purgeTimer: NodeJS.Timeout | undefined;
  let forgetTimer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  return {
    app,
    store,
    analytics,
    pipeline,
    committer,
    consumer,
    replay,
    health,
    metrics,
    adminToken,
    async start() {
      // Both worker pools first: a DuckDB file that cannot be opened stops the start here.
      await Promise.all([analytics.open(), pipeline.ready()]);
      const state = await analytics.ingestState();
      applyEarlierActivity(store, logger);
      effects.recover(state);
      const window = await analytics.fingerprints(Math.floor(now() - replayWindowS));
      for (let i = 0; i < window.ts.length; i++) replay.add(window.fp, i * 8, window.ts[i]!, window.tag[i]!);
      logger.info({ frames: replay.size, bytes: replay.bytes }, 'replay index rebuilt from analytics');
      await committer.start(state);
      await consumer?.start();
      await health.start();
      const purge = () => {
        try {
          const purged = store.sessions.purgeExpired();
          if (purged > 0) logger.info({ purged }, 'deleted expired sessions');
          const keys = store.billing.purgeIdempotencyKeys();
          if (keys > 0) logger.info({ purged: keys }, 'deleted expired idempotency keys');
          // Readings past retention go once in analytics and marked processed (never while queued).
          const removed = store.buffer.prune(committer.status().queue_through, Math.floor(now()) - config.ingest.bufferRetentionS);
          if (removed > 0) logger.info({ removed }, 'deleted work-queue rows past retention');
        } catch (err) {
          logger.warn({ err }, 'a periodic purge failed');
        }
      };
      purge();
      purgeTimer = setInterval(purge, PURGE_MS);
      purgeTimer.unref();
      // The index drops whole time slices as the window moves past them: often, so it stays small.
      forgetTimer = setInterval(() => replay.forgetBefore(Math.floor(now() - replayWindowS)), FORGET_MS);
      forgetTimer.unref();
    },
    close() {
      closing ??= (async () => {
        clearInterval(purgeTimer);
        clearInterval(forgetTimer);
        await shutDownInOrder(logger, [
          ['http', () => app.close()],
          ['consumer', () => consumer?.stop()],
          ['committer', () => committer.stop()],
          ['side effects', () => effects.stop()],
          ['health', () => health.stop()],
          ['pipeline', () => pipeline.close()],
          ['analytics', () => analytics.close()],
          ['store', () => store.close()],
          ['reading streams', () => readingStreams?.close()],
          ['redis', () => redis?.disconnect()],
        ]);
      })();
      return closing;
    },
  };
}
