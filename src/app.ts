import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, type FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { pino, type Logger } from 'pino';
import type { Caller } from './analytics/admission.js';
import type { AnalyticsStore } from './analytics/types.js';
import type { Config } from './config.js';
import type { Health } from './health.js';
import { createAuth, type Auth } from './http/auth.js';
import { registerBodyParsers } from './http/body-parsers.js';
import { frameworkErrors, registerErrorHandling } from './http/errors.js';
import { MethodIndex } from './http/method-not-allowed.js';
import { adminRoutes } from './http/routes/admin.js';
import { requestIdOf } from './http/request-id.js';
import { requestLogger, type RequestLog } from './http/request-logger.js';
import { analyticsRoutes } from './http/routes/analytics.js';
import { billingRoutes } from './http/routes/billing.js';
import { devicesRoutes } from './http/routes/devices.js';
import { framesRoutes } from './http/routes/frames.js';
import { metadataRoutes } from './http/routes/metadata.js';
import { sessionsRoutes } from './http/routes/sessions.js';
import { systemRoutes } from './http/routes/system.js';
import { telemetryRoutes } from './http/routes/telemetry.js';
import { usersRoutes } from './http/routes/users.js';
import { zodValidatorCompiler } from './http/validation.js';
import type { HttpIngest } from './ingest/http-ingest.js';
import type { IngestStatus } from './ingest/status.js';
import type { Manifest } from './backup/manifest.js';
import type { Metrics } from './metrics.js';
import type { StoreOperations } from './operational/store.js';

export interface AppDeps {
  config: Config;
  /** The admin bearer token in force (configured or generated). */
  adminToken: string;
  store: StoreOperations;
  /** The analytics store as one caller's requests use it (each caller has its share: analytics/admission.ts). */
  analytics: { forCaller(caller: Caller): AnalyticsStore };
  ingest: HttpIngest;
  metrics: Metrics;
  /** Health evaluated in the background (/health answers from it at once). */
  health: { get(): Health };
  /** What /health, /metrics and /status report about the stores and the ingest workers. */
  facts: ServiceFacts;
  /** Takes a backup of both stores into a directory (backup/take.ts), one at a time; the shared mode refuses (pg_dump). */
  backup: (dir: string) => Promise<Manifest>;
  logger?: Logger;
}

/** The figures of either mode's stores, for the system routes. */
export interface ServiceFacts {
  /** `engine` of /health and /status (the embedded one is the original's value). */
  engine: string;
  engines: { operational: string; analytics: string };
  /** Bytes each store takes (files, or the database), by engine; also the `ocean_database_size_bytes` gauge. */
  sizes(): Record<string, number>;
  /** JSON readings kept (rows), not yet in analytics (unprocessed) and in the work queue (queued). */
  buffer(): { rows: number; unprocessed: number; queued: number } | Promise<{ rows: number; unprocessed: number; queued: number }>;
  /** State of the Redis consumer and the ingest workers. */
  ingest(): IngestStatus;
}

/** What every route plugin receives. */
export interface RouteContext {
  deps: AppDeps;
  auth: Auth;
  /** Every route registered, for /api/ocean/docs. */
  routes: ReadonlyArray<{ method: string; url: string; summary?: string }>;
}

export type RoutePlugin = FastifyPluginAsyncZod<RouteContext>;

const API_PREFIX = '/api/ocean';

