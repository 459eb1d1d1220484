import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { IngestConfig } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { OutboxRow, StreamOutbox } from '../operational/stream-outbox.js';
import type { IngestPipeline, IngestUnit, PreparedBatch } from './pipeline.js';
import { settleBatch, type StreamEntry } from './settle-batch.js';
import type { IngestStatus } from './status.js';
import { parseStreamEntry, type EntryFields } from './stream-entry.js';

type RawEntry = [id: Buffer, fields: Buffer[] | null];

/** A batch of entries read and prepared, waiting for its commit. */
interface ConsumerBatch {
  entries: StreamEntry[];
  /** Messages of each entry. */
  unitsOf: number[];
  /** null when every entry was already stored (a redelivery). */
  prepared: PreparedBatch | null;
}
type ReadReply = Array<[stream: Buffer, entries: RawEntry[]]> | null;

interface ConsumerOptions {
  /** Connection for ordinary commands; the consumer duplicates it for its blocking reads. */
  redis: Redis;
  config: IngestConfig;
  pipeline: IngestPipeline;
  outbox: StreamOutbox;
  metrics: Metrics;
  logger: Logger;
}

const MAX_BACKOFF_MS = 5000;
const STATS_INTERVAL_MS = 2000;
/** A blocking read that has not answered this long after its BLOCK expired is presumed lost. */
const WATCHDOG_GRACE_MS = 10_000;
/** Entries waiting while no batch completes for this long: the consumer is stalled. */
const STALL_MS = 30_000;
/** Batches read and prepared ahead of the one being committed. */
const PIPELINE_DEPTH = 3;
/** Not yet connected this long after start, without an error: still connecting, not disconnected. */
const CONNECT_GRACE_MS = 10_000;
/** Used memory above this share of maxmemory: Redis is near full. */
const NEAR_FULL = 0.9;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });

/** XACK of ids packed as 'id,id,…' (ARGV: stream, group, ids). Allowed under maxmemory: acknowledging frees memory. */
const ACK = `#!lua flags=allow-oom
local ids = {}
for id in string.gmatch(ARGV[3], '[^,]+') do ids[#ids + 1] = id end
local acked = 0
for i = 1, #ids, 1000 do acked = acked + redis.call('XACK', ARGV[1], ARGV[2], unpack(ids, i, math.min(i + 999, #ids))) end
return acked
`;
type WithAck = { oceanAck(stream: string, group: string, ids: string): unknown };

const isOom = (err: unknown) => err instanceof Error && err.message.startsWith('OOM');

/**
 * Reads the ingest stream as one consumer of a consumer group. Every batch is stored (one SQLite
 * transaction, with what the batch owes the stream: its acknowledgements and dead letters) before
 * it is acknowledged. After a crash the consumer first settles what it still owed, then re-reads
 * its own pending entries (those already stored are only acknowledged); entries left pending by a
 * dead consumer are reclaimed with XAUTOCLAIM.
 *
 * A full Redis (maxmemory, noeviction) refuses writes but not reads, acknowledgements or trims:
 * the consumer keeps draining, keeps the dead letters Redis refuses in SQLite until it accepts
 * them, and trims at once so that memory frees.
 */
export class StreamConsumer {
  private readonly cfg: IngestConfig;
  private readonly log: Logger;
  private reader: Redis | undefined;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private statsTimer: NodeJS.Timeout | undefined;
  private connected = false;
  private everConnected = false;
  private startedAt = 0;
  private groupReady = false;
  private lastClaimAt = 0;
  private pending = 0;
  private lag = 0;
  private lastBatch: IngestStatus['consumer']['last_batch'] = null;
  private lastProgressAt = Date.now();
  private lastError: string | null = null;
  private redisFullAt = 0;
  private memory: { used: number; max: number } | null = null;
  /** What is owed to the stream, oldest first (mirrors the outbox table). */
  private owed: OutboxRow[];
  /** Entries stored and not yet acknowledged: a redelivery of one is only acknowledged. */
  private readonly stored = new Set<string>();
  private settling: Promise<void> | undefined;

