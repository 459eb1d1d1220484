import type { CommitterStatus } from './committer.js';

/** What /health and /api/ocean/status report about the ingest workers. */
export interface IngestStatus {
  consumer: {
    /** false when REDIS_URL is unset. */
    enabled: boolean;
    connected: boolean;
    /** Just started and not connected yet (not a problem by itself). */
    connecting?: boolean;
    stream?: string;
    group?: string;
    consumer?: string;
    /** Entries delivered to the group and not yet acknowledged. */
    pending?: number;
    /** Entries not yet delivered to the group. */
    lag?: number;
    last_batch?: { at: string; entries: number; accepted: number; rejected: number } | null;
    last_error?: string | null;
    /** Entries are waiting, yet no batch has completed for 30 s. */
    stalled?: boolean;
    /** Another consumer serves the group (another data dir): this one does not consume. */
    refused?: boolean;
    /** Redis refused a write for lack of memory in the last seconds. */
    redis_refusing_writes?: boolean;
    redis_memory?: { used: number; max: number } | null;
    /** Used memory above 90 % of maxmemory. */
    redis_near_full?: boolean;
    /** Dead letters Redis has not accepted yet (their entries stay pending until it does). */
    owed_dead_letters?: number;
  };
  /** The embedded mode's committer (the shared mode commits in the batch's own transaction). */
  committer?: CommitterStatus & {
    /** Work-queue readings not yet in analytics. */
    backlog: number;
  };
  /** The embedded mode's in-process replay index: frames remembered and the memory it holds. */
  replay?: { frames: number; bytes: number };
  /** The shared mode's connection pool: connections open, idle, and queries waiting for one. */
  database?: { pool: { total: number; idle: number; waiting: number } };
}