/**
 * Builds the HTTP app around the stores it is handed. It does not listen: main.ts does, and tests
 * use app.inject(). Closing the app does not close the stores; their owner does.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    // Tests pass no logger: a disabled one keeps request.log usable.
    loggerInstance: (deps.logger ?? pino({ enabled: false })) as FastifyBaseLogger,
    bodyLimit: deps.config.bodyLimitBytes,
    // A slow or stalled body is cut off (408) rather than held; Node checks every second, not 30.
    requestTimeout: deps.config.limits.requestTimeoutMs,
    http: { connectionsCheckingInterval: 1000, headersTimeout: Math.min(60_000, deps.config.limits.requestTimeoutMs) },
    // X-Request-Id is read by requestIdOf, which keeps it only when it looks like an id.
    requestIdHeader: false,
    genReqId: requestIdOf,
    // `/users/` reaches `/users` (the original redirected with 307; answering directly is simpler for clients).
    // Path parameters are sensor ids and keys of up to 256 characters, percent-encoded (up to 12
    // bytes each); past the router's default of 100 Fastify would answer 414 before validation.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 256 * 12 },
    frameworkErrors,
    // One line per request, written by the onResponse hook below, instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: requestLogger,
  });
  app.setValidatorCompiler(zodValidatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('principal', null);
  registerBodyParsers(app);
  const methods = new MethodIndex();
  registerErrorHandling(app, deps.metrics, methods);
  const auth = createAuth(deps.adminToken, deps.store);

  const routes: Array<{ method: string; url: string; summary?: string }> = [];
  app.addHook('onRoute', (route) => {
    const routeMethods = Array.isArray(route.method) ? route.method : [route.method];
    methods.add(route.url, routeMethods);
    if (route.schema?.hide || route.url.startsWith('/docs')) return;
    documentAccess(route, auth);
    for (const method of routeMethods) {
      if (method === 'HEAD') continue;
      routes.push({ method, url: route.url, summary: route.schema?.summary });
    }
  });

  app.addHook('onResponse', (request, reply, done) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status_code: String(reply.statusCode),
    };
    deps.metrics.requestsTotal.inc(labels);
    deps.metrics.requestDuration.observe(labels, reply.elapsedTime / 1000);
    logRequest(request, reply);
    done();
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'Ocean Core',
        description: 'Telemetry ingest (Nanogridata frames, JSON readings), operational data and DuckDB analytics.',
        version: '1.0.0',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: "A user's session token (from /sessions/create), or the admin token" },
          admin: { type: 'http', scheme: 'bearer', description: 'The admin token (ADMIN_TOKEN or DATA_DIR/admin.token)' },
        },
      },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
    transformObject: (document) => ('openapiObject' in document ? optionalBodies(document.openapiObject as OpenApiDocument) : document.swaggerObject),
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const ctx: RouteContext = { deps, auth, routes };
  await app.register(systemRoutes, ctx);
  for (const plugin of [
    usersRoutes,
    billingRoutes,
    sessionsRoutes,
    metadataRoutes,
    devicesRoutes,
    telemetryRoutes,
    framesRoutes,
    analyticsRoutes,
    adminRoutes,
  ]) {
    await app.register(plugin, { ...ctx, prefix: API_PREFIX });
  }
  return app;
}

/** A request slower than this is logged at info even when it succeeded. */
const SLOW_REQUEST_MS = 1000;

/**
 * One log line per request, after the answer: at info for failures (4xx, 5xx) and slow requests,
 * at debug for fast successful ones, which at a few thousand requests a second would cost more
 * CPU than answering them (their counts and latencies are in /metrics). The req serializer
 * (logger.ts) scrubs ?token=; headers are never logged.
 */
function logRequest(request: FastifyRequest, reply: FastifyReply): void {
  const ms = reply.elapsedTime;
  const level = reply.statusCode >= 400 || ms >= SLOW_REQUEST_MS ? 'info' : 'debug';
  const log = request.log as RequestLog;
  if (!log.isLevelEnabled(level)) return;
  log[level]({ req: request, res: reply, responseTime: Math.round(ms * 10) / 10 }, 'request completed');
}

/**
 * The OpenAPI security of a route, read from its auth hook so that it cannot drift: admin-only
 * routes get the `admin` scheme and "(admin)" in their summary; routes without an auth hook are
 * public (`security: []`, no lock in Swagger UI).
 */
function documentAccess(route: RouteOptions, auth: Auth): void {
  const hooks = [route.onRequest, route.preHandler].flat().filter(Boolean);
  const schema = (route.schema ??= {}) as { security?: unknown; summary?: string };
  if (hooks.includes(auth.requireAdmin)) {
    schema.security = [{ admin: [] }];
    if (schema.summary && !schema.summary.endsWith('(admin)')) schema.summary += ' (admin)';
  } else if (!hooks.includes(auth.requireUser)) {
    schema.security = [];
  }
}

type OpenApiDocument = { paths?: Record<string, Record<string, { requestBody?: { required?: boolean; content?: Record<string, { schema?: { nullable?: boolean } }> } }>> };

/**
 * @fastify/swagger marks every request body required; a body schema that accepts null (the
 * routes whose input may come from the query string instead) is optional.
 */
function optionalBodies<T extends OpenApiDocument>(doc: T): T {
  for (const item of Object.values(doc.paths ?? {})) {
    for (const op of Object.values(item)) {
      if (op.requestBody?.content?.['application/json']?.schema?.nullable) op.requestBody.required = false;
    }
  }
  return doc;
}
