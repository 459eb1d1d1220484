import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { RoutePlugin } from '../../app.js';

const fileSize = (path: string) => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

/** Health, metrics, status and the docs index. None of them needs auth, and none scans a table. */
export const systemRoutes: RoutePlugin = async (app, { deps, routes }) => {
  const { store, analytics, metrics, config } = deps;
  const sqlitePing = store.db.prepare('SELECT 1');
  const sqlitePath = join(config.dataDir, 'ocean.db');
  const duckdbPath = join(config.dataDir, 'analytics.duckdb');

  const dbSizes = () => {
    const sqlite = fileSize(sqlitePath) + fileSize(`${sqlitePath}-wal`);
    const duckdb = fileSize(duckdbPath) + fileSize(`${duckdbPath}.wal`);
    metrics.databaseSize.set({ engine: 'sqlite' }, sqlite);
    metrics.databaseSize.set({ engine: 'duckdb' }, duckdb);
    return { sqlite, duckdb };
  };

  app.get('/health', { schema: { summary: 'Liveness and store health (503 when a store is unusable)' } }, async (_request, reply) => {
    const checks = { sqlite: 'ok', duckdb: 'ok' };
    let buffer = { rows: 0, unprocessed: 0 };
    try {
      sqlitePing.get();
      buffer = store.buffer.counts();
    } catch {
      checks.sqlite = 'unavailable';
    }
    try {
      await analytics.ping();
    } catch {
      checks.duckdb = 'unavailable';
    }
    const healthy = checks.sqlite === 'ok' && checks.duckdb === 'ok';
    const sizes = dbSizes();
    const ingest = deps.ingestStatus();
    return reply.code(healthy ? 200 : 503).send({
      status: healthy ? 'healthy' : 'unhealthy',
      engine: 'sqlite+duckdb',
      architecture: 'ocean-core-ts',
      checks,
      telemetry_buffer: buffer.rows,
      telemetry_unprocessed: buffer.unprocessed,
      db_size_mb: Math.round(((sizes.sqlite + sizes.duckdb) / 1048576) * 100) / 100,
      ingest: { consumer_connected: ingest.consumer.connected, consumer_enabled: ingest.consumer.enabled },
      timestamp: new Date().toISOString(),
    });
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics' } }, async (_request, reply) => {
    const counts = store.buffer.counts();
    metrics.bufferRows.set({ state: 'total' }, counts.rows);
    metrics.bufferRows.set({ state: 'unprocessed' }, counts.unprocessed);
    dbSizes();
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get('/api/ocean/status', { schema: { summary: 'Service status, engines, buffer, memory and ingest state' } }, async () => {
    const memory = process.memoryUsage();
    const sizes = dbSizes();
    return {
      status: 'operational',
      engines: { operational: 'sqlite', analytics: 'duckdb', stream: config.redisUrl ? 'redis' : 'disabled' },
      telemetry_buffer: store.buffer.counts(),
      memory_usage_mb: Math.round((memory.rss / 1048576) * 10) / 10,
      heap_used_mb: Math.round((memory.heapUsed / 1048576) * 10) / 10,
      db_size_bytes: sizes,
      uptime_s: Math.round(process.uptime()),
      ingest: deps.ingestStatus(),
      timestamp: new Date().toISOString(),
    };
  });

  app.get('/api/ocean/docs', { schema: { summary: 'Architecture summary and endpoint list' } }, async () => ({
    service: 'Ocean Core',
    architecture: {
      ingest: 'Nanogridata frames via Redis Stream (consumer group) or HTTP → SQLite buffer → DuckDB',
      operational: 'SQLite (WAL): users, sessions, billing + ledger, metadata, devices, telemetry buffer',
      analytics: 'DuckDB: measurements; stats, time buckets, z-score anomalies, compare, export',
      observability: 'Prometheus /metrics, OpenAPI /openapi.json, Swagger UI /docs',
    },
    endpoints: routes.map((r) => ({ method: r.method, path: r.url, ...(r.summary ? { summary: r.summary } : {}) })),
  }));
};
