import type { RoutePlugin } from '../../app.js';
import { plainJsonSerializer } from '../plain-serializer.js';
import { loadRedocBundle, REDOC_SCRIPT_URL, redocPage } from '../redoc.js';
import { docsSchema, healthSchema, statusSchema } from '../schemas/system.js';

const ARCHITECTURE = 'ocean-core-ts';

/** What /api/ocean/docs says of the service, by mode. */
const EMBEDDED_DESCRIPTION = {
  architecture:
    'Nanogridata frames (Redis Stream or HTTP) → decode workers → one DuckDB commit per batch with their replay fingerprints → XACK; JSON readings → SQLite work queue → the same commit; operational data in SQLite; one process',
  layers: {
    ingest: 'Nanogridata frames via Redis Stream (consumer group) or HTTP → one DuckDB transaction per batch (readings, fingerprints, position) → XACK',
    operational: 'SQLite (WAL): users, sessions, billing + ledger, metadata, devices, the JSON work queue',
    analytics: 'DuckDB: measurements; stats, time buckets, z-score anomalies, compare, export',
    observability: 'Prometheus /metrics, OpenAPI /openapi.json, Swagger UI /docs, ReDoc /redoc',
  },
  performance: {
    ingest: 'one SQLite transaction per batch (group commit for single HTTP readings); exactly once into DuckDB',
    analytics: 'columnar scans over sensor-hashed partitions; every value bound as a parameter',
    sessions: 'token check from an in-process cache (write-through invalidation, expiry checked on every hit), else one indexed lookup; last_activity written at most once a minute',
    memory: 'one process; DuckDB memory bounded by DUCKDB_MEMORY_LIMIT',
  },
};
const SHARED_DESCRIPTION = {
  architecture:
    'Nanogridata frames (Redis Stream or HTTP) → decode workers → one PostgreSQL transaction per batch with their replay fingerprints → XACK; JSON readings in the same transaction; every instance shares one PostgreSQL and one consumer group (DATABASE_URL)',
  layers: {
    ingest: 'Nanogridata frames via Redis Stream (a consumer group shared by every instance) or HTTP → one PostgreSQL transaction per batch (readings, fingerprints) → XACK',
    operational: 'PostgreSQL: users, sessions, billing + ledger, metadata, devices, the JSON work queue',
    analytics: 'PostgreSQL: readings by series and time; stats, time buckets, z-score anomalies, compare; exports through an in-memory DuckDB',
    observability: 'Prometheus /metrics, OpenAPI /openapi.json, Swagger UI /docs, ReDoc /redoc',
  },
  performance: {
    ingest: 'one transaction per batch; the fingerprints decide what is stored, once, whichever instance reads it',
    analytics: 'one sensor from a covering index (series, ts) with the value; every value bound as a parameter',
    sessions: 'no cache (a revocation holds on every instance at once); checks arriving together share one query',
    memory: 'no state an instance needs to keep: any number of instances',
  },
};

/**
 * The original's name for a route, for /api/ocean/docs `endpoints`: method and path words,
 * e.g. `POST /api/ocean/users` → post_users, `GET /api/ocean/users/:user_id` → get_users_by_user_id.
 */
export function endpointName(method: string, url: string): string {
  const words = url
    .replace(/^\/api\/ocean/, '')
    .split('/')
    .filter(Boolean)
    .map((segment) => (segment.startsWith(':') ? `by_${segment.slice(1)}` : segment.replace(/[^A-Za-z0-9]+/g, '_')));
  return [method.toLowerCase(), ...words].join('_');
}

