/** What /health and /api/ocean/status report about the ingest workers. */
export interface IngestStatus {
  consumer: {
    /** false when REDIS_URL is unset. */
    enabled: boolean;
    connected: boolean;
    stream?: string;
    group?: string;
    consumer?: string;
    /** Entries delivered to the group and not yet acknowledged. */
    pending?: number;
    /** Entries not yet delivered to the group. */
    lag?: number;
    last_batch?: { at: string; entries: number; accepted: number; rejected: number } | null;
    last_error?: string | null;
  };
  flusher: {
    high_water: number;
    last_flush_at: string | null;
    last_error: string | null;
  };
}
