import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type FastifyPluginAsyncZod,
} from 'fastify-type-provider-zod';
import { randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import type { AnalyticsEngine } from './analytics/engine.js';
import type { Config } from './config.js';
import { createAuth, type Auth } from './http/auth.js';
import { registerErrorHandling } from './http/errors.js';
import { analyticsRoutes } from './http/routes/analytics.js';
import { billingRoutes } from './http/routes/billing.js';
import { devicesRoutes } from './http/routes/devices.js';
import { framesRoutes } from './http/routes/frames.js';
import { metadataRoutes } from './http/routes/metadata.js';
import { sessionsRoutes } from './http/routes/sessions.js';
import { systemRoutes } from './http/routes/system.js';
import { telemetryRoutes } from './http/routes/telemetry.js';
import { usersRoutes } from './http/routes/users.js';
import type { IngestPipeline } from './ingest/pipeline.js';
import type { IngestStatus } from './ingest/status.js';
import type { Metrics } from './metrics.js';
import type { OperationalStore } from './operational/store.js';

export interface AppDeps {
  config: Config;
  /** The admin bearer token in force (configured or generated). */
  adminToken: string;
  store: OperationalStore;
  analytics: AnalyticsEngine;
  pipeline: IngestPipeline;
  metrics: Metrics;
  /** State of the Redis consumer and flusher, for /health and /status. */
  ingestStatus: () => IngestStatus;
  logger?: Logger;
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
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('principal', null);
  registerErrorHandling(app, deps.metrics);

  const routes: Array<{ method: string; url: string; summary?: string }> = [];
  app.addHook('onRoute', (route) => {
    if (route.schema?.hide || route.url.startsWith('/docs')) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (method === 'HEAD') continue;
      routes.push({ method, url: route.url, summary: route.schema?.summary });
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status_code: String(reply.statusCode),
    };
    deps.metrics.requestsTotal.inc(labels);
    deps.metrics.requestDuration.observe(labels, reply.elapsedTime / 1000);
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'Ocean Core',
        description: 'Telemetry ingest (Nanogridata frames, JSON readings), operational data and DuckDB analytics.',
        version: '1.0.0',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const auth = createAuth(deps.adminToken, deps.store);
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
  ]) {
    await app.register(plugin, { ...ctx, prefix: API_PREFIX });
  }
  return app;
}
