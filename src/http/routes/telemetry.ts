import type { RoutePlugin } from '../../app.js';
import { IngestCoalescer } from '../ingest-coalescer.js';
import { plainJsonSerializer } from '../plain-serializer.js';
import { errors } from '../schemas/common.js';
import {
  batchBody,
  batchResponse,
  ingestResponse,
  markProcessedBody,
  markProcessedResponse,
  readingInput,
  unprocessedQuery,
  unprocessedResponse,
} from '../schemas/telemetry.js';

/**
 * JSON telemetry over HTTP. Readings go through the ingest pipeline into the SQLite buffer in one
 * transaction: the answer is "accepted" only once they are stored, and an error otherwise.
 */
export const telemetryRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { pipeline, store } = deps;
  // Single readings from concurrent requests share one transaction (group commit).
  const coalescer = new IngestCoalescer(store, pipeline);

  app.post(
    '/telemetry/ingest',
    {
      onRequest: auth.requireUser,
      serializerCompiler: plainJsonSerializer,
      schema: {
        summary: 'Ingest one reading; numeric fields of data become records (metric = key)',
        tags: ['telemetry'],
        body: readingInput,
        response: { 200: ingestResponse, ...errors(400, 401, 403, 413) },
      },
    },
    async (request) => {
      const reading = request.body;
      const { ids, records } = await coalescer.submit([reading], request.principal!);
      return { status: 'accepted' as const, id: ids[0]!, sensor_id: reading.sensor_id, records, buffered: true as const };
    },
  );

  app.post(
    '/telemetry/batch',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Ingest up to 10,000 readings: all are validated first, then stored together or not at all',
        tags: ['telemetry'],
        body: batchBody,
        response: { 200: batchResponse, ...errors(400, 401, 403, 413) },
      },
    },
    async (request) => {
      const { ids, records } = pipeline.ingestReadings(request.body, request.principal!);
      return { status: 'accepted' as const, count: ids.length, ids, records };
    },
  );

  app.get(
    '/telemetry/unprocessed',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Buffered rows not yet marked processed, oldest first',
        tags: ['telemetry'],
        querystring: unprocessedQuery,
        response: { 200: unprocessedResponse, ...errors(400, 401, 403) },
      },
    },
    async (request) => {
      const data = store.buffer.unprocessed(request.query.limit);
      return { count: data.length, data };
    },
  );

  app.post(
    '/telemetry/mark-processed',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Mark buffered rows processed (an array of ids, or {ids})',
        tags: ['telemetry'],
        body: markProcessedBody,
        response: { 200: markProcessedResponse, ...errors(400, 401, 403) },
      },
    },
    async (request) => {
      const ids = Array.isArray(request.body) ? request.body : request.body.ids;
      return { marked: store.buffer.markProcessed(ids), requested: ids.length };
    },
  );
};
