import type { RoutePlugin } from '../../app.js';
import { errors } from '../schemas/common.js';
import {
  anomaliesQuery,
  anomaliesResponse,
  compareBody,
  compareResponse,
  exportQuery,
  exportResponse,
  sensorParams,
  sensorsResponse,
  statsQuery,
  statsResponse,
  timeseriesQuery,
  timeseriesResponse,
} from '../schemas/analytics.js';

/**
 * DuckDB analytics. Every read goes through deps.analytics (the analytics store interface), so
 * no SQL lives here. A user reads only the sensors it owns; admin reads all.
 */
export const analyticsRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { analytics } = deps;

  app.get(
    '/analytics/sensor/:sensor_id/stats',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'count, avg, min, max, stddev, first and last reading of a sensor, overall and per metric',
        tags: ['analytics'],
        params: sensorParams,
        querystring: statsQuery,
        response: { 200: statsResponse, ...errors(400, 401, 403) },
      },
    },
    async (request) => {
      const { sensor_id } = request.params;
      auth.assertSensor(request, sensor_id);
      return analytics.sensorStats(sensor_id, request.query);
    },
  );

  app.get(
    '/analytics/sensor/:sensor_id/timeseries',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Per-metric count/avg/min/max in time buckets (interval like 30s, 5m, 1h, 1d)',
        tags: ['analytics'],
        params: sensorParams,
        querystring: timeseriesQuery,
        response: { 200: timeseriesResponse, ...errors(400, 401, 403) },
      },
    },
    async (request) => {
      const { sensor_id } = request.params;
      auth.assertSensor(request, sensor_id);
      return analytics.timeseries(sensor_id, request.query);
    },
  );

  app.get(
    '/analytics/sensor/:sensor_id/anomalies',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Readings whose z-score against their metric exceeds the threshold, largest first',
        tags: ['analytics'],
        params: sensorParams,
        querystring: anomaliesQuery,
        response: { 200: anomaliesResponse, ...errors(400, 401, 403) },
      },
    },
    async (request) => {
      const { sensor_id } = request.params;
      auth.assertSensor(request, sensor_id);
      return analytics.anomalies(sensor_id, request.query);
    },
  );

  app.post(
    '/analytics/compare',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Aggregates of 1 to 100 sensors side by side, in the order asked',
        tags: ['analytics'],
        body: compareBody,
        response: { 200: compareResponse, ...errors(400, 401, 403) },
      },
    },
    async (request) => {
      const { sensor_ids, start_time, end_time, metric } = request.body;
      for (const id of sensor_ids) auth.assertSensor(request, id);
      return analytics.compare(sensor_ids, { start: start_time, end: end_time, metric });
    },
  );

  app.get(
    '/analytics/sensors',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Sensors with data that the caller may read: reading count, metrics, first and last reading',
        tags: ['analytics'],
        response: { 200: sensorsResponse, ...errors(401, 403) },
      },
    },
    async (request) => analytics.sensors({ sensorIds: auth.sensorScope(request) }),
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
        response: { 200: exportResponse, ...errors(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const { format, sensor_id, metric, start, end } = request.query;
      if (sensor_id) for (const id of sensor_id) auth.assertSensor(request, id);
      const file = await analytics.exportMeasurements({
        format,
        sensorIds: sensor_id ?? auth.sensorScope(request),
        metric,
        start,
        end,
      });
      return reply
        .header('content-type', file.contentType)
        .header('content-disposition', `attachment; filename="${file.filename}"`)
        .header('content-length', file.size)
        .header('cache-control', 'no-store')
        .send(file.stream);
    },
  );
};
