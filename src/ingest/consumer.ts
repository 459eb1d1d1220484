import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { IngestConfig } from '../config.js';
import type { Metrics } from '../metrics.js';
import { parseStreamEntry, type EntryFields } from './stream-entry.js';
import type { IngestPipeline, IngestUnit } from './pipeline.js';
import type { IngestStatus } from './status.js';

type RawEntry = [id: Buffer, fields: Buffer[] | null];
type ReadReply = Array<[stream: Buffer, entries: RawEntry[]]> | null;

interface ConsumerOptions {
  /** Connection for ordinary commands; the consumer duplicates it for its blocking reads. */
  redis: Redis;
  config: IngestConfig;
  pipeline: IngestPipeline;
  metrics: Metrics;
  logger: Logger;
}

const MAX_BACKOFF_MS = 5000;
const STATS_INTERVAL_MS = 2000;
/** A blocking read that has not answered this long after its BLOCK expired is presumed lost. */
const WATCHDOG_GRACE_MS = 10_000;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });

/**
 * Reads the ingest stream as one consumer of a consumer group. Every batch is stored (one SQLite
 * transaction) before it is acknowledged; rejected entries go to the dead-letter stream in the same
 * MULTI as the XACK. After a crash or a connection error the consumer first re-reads its own pending
 * entries, and entries left pending by a dead consumer are reclaimed with XAUTOCLAIM; storing is
 * idempotent per entry id, so redelivery never doubles a record.
 */
export class StreamConsumer {
  private readonly cfg: IngestConfig;
  private readonly log: Logger;
  private reader: Redis | undefined;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private statsTimer: NodeJS.Timeout | undefined;
  private connected = false;
  private groupReady = false;
  private lastClaimAt = 0;
  private pending = 0;
  private lag = 0;
  private lastBatch: IngestStatus['consumer']['last_batch'] = null;
  private lastError: string | null = null;
  private ackInFlight: Promise<void> | undefined;

  constructor(private readonly options: ConsumerOptions) {
    this.cfg = options.config;
    this.log = options.logger.child({ component: 'consumer', stream: this.cfg.stream, group: this.cfg.group, consumer: this.cfg.consumerName });
  }

  start(): void {
    if (this.loop) return;
    // Blocking reads get their own connection; commands queue until it is back (BullMQ's habit).
    // No command timeout here: a blocking read legitimately waits up to blockMs (the watchdog covers hangs).
    this.reader = this.options.redis.duplicate({ maxRetriesPerRequest: null, commandTimeout: undefined, lazyConnect: false });
    this.reader.on('error', (err: Error) => this.log.debug({ err }, 'reader connection error'));
    this.abort = new AbortController();
    this.loop = this.run(this.abort.signal);
    this.statsTimer = setInterval(() => void this.refreshStats(), STATS_INTERVAL_MS);
    this.log.info('stream consumer started');
  }

  /** Finishes the batch in progress (stored and acked), then stops. Safe to call twice. */
  async stop(): Promise<void> {
    this.abort.abort();
    clearInterval(this.statsTimer);
    this.statsTimer = undefined;
    // Ends a blocking read at once (it would otherwise wait out BLOCK, or a Redis outage). Entries it
    // may have been given stay pending and are read again from the history on the next start; the
    // batch being stored goes on, on the command connection.
    this.reader?.disconnect();
    await this.loop;
    this.loop = undefined;
    this.reader = undefined;
    this.connected = false;
    this.options.metrics.ingestConnected.set(0);
  }

  status(): IngestStatus['consumer'] {
    return {
      enabled: true,
      connected: this.connected,
      stream: this.cfg.stream,
      group: this.cfg.group,
      consumer: this.cfg.consumerName,
      pending: this.pending,
      lag: this.lag,
      last_batch: this.lastBatch,
      last_error: this.lastError,
    };
  }

