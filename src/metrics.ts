import { totalmem } from 'node:os';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * How often the event-loop delay is sampled. prom-client's 10 ms wakes an idle process 100 times a
 * second, most of what it costs at rest; at 50 ms any stall of 50 ms or more is still always seen.
 */
const EVENT_LOOP_SAMPLE_MS = 50;

/** Sub-millisecond to seconds. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Every metric the service exports, on a registry of its own (never prom-client's global one),
 * so that tests and several apps in one process do not share counters.
 */
export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry, prefix: 'ocean_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    // prom-client names these gauges `_total`, a suffix Prometheus keeps for counters (promtool warns);
    // the same figures by type stay (ocean_nodejs_active_handles{type} etc.), and sum() gives the total.
    for (const kind of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`ocean_nodejs_active_${kind}_total`);
  }
  const registers = [registry];

  const metrics = {
    registry,
    requestsTotal: new Counter({
      name: 'ocean_requests_total',
      help: 'HTTP requests answered, by route pattern',
      labelNames: ['method', 'route', 'status_code'] as const,
      registers,
    }),
    requestDuration: new Histogram({
      name: 'ocean_request_duration_seconds',
      help: 'HTTP request duration in seconds, by route pattern',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    errorsTotal: new Counter({
      name: 'ocean_errors_total',
      help: 'Errors: HTTP 5xx answers and failures of background workers',
      labelNames: ['component'] as const,
      registers,
    }),
    telemetryIngested: new Counter({
      name: 'ocean_telemetry_ingested_total',
      help: 'Telemetry messages accepted and stored (frames, or JSON readings into the work queue), by source',
      labelNames: ['source'] as const,
      registers,
    }),
    recordsIngested: new Counter({
      name: 'ocean_records_ingested_total',
      help: 'Measurement records accepted and stored, by source',
      labelNames: ['source'] as const,
      registers,
    }),
    framesRejected: new Counter({
      name: 'ocean_frames_rejected_total',
      help: 'Frames and stream entries rejected, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    dbQueryDuration: new Histogram({
      name: 'ocean_database_query_duration_seconds',
      help: 'Store operation duration in seconds, by engine and operation',
      labelNames: ['engine', 'op'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    ingestPending: new Gauge({
      name: 'ocean_ingest_pending',
      help: 'Stream entries delivered to the consumer group but not yet acknowledged',
      registers,
    }),
    ingestLag: new Gauge({
      name: 'ocean_ingest_lag',
      help: 'Stream entries not yet delivered to the consumer group',
      registers,
    }),
    ingestConnected: new Gauge({
      name: 'ocean_ingest_connected',
      help: '1 when the Redis stream consumer is connected, 0 otherwise',
      registers,
    }),
    bufferRows: new Gauge({
      name: 'ocean_telemetry_buffer_rows',
      help: 'JSON readings kept in SQLite: total (within retention), unprocessed (not yet in DuckDB) and queued (the work queue)',
      labelNames: ['state'] as const,
      registers,
    }),
    commitDuration: new Histogram({
      name: 'ocean_ingest_commit_duration_seconds',
      help: 'Duration of one ingest commit into DuckDB (readings, fingerprints, position) in seconds',
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    committedRecords: new Counter({
      name: 'ocean_committed_records_total',
      help: 'Measurement records committed to DuckDB',
      registers,
    }),
    healthDegraded: new Gauge({
      name: 'ocean_health_degraded',
      help: '1 while the service is degraded for this reason (see /health)',
      labelNames: ['reason'] as const,
      registers,
    }),
    deadLetters: new Counter({
      name: 'ocean_dead_letters_total',
      help: 'Stream messages rejected and written to the dead-letter stream (counted when Redis took the letter)',
      registers,
    }),
    redisMemoryUsed: new Gauge({
      name: 'ocean_redis_memory_used_bytes',
      help: "Redis used_memory, read by the stream consumer every 2 s while it is connected",
      registers,
    }),
    redisMaxmemory: new Gauge({
      name: 'ocean_redis_maxmemory_bytes',
      help: 'Redis maxmemory (0: no limit), read by the stream consumer every 2 s while it is connected',
      registers,
    }),
    diskFree: new Gauge({
      name: 'ocean_disk_free_bytes',
      help: 'Free bytes (available to the service) on the file system of DATA_DIR',
      registers,
    }),
    diskSize: new Gauge({
      name: 'ocean_disk_size_bytes',
      help: 'Size in bytes of the file system of DATA_DIR',
      registers,
    }),
    memoryLimit: new Gauge({
      name: 'ocean_memory_limit_bytes',
      help: "Memory the process may use: its container's (cgroup) limit, else the machine's total memory",
      registers,
      collect() {
        this.set(memoryLimit());
      },
    }),
    databasePool: new Gauge({
      name: 'ocean_database_pool_connections',
      help: "The shared mode's PostgreSQL pool: connections open (total) and idle, and queries waiting for one",
      labelNames: ['state'] as const,
      registers,
    }),
    databaseSize: new Gauge({
      name: 'ocean_database_size_bytes',
      help: 'Size of the database files on disk, by engine (the shared mode: the PostgreSQL database)',
      labelNames: ['engine'] as const,
      registers,
    }),
  };
  // Known label values start at 0, so that rate() sees their first increment and dashboards show 0
  // rather than "no data" before anything happened (the ingest sources are IngestSource's values).
  for (const component of ['http', 'consumer', 'committer']) metrics.errorsTotal.inc({ component }, 0);
  for (const source of ['http', 'http_frames', 'stream']) {
    metrics.telemetryIngested.inc({ source }, 0);
    metrics.recordsIngested.inc({ source }, 0);
  }
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The cgroup memory limit when there is one (Node reports "none" as 2^64 or 0), else the machine's memory. */
function memoryLimit(): number {
  const total = totalmem();
  const constrained = process.constrainedMemory();
  return constrained > 0 && constrained < total ? constrained : total;
}

/** Times a synchronous store operation into ocean_database_query_duration_seconds. */
export function timed<T>(metrics: Metrics | undefined, engine: string, op: string, fn: () => T): T {
  if (!metrics) return fn();
  const end = metrics.dbQueryDuration.startTimer({ engine, op });
  try {
    return fn();
  } finally {
    end();
  }
}

/** Times an asynchronous store operation into ocean_database_query_duration_seconds. */
export async function timedAsync<T>(metrics: Metrics | undefined, engine: string, op: string, fn: () => Promise<T>): Promise<T> {
  if (!metrics) return fn();
  const end = metrics.dbQueryDuration.startTimer({ engine, op });
  try {
    return await fn();
  } finally {
    end();
  }
}