/** Health, metrics, status and the docs pages. None of them needs auth (status says more to the admin), and none scans a table. */
export const systemRoutes: RoutePlugin = async (app, { deps, auth, routes }) => {
  const { facts, metrics, config } = deps;

  const dbSizes = () => {
    const sizes = facts.sizes();
    for (const [engine, bytes] of Object.entries(sizes)) metrics.databaseSize.set({ engine }, bytes);
    return sizes;
  };

  // /health is polled hard (load balancers, health checks): store sizes and the ingest state are
  // taken at most every 250 ms; the work-queue counts stay exact (the embedded buffer keeps them
  // in memory and drops them on every counter write).
  const HEALTH_FIGURES_MS = 250;
  let figures: { at: number; sizes: Record<string, number>; ingest: ReturnType<typeof facts.ingest> } | undefined;
  const healthFigures = async () => {
    const now = performance.now();
    if (!figures || now - figures.at >= HEALTH_FIGURES_MS) figures = { at: now, sizes: dbSizes(), ingest: facts.ingest() };
    let buffer = { rows: 0, unprocessed: 0, queued: 0 };
    try {
      buffer = await facts.buffer();
    } catch {
      // reported by the checks
    }
    return { ...figures, buffer };
  };

  app.get(
    '/health',
    {
      // Polled by load balancers and health checks: the answer is built here in full, so plain
      // JSON.stringify, without re-validating it with zod on every call.
      serializerCompiler: plainJsonSerializer,
      schema: {
        summary: 'Liveness and health: healthy, degraded (with the reasons) or unhealthy (503: a store is unusable)',
        tags: ['system'],
        response: { 200: healthSchema, 503: healthSchema },
      },
    },
    async (_request, reply) => {
      // Evaluated in the background (health.ts): answering never waits for a store.
      const health = deps.health.get();
      const { buffer, sizes, ingest } = await healthFigures();
      return reply.code(health.status === 'unhealthy' ? 503 : 200).send({
        status: health.status,
        engine: facts.engine,
        architecture: ARCHITECTURE,
        // The original's field; one process on the embedded engines, no busy loops.
        cpu_mode: 'efficient',
        telemetry_buffer: buffer.rows,
        db_size_mb: Math.round((Object.values(sizes).reduce((n, b) => n + b, 0) / 1048576) * 100) / 100,
        timestamp: new Date().toISOString(),
        checks: health.checks,
        reasons: health.reasons,
        checked_at: health.at,
        telemetry_unprocessed: buffer.unprocessed,
        ingest: { consumer_connected: ingest.consumer.connected, consumer_enabled: ingest.consumer.enabled },
      });
    },
  );

  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['system'] } }, async (_request, reply) => {
    const { buffer } = await healthFigures();
    metrics.bufferRows.set({ state: 'total' }, buffer.rows);
    metrics.bufferRows.set({ state: 'unprocessed' }, buffer.unprocessed);
    metrics.bufferRows.set({ state: 'queued' }, buffer.queued);
    dbSizes();
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get(
    '/api/ocean/status',
    {
      schema: {
        summary: "Service status: the original's keys for anyone; engines, buffer, memory, database sizes and ingest state with the admin token",
        tags: ['system'],
        response: { 200: statusSchema },
      },
    },
    async (request) => {
      const memory = process.memoryUsage();
      const { buffer } = await healthFigures();
      const open = {
        status: 'operational' as const,
        cpu_efficient: true,
        engine: facts.engine,
        telemetry_buffer_size: buffer.rows,
        memory_usage_mb: Math.round((memory.rss / 1048576) * 10) / 10,
      };
      // Public (load balancers): no host name, Redis memory, sizes or errors. A bad token is no admin.
      if ((await auth.identify(request))?.kind !== 'admin') return open;
      return {
        ...open,
        engines: { ...facts.engines, stream: config.redisUrl ? 'redis' : 'disabled' },
        telemetry_buffer: buffer,
        heap_used_mb: Math.round((memory.heapUsed / 1048576) * 10) / 10,
        db_size_bytes: dbSizes(),
        uptime_s: Math.round(process.uptime()),
        ingest: { ...facts.ingest() },
        timestamp: new Date().toISOString(),
      };
    },
  );

  app.get(
    '/api/ocean/docs',
    { schema: { summary: 'Architecture summary and endpoint list', tags: ['system'], response: { 200: docsSchema } } },
    async () => ({
      system: 'Ocean Core',
      ...(facts.engine === 'postgresql' ? SHARED_DESCRIPTION : EMBEDDED_DESCRIPTION),
      endpoints: Object.fromEntries(routes.map((r) => [endpointName(r.method, r.url), `${r.method} ${r.url}`])),
      routes: routes.map((r) => ({ method: r.method, path: r.url, ...(r.summary ? { summary: r.summary } : {}) })),
    }),
  );

  app.get('/redoc', { schema: { summary: 'ReDoc view of the OpenAPI document', tags: ['system'] } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(redocPage('/openapi.json', 'Ocean Core')),
  );

  // ReDoc's script, read on the first request and kept; browsers keep it a day, then revalidate.
  let redocBundle: ReturnType<typeof loadRedocBundle> | undefined;
  app.get(REDOC_SCRIPT_URL, { schema: { hide: true } }, async (request, reply) => {
    // A failed read is not kept: the next request tries again.
    const { body, etag } = await (redocBundle ??= loadRedocBundle().catch((err: unknown) => {
      redocBundle = undefined;
      throw err;
    }));
    reply.header('cache-control', 'public, max-age=86400').header('etag', etag);
    if (request.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.type('application/javascript; charset=utf-8').send(body);
  });
};