  constructor(private readonly options: ConsumerOptions) {
    if (!('oceanAck' in options.redis)) options.redis.defineCommand('oceanAck', { lua: ACK, numberOfKeys: 0 });
    this.cfg = options.config;
    this.log = options.logger.child({ component: 'consumer', stream: this.cfg.stream, group: this.cfg.group, consumer: this.cfg.consumerName });
    this.owed = options.outbox.rows(this.cfg.stream);
    for (const row of this.owed) for (const id of row.entryIds) this.stored.add(id);
  }

  start(): void {
    if (this.loop) return;
    // Blocking reads get their own connection; commands queue until it is back (BullMQ's habit).
    // No command timeout here: a blocking read legitimately waits up to blockMs (the watchdog covers hangs).
    this.reader = this.options.redis.duplicate({ maxRetriesPerRequest: null, commandTimeout: undefined, lazyConnect: false });
    this.reader.on('error', (err: Error) => this.log.debug({ err }, 'reader connection error'));
    this.abort = new AbortController();
    this.startedAt = Date.now();
    this.loop = this.run(this.abort.signal);
    this.statsTimer = setInterval(() => void this.refreshStats(), STATS_INTERVAL_MS);
    this.log.info('stream consumer started');
  }

  /** Finishes the batch in progress (stored and, when Redis answers, acknowledged), then stops. Safe to call twice. */
  async stop(): Promise<void> {
    this.abort.abort();
    clearInterval(this.statsTimer);
    this.statsTimer = undefined;
    // Ends a blocking read at once (it would otherwise wait out BLOCK, or a Redis outage). Entries it
    // may have been given stay pending and are read again from the history on the next start.
    this.reader?.disconnect();
    await this.loop;
    this.loop = undefined;
    this.reader = undefined;
    this.connected = false;
    this.options.metrics.ingestConnected.set(0);
  }

  status(): IngestStatus['consumer'] {
    const now = Date.now();
    return {
      enabled: true,
      connected: this.connected,
      connecting: !this.everConnected && this.lastError === null && now - this.startedAt < CONNECT_GRACE_MS,
      stream: this.cfg.stream,
      group: this.cfg.group,
      consumer: this.cfg.consumerName,
      pending: this.pending,
      lag: this.lag,
      last_batch: this.lastBatch,
      last_error: this.lastError,
      stalled: this.connected && this.pending + this.lag > 0 && now - this.lastProgressAt > STALL_MS,
      redis_refusing_writes: now - this.redisFullAt < 2 * STATS_INTERVAL_MS + 1000,
      redis_memory: this.memory,
      redis_near_full: this.memory !== null && this.memory.max > 0 && this.memory.used > NEAR_FULL * this.memory.max,
      owed_dead_letters: this.owed.reduce((n, row) => n + row.deadLetters.length, 0),
    };
  }

