import type { RoutePlugin } from '../../app.js';
import type { Principal } from '../auth.js';
import { plainJsonSerializer } from '../plain-serializer.js';
import { errors } from '../schemas/common.js';
import {
  batchBody,
  batchResponse,
  ingestResponse,
  markProcessedBody,
  markProcessedResponse,
  quarantineQuery,
  quarantineResponse,
  readingInput,
  unprocessedQuery,
  unprocessedResponse,
} from '../schemas/telemetry.js';

const isoNow = () => new Date().toISOString();

/**
 * JSON telemetry over HTTP. Readings go through the ingest pipeline into the SQLite work queue;
 * the answer is "accepted" only once they are stored there (the committer carries them into
 * DuckDB right after), and an error otherwise. They stay in the work queue of `unprocessed` until
 * `mark-processed` names them.
 */
export const telemetryRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { ingest, store } = deps;
  const ownerOf = (p: Principal) => (p.kind === 'user' ? p.userId : undefined);

  app.post(
    '/telemetry/ingest',
    {
      onRequest: auth.requireUser,
      serializerCompiler: plainJsonSerializer,
      schema: {
        summary: 'Ingest one reading; numeric fields of data become records (metric = key); data is kept as sent',
        tags: ['telemetry'],
        body: readingInput,
        response: { 200: ingestResponse, ...errors(400, 401, 403, 413, 422) },
      },
    },
    async (request) => {
      const reading = request.body;
      const outcome = await ingest.reading(reading, ownerOf(request.principal!));
      const stored = outcome as { ok: true; records: number; bufferId: number };
      return { id: stored.bufferId, sensor_id: reading.sensor_id, buffered: true as const, timestamp: isoNow(), status: 'accepted' as const, records: stored.records };
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
        response: { 200: batchResponse, ...errors(400, 401, 403, 413, 422) },
      },
    },
    async (request) => {
      const outcomes = await ingest.readings(request.body, ownerOf(request.principal!));
      const ids = outcomes.map((o) => (o as { bufferId: number }).bufferId);
      const records = outcomes.reduce((n, o) => n + (o.ok ? o.records : 0), 0);
      return { count: ids.length, ids, timestamp: isoNow(), status: 'accepted' as const, records };
    },
  );

  app.get(
    '/telemetry/unprocessed',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'The work queue: readings not yet marked processed, oldest first, with data exactly as sent',
        tags: ['telemetry'],
        querystring: unprocessedQuery,
        response: { 200: unprocessedResponse, ...errors(400, 401, 403, 422) },
      },
    },
    async (request) => {
      const { limit, after } = request.query;
      // One more than asked tells whether another page follows.
      const rows = await store.buffer.queued(limit + 1, after ?? 0);
      const data = rows.slice(0, limit).map((r) => ({
        id: r.id,
        sensor_id: r.sensor_id,
        timestamp: new Date(r.ts * 1000).toISOString(),
        data: r.data,
        source: r.source,
        records: r.record_count,
        created_at: new Date(r.created_at * 1000).toISOString(),
      }));
      return { count: data.length, data, next_after: rows.length > limit ? data[data.length - 1]!.id : null };
    },
  );

  app.get(
    '/telemetry/quarantine',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: "Records an earlier release's flusher could not store in DuckDB, kept with the error, newest first",
        tags: ['telemetry'],
        querystring: quarantineQuery,
        response: { 200: quarantineResponse, ...errors(401, 403, 422) },
      },
    },
    async (request) => ({ count: await store.quarantine.count(), records: await store.quarantine.list(request.query.limit, request.query.offset) }),
  );

  app.post(
    '/telemetry/mark-processed',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Take readings out of the work queue (an array of ids, or {ids})',
        tags: ['telemetry'],
        body: markProcessedBody,
        response: { 200: markProcessedResponse, ...errors(400, 401, 403, 422) },
      },
    },
    async (request) => {
      const ids = Array.isArray(request.body) ? request.body : request.body.ids;
      const processed = await store.buffer.markProcessed(ids);
      return { processed, success: true, requested: ids.length };
    },
  );
};