  private async run(signal: AbortSignal): Promise<void> {
    let backoff = 100;
    // Own pending entries first: those of a previous life of this consumer, or of a failed batch.
    let history = true;
    // The next batch is read while this one is stored. Entries it brings that are never processed
    // (stop, error) stay pending under this consumer and come back through the history read.
    let prefetch: Promise<RawEntry[]> | undefined;
    while (!signal.aborted) {
      try {
        if (!this.groupReady) await this.ensureGroup();
        if (Date.now() - this.lastClaimAt > this.cfg.claimIdleMs / 2) await this.reclaimStale();
        const entries = await (prefetch ?? this.read(history ? '0' : '>'));
        prefetch = undefined;
        this.setConnected(true);
        if (history && entries.length === 0) {
          history = false;
          continue;
        }
        if (entries.length === 0) continue;
        if (!history && !signal.aborted) {
          prefetch = this.read('>');
          prefetch.catch(() => undefined);
        }
        await this.process(entries);
        backoff = 100;
      } catch (err) {
        prefetch = undefined;
        await this.settleAck().catch(() => undefined);
        if (signal.aborted) break;
        const message = err instanceof Error ? err.message : String(err);
        if (message.includes('NOGROUP')) this.groupReady = false;
        this.lastError = message;
        this.setConnected(false);
        this.options.metrics.errorsTotal.inc({ component: 'consumer' });
        this.log.warn({ err, retryInMs: backoff }, 'stream read failed; retrying');
        history = true;
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
    await prefetch?.catch(() => undefined);
    await this.settleAck().catch((err: unknown) => this.log.warn({ err }, 'last ack failed; its entries stay pending'));
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.options.metrics.ingestConnected.set(connected ? 1 : 0);
    if (connected) this.log.info('connected to the stream');
  }

  /** Creates the group at id 0 (so entries added before the first start are read) with MKSTREAM. */
  private async ensureGroup(): Promise<void> {
    try {
      await this.options.redis.xgroup('CREATE', this.cfg.stream, this.cfg.group, '0', 'MKSTREAM');
      this.log.info('consumer group created');
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes('BUSYGROUP')) throw err;
    }
    this.groupReady = true;
  }

  private async read(from: '0' | '>'): Promise<RawEntry[]> {
    const reader = this.reader!;
    // The Buffer variant keeps binary `frame` fields intact.
    const args = ['GROUP', this.cfg.group, this.cfg.consumerName, 'COUNT', this.cfg.batchSize];
    if (from === '>') args.push('BLOCK', this.cfg.blockMs);
    args.push('STREAMS', this.cfg.stream, from);
    const call = reader.callBuffer('XREADGROUP', ...args) as Promise<ReadReply>;
    let watchdog: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const { signal } = this.abort;
    const timeout = new Promise<never>((_, reject) => {
      watchdog = setTimeout(() => {
        // A read can hang across a reconnect; drop the connection so the loop starts over.
        reader.disconnect(true);
        reject(new Error('blocking read did not return; reconnecting'));
      }, this.cfg.blockMs + WATCHDOG_GRACE_MS);
      // A read queued while Redis is away would outlive stop(): give up on it at once.
      onAbort = () => reject(new Error('consumer stopping'));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const reply = await Promise.race([call, timeout]);
      return reply?.[0]?.[1] ?? [];
    } finally {
      clearTimeout(watchdog);
      if (onAbort) signal.removeEventListener('abort', onAbort);
      call.catch(() => undefined);
    }
  }

  /** Takes over entries another consumer left pending for longer than claimIdleMs. */
  private async reclaimStale(): Promise<void> {
    this.lastClaimAt = Date.now();
    let cursor = '0-0';
    do {
      const reply = (await this.options.redis.callBuffer(
        'XAUTOCLAIM',
        this.cfg.stream,
        this.cfg.group,
        this.cfg.consumerName,
        this.cfg.claimIdleMs,
        cursor,
        'COUNT',
        this.cfg.batchSize,
      )) as [Buffer, RawEntry[], Buffer[]?];
      cursor = reply[0].toString();
      const entries = reply[1];
      if (entries.length > 0) {
        this.log.info({ entries: entries.length }, 'reclaimed entries left pending by another consumer');
        await this.process(entries);
      }
    } while (cursor !== '0-0');
  }

  private async process(entries: RawEntry[]): Promise<void> {
    const ids: string[] = [];
    const units: IngestUnit[] = [];
    /** The stream entry of each unit (an entry of concatenated frames gives several units). */
    const entryOf: string[] = [];
    const fieldsOf = new Map<string, EntryFields>();
    for (const [rawId, rawFields] of entries) {
      const id = rawId.toString();
      ids.push(id);
      // An entry deleted or trimmed while pending comes back without fields: nothing to store.
      if (!rawFields) continue;
      const fields: EntryFields = new Map();
      for (let i = 0; i + 1 < rawFields.length; i += 2) fields.set(rawFields[i]!.toString(), rawFields[i + 1]!);
      fieldsOf.set(id, fields);
      for (const unit of parseStreamEntry(id, fields)) {
        units.push(unit);
        entryOf.push(id);
      }
    }
    const outcomes = await this.options.pipeline.ingestUnits(units, 'stream');

    const multi = this.options.redis.multi();
    let rejected = 0;
    outcomes.forEach((outcome, i) => {
      if (outcome.ok) return;
      rejected++;
      const entryId = entryOf[i]!;
      const original = [...(fieldsOf.get(entryId) ?? [])].flat();
      multi.xadd(this.cfg.deadLetterStream, '*', 'reason', outcome.reason, 'source_id', entryId, 'unit', units[i]!.sourceId, ...original);
    });
    multi.xack(this.cfg.stream, this.cfg.group, ...ids);
    // The batch is durable: its ack may complete while the next batch is decoded and stored. One ack
    // is in flight at a time; a failed one surfaces here, and its entries, still pending, are read
    // again from the history (storing them again is a no-op).
    await this.settleAck();
    const batch = { at: new Date().toISOString(), entries: entries.length, accepted: outcomes.length - rejected, rejected };
    this.ackInFlight = multi.exec().then((results) => {
      const failed = results?.find(([err]) => err);
      if (failed) throw failed[0];
      this.lastBatch = batch;
    });
    this.ackInFlight.catch(() => undefined);
  }

  /** Waits for the ack in flight, if any; throws when it failed. */
  private async settleAck(): Promise<void> {
    const ack = this.ackInFlight;
    this.ackInFlight = undefined;
    await ack;
  }

  /**
   * Pending and lag for the gauges, and trimming: entries every group has acknowledged are removed,
   * so the stream stays bounded without ever dropping an entry some consumer still needs.
   */
  private async refreshStats(): Promise<void> {
    if (!this.connected) return;
    try {
      const { redis } = this.options;
      const groups = (await redis.xinfo('GROUPS', this.cfg.stream)) as unknown[][];
      let minNeeded: string | undefined;
      for (const raw of groups) {
        const info = new Map<string, unknown>();
        for (let i = 0; i + 1 < raw.length; i += 2) info.set(String(raw[i]), raw[i + 1]);
        const pending = Number(info.get('pending') ?? 0);
        let needed = String(info.get('last-delivered-id') ?? '0-0');
        if (pending > 0) {
          const summary = (await redis.xpending(this.cfg.stream, String(info.get('name')))) as [number, string | null, ...unknown[]];
          if (summary[1]) needed = summary[1];
        }
        if (minNeeded === undefined || compareIds(needed, minNeeded) < 0) minNeeded = needed;
        if (info.get('name') === this.cfg.group) {
          this.pending = pending;
          this.lag = Number(info.get('lag') ?? 0);
          this.options.metrics.ingestPending.set(this.pending);
          this.options.metrics.ingestLag.set(this.lag);
        }
      }
      if (minNeeded && minNeeded !== '0-0') await redis.xtrim(this.cfg.stream, 'MINID', '~', minNeeded);
    } catch (err) {
      this.log.debug({ err }, 'stream stats failed');
    }
  }
}

/** Orders stream ids `ms-seq`. */
function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am === bm ? Number(as - bs) : am < bm ? -1 : 1;
}
