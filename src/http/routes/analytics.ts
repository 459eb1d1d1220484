import type { FastifyReply, FastifyRequest, FastifySerializerCompiler } from 'fastify';
import type { RoutePlugin } from '../../app.js';
import { EXPORT_CONTENT_TYPES } from '../../analytics/export.js';
import { byAvgDescending } from '../../analytics/queries.js';
import type { Comparison } from '../../analytics/types.js';
import { errors } from '../schemas/common.js';
import {
  anomaliesQuery,
  anomaliesResponse,
  compareBody,
  compareResponse,
  exportQuery,
  exportResponse,
  sensorParams,
  sensorsQuery,
  sensorsResponse,
  statsQuery,
  statsResponse,
  timeseriesQuery,
  timeseriesResponse,
} from '../schemas/analytics.js';

/**
 * Writes a compare answer with `comparison`'s keys in descending avg_value. JSON.stringify of an
 * object would put integer-like sensor ids ("42") first, whatever the order they were added in.
 */
const comparisonSerializer: FastifySerializerCompiler<unknown> = ({ httpStatus }) => (data) => {
  if (httpStatus !== '200') return JSON.stringify(data);
  const { comparison, ...rest } = data as Comparison;
  const entries = Object.entries(comparison)
    .sort(([, a], [, b]) => byAvgDescending(a, b))
    .map(([id, agg]) => `${JSON.stringify(id)}:${JSON.stringify(agg)}`);
  const tail = JSON.stringify(rest).slice(1);
  return `{"comparison":{${entries.join(',')}}${tail === '}' ? '}' : `,${tail}`}`;
};

/** Export's 200: the file, in the content type of the format asked. */
const exportContent = Object.fromEntries(
  Object.values(EXPORT_CONTENT_TYPES).map((type) => [type.split(';')[0]!, { schema: exportResponse }]),
);

/**
 * DuckDB analytics. Every read goes through deps.analytics (the analytics store interface), so
 * no SQL lives here. A user reads only the sensors it owns; admin reads all.
 */
export const analyticsRoutes: RoutePlugin = async (app, { deps, auth }) => {
  /**
   * The store as this request's caller uses it: its share of the readers and exports (the admin
   * has one share of its own), and a time limit that counts from the request's arrival.
   */
  const analyticsFor = (request: FastifyRequest, reply: FastifyReply) => {
    const p = request.principal!;
    return deps.analytics.forCaller({ key: p.kind === 'admin' ? 'admin' : `user:${p.userId}`, arrivedAt: performance.now() - reply.elapsedTime });
  };

  app.get(
    '/analytics/sensor/:sensor_id/stats',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'count, avg_value, min_value, max_value, stddev_value, first and last reading of a sensor, overall and per metric',
        tags: ['analytics'],
        params: sensorParams,
        querystring: statsQuery,
        response: { 200: statsResponse, ...errors(401, 403, 422, 503) },
      },
    },
    async (request, reply) => {
      const { sensor_id } = request.params;
      await auth.assertSensor(request, sensor_id);
      return analyticsFor(request, reply).sensorStats(sensor_id, request.query);
    },
  );

  app.get(
    '/analytics/sensor/:sensor_id/timeseries',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'count/avg/min/max in time buckets, oldest first (interval like 30s, 5m, 1h, 5 minutes, 1 week; default 5m)',
        tags: ['analytics'],
        params: sensorParams,
        querystring: timeseriesQuery,
        response: { 200: timeseriesResponse, ...errors(400, 401, 403, 422, 503) },
      },
    },
    async (request, reply) => {
      const { sensor_id } = request.params;
      await auth.assertSensor(request, sensor_id);
      return analyticsFor(request, reply).timeseries(sensor_id, request.query);
    },
  );

  app.get(
    '/analytics/sensor/:sensor_id/anomalies',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Readings whose z-score against their metric exceeds the threshold, newest first (at most limit, default 100)',
        tags: ['analytics'],
        params: sensorParams,
        querystring: anomaliesQuery,
        response: { 200: anomaliesResponse, ...errors(401, 403, 422, 503) },
      },
    },
    async (request, reply) => {
      const { sensor_id } = request.params;
      await auth.assertSensor(request, sensor_id);
      return analyticsFor(request, reply).anomalies(sensor_id, request.query);
    },
  );

  app.post(
    '/analytics/compare',
    {
      onRequest: auth.requireUser,
      serializerCompiler: comparisonSerializer,
      schema: {
        summary: 'Aggregates of up to 100 sensors, keyed by sensor in descending avg_value',
        tags: ['analytics'],
        body: compareBody,
        response: { 200: compareResponse, ...errors(401, 403, 422, 503) },
      },
    },
    async (request, reply) => {
      const { sensor_ids, start_time, end_time, metric } = request.body;
      for (const id of sensor_ids) await auth.assertSensor(request, id);
      return analyticsFor(request, reply).compare(sensor_ids, { start: start_time, end: end_time, metric });
    },
  );

  app.get(
    '/analytics/sensors',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Sensors with data that the caller may read: reading count, metrics, first and last reading; in sensor_id order, a page at a time (limit, after)',
        tags: ['analytics'],
        querystring: sensorsQuery,
        response: { 200: sensorsResponse, ...errors(401, 403, 422, 503) },
      },
    },
    async (request, reply) => {
      const { limit, after } = request.query;
      const p = request.principal!;
      const analytics = analyticsFor(request, reply);
      if (p.kind === 'admin') return analytics.sensors({ limit, after });
      // A page of the user's own sensors from SQLite, then which of them have data: the work per
      // request is one page, however many sensors the user owns. A page may list fewer than
      // `limit` (sensors without data are left out); next_after says whether more follow.
      const ids = await deps.store.devices.ownedIdsPage(p.userId, after ?? '', limit + 1);
      const page = ids.slice(0, limit);
      const list = await analytics.sensors({ sensorIds: page });
      return { ...list, next_after: ids.length > limit ? page[page.length - 1]! : null };
    },
  );

  app.get(
    '/analytics/export',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Download measurements as Parquet, CSV, JSON or NDJSON (streamed; filters as the other endpoints)',
        tags: ['analytics'],
        querystring: exportQuery,
        // The body is a file stream; Fastify sends streams as they are, without serialising.
        response: { 200: { description: 'The file, as an attachment', content: exportContent }, ...errors(401, 403, 422, 503) },
      },
    },
    async (request, reply) => {
      const { format, sensor_id, metric, start, end } = request.query;
      if (sensor_id) for (const id of sensor_id) await auth.assertSensor(request, id);
      const file = await analyticsFor(request, reply).exportMeasurements({
        format,
        sensorIds: sensor_id ?? (await auth.sensorScope(request)),
        metric,
        start,
        end,
      });
      reply
        .header('content-type', file.contentType)
        .header('content-disposition', `attachment; filename="${file.filename}"`)
        .header('cache-control', 'no-store');
      if (file.size !== undefined) reply.header('content-length', file.size);
      return reply.send(file.stream);
    },
  );
};
