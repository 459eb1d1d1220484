import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { IngestStatus } from './ingest/status.js';
import type { Metrics } from './metrics.js';

/** Why the service is not fully well. Each has a gauge, `ocean_health_degraded{reason}`. */
export const DEGRADED_REASONS = [
  'consumer_disconnected',
  'consumer_stalled',
  'redis_refusing_writes',
  'redis_near_maxmemory',
  'consumer_refused',
  'dead_letters_pending',
  'ingest_commit_failing',
  'disk_full',
  'database_unreachable',
] as const;
export type DegradedReason = (typeof DEGRADED_REASONS)[number];

export interface Health {
  /** healthy: all well; degraded: working, with reasons; unhealthy: a store is unusable (503). */
  status: 'healthy' | 'degraded' | 'unhealthy';
  reasons: DegradedReason[];
  /** Each store probe by name: sqlite and duckdb, or postgresql. */
  checks: Record<string, 'ok' | 'unavailable'>;
  /** When this was evaluated. */
  at: string;
}

/** Free space below this (bytes, or share of the file system) counts as a full disk. */
const MIN_FREE_BYTES = 64 * 1024 * 1024;
const MIN_FREE_SHARE = 0.01;
const INTERVAL_MS = 2000;
/** A store probe that has not answered in this long counts as failed. */
const PROBE_TIMEOUT_MS = 5000;

/** The reasons, from the ingest workers' state and the disk: a pure function, tested on its own. */
export function degradedReasons(ingest: IngestStatus, disk: { free: number; total: number } | null): DegradedReason[] {
  const reasons: DegradedReason[] = [];
  const c = ingest.consumer;
  if (c.refused) reasons.push('consumer_refused');
  else if (c.enabled && !c.connected && !c.connecting) reasons.push('consumer_disconnected');
  if (c.stalled) reasons.push('consumer_stalled');
  if (c.redis_refusing_writes) reasons.push('redis_refusing_writes');
  if (c.redis_near_full) reasons.push('redis_near_maxmemory');
  if ((c.owed_dead_letters ?? 0) > 0) reasons.push('dead_letters_pending');
  if ((ingest.committer?.failures ?? 0) > 0) reasons.push('ingest_commit_failing');
  if (disk && (disk.free < MIN_FREE_BYTES || disk.free < MIN_FREE_SHARE * disk.total)) reasons.push('disk_full');
  return reasons;
}

/** One store's check: a trivial statement (DuckDB's on a connection of its own, never behind user queries). */
export interface StoreProbe {
  /** Its key in `checks`, and the `engine` of its latency in ocean_database_query_duration_seconds. */
  name: string;
  check: () => unknown;
  /**
   * What the store being down makes the service: unhealthy (503: an embedded store is this
   * instance's own), or degraded with a reason (the shared database: every instance shares it, so
   * a load balancer gains nothing by taking this one out; ingest waits for it, nothing is lost).
   */
  whenDown: 'unhealthy' | DegradedReason;
}

/**
 * Evaluates health in the background every two seconds, so that /health answers at once from the
 * last evaluation and never waits behind user queries: each store is probed (StoreProbe), the
 * disk with statfs.
 */
export class HealthMonitor {
  private current: Health;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly deps: {
      probes: readonly StoreProbe[];
      ingestStatus: () => IngestStatus;
      dataDir: string;
      metrics: Metrics;
      logger: Logger;
    },
  ) {
    this.current = { status: 'healthy', reasons: [], checks: Object.fromEntries(deps.probes.map((p) => [p.name, 'ok'])), at: new Date().toISOString() };
  }

  async start(): Promise<void> {
    await this.evaluate();
    this.timer = setInterval(() => void this.evaluate(), INTERVAL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** The last evaluation. */
  get(): Health {
    return this.current;
  }

  /** Evaluates now (one evaluation at a time). */
  evaluate(): Promise<void> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async run(): Promise<void> {
    const { probes, metrics } = this.deps;
    const checks: Health['checks'] = {};
    const down: StoreProbe['whenDown'][] = [];
    await Promise.all(
      probes.map(async (probe) => {
        const end = metrics.dbQueryDuration.startTimer({ engine: probe.name, op: 'health_ping' });
        try {
          await withTimeout(Promise.resolve().then(probe.check), PROBE_TIMEOUT_MS);
          end();
          checks[probe.name] = 'ok';
        } catch {
          checks[probe.name] = 'unavailable';
          down.push(probe.whenDown);
        }
      }),
    );
    let disk: { free: number; total: number } | null = null;
    try {
      const s = await statfs(this.deps.dataDir);
      disk = { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
      metrics.diskFree.set(disk.free);
      metrics.diskSize.set(disk.total);
    } catch {
      // statfs unsupported: no disk reason
    }
    const reasons = degradedReasons(this.deps.ingestStatus(), disk);
    for (const d of down) if (d !== 'unhealthy' && !reasons.includes(d)) reasons.push(d);
    const usable = !down.includes('unhealthy');
    const next: Health = { status: !usable ? 'unhealthy' : reasons.length > 0 ? 'degraded' : 'healthy', reasons, checks, at: new Date().toISOString() };
    for (const reason of DEGRADED_REASONS) metrics.healthDegraded.set({ reason }, reasons.includes(reason) ? 1 : 0);
    if (next.status !== this.current.status || next.reasons.join() !== this.current.reasons.join()) {
      this.deps.logger.child({ component: 'health' })[next.status === 'healthy' ? 'info' : 'warn']({ status: next.status, reasons, checks }, `health: ${next.status}`);
    }
    this.current = next;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), ms);
    }),
  ]);
}
