import { z } from 'zod';
import { isoTime } from './common.js';

export const healthSchema = z
  .object({
    status: z
      .enum(['healthy', 'degraded', 'unhealthy'])
      .describe('"healthy": all well; "degraded": working, see reasons; "unhealthy" (503): a store is unusable'),
    engine: z.string(),
    architecture: z.string(),
    cpu_mode: z.string(),
    telemetry_buffer: z.number().int().describe('JSON readings kept in the SQLite work queue table (within BUFFER_RETENTION_S, or until marked processed)'),
    db_size_mb: z.number().describe('SQLite and DuckDB files, WAL included (the shared mode: the PostgreSQL database)'),
    timestamp: isoTime,
    checks: z.record(z.string(), z.string()).describe('Each store: "ok" or "unavailable" (sqlite and duckdb; the shared mode: postgresql)'),
    reasons: z.array(z.string()).describe('Why the service is degraded (each also a metric: ocean_health_degraded{reason})'),
    checked_at: isoTime.describe('When the health was last evaluated (every two seconds, in the background)'),
    telemetry_unprocessed: z.number().int().describe('JSON readings in SQLite not yet committed to DuckDB'),
    ingest: z.object({ consumer_connected: z.boolean(), consumer_enabled: z.boolean() }),
  })
  .describe('Health');

/** What anyone (a load balancer) sees: the original's keys, nothing about the host or its neighbours. */
const publicStatus = {
  status: z.literal('operational'),
  cpu_efficient: z.boolean(),
  engine: z.string(),
  telemetry_buffer_size: z.number().int().describe('JSON readings kept in the SQLite work queue table'),
  memory_usage_mb: z.number().describe('Resident set size'),
};

/** The rest, for the admin only (Authorization: Bearer <admin token>). */
const adminStatus = {
  engines: z.object({ operational: z.string(), analytics: z.string(), stream: z.string() }),
  telemetry_buffer: z
    .object({ rows: z.number().int(), unprocessed: z.number().int(), queued: z.number().int() })
    .describe('JSON readings kept (rows), not yet in DuckDB (unprocessed) and in the work queue (queued)'),
  heap_used_mb: z.number(),
  db_size_bytes: z.record(z.string(), z.number().int()).describe('By engine: sqlite and duckdb, or postgresql'),
  uptime_s: z.number().int(),
  ingest: z.record(z.string(), z.unknown()).describe('Consumer (name, Redis memory, …), committer and replay index state'),
  timestamp: isoTime,
};

export const statusSchema = z
  .object({ ...publicStatus, ...z.object(adminStatus).partial().shape })
  .describe('Status: the original\'s keys for anyone; the others only with the admin token');

export const docsSchema = z
  .object({
    system: z.string(),
    architecture: z.string(),
    layers: z.record(z.string(), z.string()),
    performance: z.record(z.string(), z.string()),
    endpoints: z.record(z.string(), z.string()).describe('Name → "METHOD /path", every documented route'),
    routes: z
      .array(z.object({ method: z.string(), path: z.string(), summary: z.string().optional() }))
      .describe('The same routes with their summaries'),
  })
  .describe('ServiceDocs');