  private async run(signal: AbortSignal): Promise<void> {
    let backoff = 100;
    // Own pending entries first: those of a previous life of this consumer, or of a failed batch.
    let history = true;
    // New entries flow through a short pipeline: while one batch is committed, the next ones are
    // being read, decoded and looked up. Entries of batches never committed (stop, error) stay
    // pending under this consumer and come back through the history read.
    const ahead: Array<Promise<ConsumerBatch | null>> = [];
    const readAhead = () => {
      const next = this.read('>').then((raw) => (raw.length === 0 ? null : this.prepareBatch(raw)));
      next.catch(() => undefined);
      ahead.push(next);
    };
    while (!signal.aborted) {
      try {
        if (this.owed.length > 0) await this.queueSettle();
        if (!this.groupReady) await this.ensureGroup();
        if (Date.now() - this.lastClaimAt > this.cfg.claimIdleMs / 2) await this.reclaimStale();
        if (history) {
          const raw = await this.read('0');
          this.setConnected(true);
          if (raw.length === 0) history = false;
          else await this.commitBatch(await this.prepareBatch(raw));
          continue;
        }
        while (ahead.length < PIPELINE_DEPTH && !signal.aborted) readAhead();
        const batch = await ahead.shift()!;
        this.setConnected(true);
        if (batch) await this.commitBatch(batch);
        else this.lastProgressAt = Date.now();
        backoff = 100;
      } catch (err) {
        // Batches read ahead are dropped uncommitted: their entries stay pending, read again from the history.
        await this.discard(ahead.splice(0));
        await this.settling?.catch(() => undefined);
        if (signal.aborted) break;
        const message = err instanceof Error ? err.message : String(err);
        if (message.includes('NOGROUP')) this.groupReady = false;
        this.lastError = message;
        if (!isOom(err)) this.setConnected(false);
        this.options.metrics.errorsTotal.inc({ component: 'consumer' });
        this.log.warn({ err, retryInMs: backoff }, 'stream read failed; retrying');
        history = true;
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
    await this.discard(ahead.splice(0));
    await this.queueSettle().catch((err: unknown) => this.log.warn({ err }, 'could not settle the last batch; it is settled on the next start'));
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    if (connected) this.everConnected = true;
    this.options.metrics.ingestConnected.set(connected ? 1 : 0);
    if (connected) this.log.info('connected to the stream');
  }

  /**
   * Creates the group at id 0 (so entries added before the first start are read) with MKSTREAM.
   * A full Redis refuses XGROUP CREATE even for a group that exists: then it is looked up instead.
   */
  private async ensureGroup(): Promise<void> {
    try {
      await this.options.redis.xgroup('CREATE', this.cfg.stream, this.cfg.group, '0', 'MKSTREAM');
      this.log.info('consumer group created');
    } catch (err) {
      if (isOom(err)) {
        this.redisFullAt = Date.now();
        const groups = (await this.options.redis.xinfo('GROUPS', this.cfg.stream).catch(() => [])) as unknown[][];
        if (!groups.some((g) => g.includes(this.cfg.group))) throw err;
      } else if (!(err instanceof Error) || !err.message.includes('BUSYGROUP')) {
        throw err;
      }
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
        await this.commitBatch(await this.prepareBatch(entries));
      }
    } while (cursor !== '0-0');
  }

  private async discard(batches: Array<Promise<ConsumerBatch | null>>): Promise<void> {
    for (const result of await Promise.allSettled(batches)) {
      if (result.status === 'fulfilled' && result.value?.prepared) this.options.pipeline.discard(result.value.prepared);
    }
  }

  /** Reads entries into units and prepares them (decode, replay lookup): everything but storing. */
  private async prepareBatch(raw: RawEntry[]): Promise<ConsumerBatch> {
    const entries: StreamEntry[] = [];
    const units: IngestUnit[] = [];
    const unitsOf: number[] = [];
    for (const [rawId, rawFields] of raw) {
      const id = rawId.toString();
      // Stored before (a redelivery after a crash or a failed ack): only its acknowledgement is owed.
      if (this.stored.has(id)) continue;
      const fields: EntryFields | null = rawFields ? new Map() : null;
      if (rawFields) for (let i = 0; i + 1 < rawFields.length; i += 2) fields!.set(rawFields[i]!.toString(), rawFields[i + 1]!);
      const entryUnits = fields ? parseStreamEntry(fields) : [];
      entries.push({ id, fields, outcomes: [] });
      units.push(...entryUnits);
      unitsOf.push(entryUnits.length);
    }
    return { entries, unitsOf, prepared: entries.length > 0 ? await this.options.pipeline.prepare(units) : null };
  }

  /** Stores a batch with what it owes the stream, then settles that (overlapping the next batch). */
  private async commitBatch({ entries, unitsOf, prepared }: ConsumerBatch): Promise<void> {
    if (prepared) {
      let row: OutboxRow | undefined;
      this.options.pipeline.commit(prepared, {
        source: 'stream',
        anonymous: true,
        inTransaction: (outcomes) => {
          let at = 0;
          entries.forEach((entry, k) => {
            entry.outcomes = outcomes.slice(at, (at += unitsOf[k]!));
          });
          const owed = settleBatch(entries);
          const id = this.options.outbox.add(this.cfg.stream, owed.ack, owed.deadLetters);
          row = { id, stream: this.cfg.stream, entryIds: owed.ack, deadLetters: owed.deadLetters };
        },
      });
      this.owed.push(row!);
      this.options.metrics.deadLetters.inc(row!.deadLetters.length);
      for (const id of row!.entryIds) this.stored.add(id);
      const rejected = entries.reduce((n, e) => n + e.outcomes.filter((o) => !o.ok).length, 0);
      const messages = entries.reduce((n, e) => n + e.outcomes.length, 0);
      this.lastBatch = { at: new Date().toISOString(), entries: entries.length, accepted: messages - rejected, rejected };
    }
    this.lastProgressAt = Date.now();
    // One settle in flight: this batch's overlaps the next batch; a failed one surfaces here, and
    // what it owed stays owed.
    const previous = this.settling;
    if (previous) await previous;
    void this.queueSettle();
  }

  /** Settles after the settle in flight, if any. */
  private queueSettle(): Promise<void> {
    const run = (this.settling ?? Promise.resolve()).catch(() => undefined).then(() => this.settle());
    this.settling = run;
    run.then(
      () => {
        if (this.settling === run) this.settling = undefined;
      },
      () => undefined,
    );
    return run;
  }

  /**
   * Pays what stored batches owe, oldest first: dead letters (bounded by DEAD_LETTER_MAXLEN), then
   * acknowledgements, each on its own so a full Redis refusing the first cannot block the second.
   */
  private async settle(): Promise<void> {
    const { redis, outbox } = this.options;
    const rows = this.owed.splice(0);
    try {
      while (rows.length > 0) {
        const row = rows[0]!;
        const pipeline = redis.pipeline();
        for (const letter of row.deadLetters) {
          pipeline.xadd(this.cfg.deadLetterStream, 'MAXLEN', '~', this.cfg.deadLetterMaxLen, '*', ...letter.flat());
        }
        // One packed argument: a thousand separate ids cost the client more than the ack itself.
        if (row.entryIds.length > 0) (pipeline as unknown as WithAck).oceanAck(this.cfg.stream, this.cfg.group, row.entryIds.join(','));
        const results = (await pipeline.exec()) ?? [];
        const keptLetters = row.deadLetters.filter((_, i) => results[i]?.[0]);
        const ackError = row.entryIds.length > 0 ? results[row.deadLetters.length]?.[0] : null;
        const refused = results.find(([err]) => err)?.[0];
        if (refused && isOom(refused)) this.redisFullAt = Date.now();
        const left = { entryIds: ackError ? row.entryIds : [], deadLetters: keptLetters };
        outbox.settle(row.id, left);
        if (!ackError) for (const id of row.entryIds) this.stored.delete(id);
        rows.shift();
        if (left.entryIds.length > 0 || left.deadLetters.length > 0) {
          this.owed.push({ ...row, ...left });
          if (ackError) throw ackError;
        }
      }
      // A full Redis frees memory only when acknowledged entries are trimmed: do it now.
      if (Date.now() - this.redisFullAt < STATS_INTERVAL_MS) await this.trim();
    } finally {
      // Rows not reached stay owed, ahead of any added meanwhile.
      this.owed.unshift(...rows);
    }
  }

  /**
   * Pending and lag for the gauges, Redis memory, trimming, and a retry of what is owed.
   */
  private async refreshStats(): Promise<void> {
    if (!this.connected) return;
    try {
      await this.trim();
      const info = await this.options.redis.info('memory');
      const used = /used_memory:(\d+)/.exec(info)?.[1];
      const max = /maxmemory:(\d+)/.exec(info)?.[1];
      this.memory = used !== undefined ? { used: Number(used), max: Number(max ?? 0) } : null;
      if (this.memory) {
        this.options.metrics.redisMemoryUsed.set(this.memory.used);
        this.options.metrics.redisMaxmemory.set(this.memory.max);
      }
      if (this.owed.length > 0 && !this.settling) void this.queueSettle().catch(() => undefined);
    } catch (err) {
      this.log.debug({ err }, 'stream stats failed');
    }
  }

  /** Entries every group has acknowledged are removed, so the stream stays bounded without dropping one some consumer still needs. */
  private async trim(): Promise<void> {
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
  }
}

/** Orders stream ids `ms-seq`. */
function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am === bm ? Number(as - bs) : am < bm ? -1 : 1;
}
