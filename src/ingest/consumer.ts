import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { IngestConfig } from '../config.js';
import type { Metrics } from '../metrics.js';
import { deadLettersOf, type DeadLetter, type Entry } from './dead-letters.js';
import type { CommitOptions, IngestUnit, PreparedBatch, UnitOutcome } from './pipeline.js';
import type { IngestStatus } from './status.js';
import { parseStreamEntry, type EntryFields } from './stream-entry.js';

type RawEntry = [id: Buffer, fields: Buffer[] | null];
type ReadReply = Array<[stream: Buffer, entries: RawEntry[]]> | null;

/** A batch read and decoded, waiting for its commit. */
interface Batch {
  entries: Entry[];
  units: IngestUnit[];
  tags: Int32Array;
  entryIds: string[];
  prepared: PreparedBatch;
}

/** What the consumer needs of a pipeline: the embedded one (ingest/pipeline.ts) or the shared mode's (postgres/ingest.ts). */
export interface BatchIngest {
  prepare(units: readonly IngestUnit[]): Promise<PreparedBatch>;
  commit(batch: PreparedBatch, options: CommitOptions): Promise<UnitOutcome[]>;
}

interface ConsumerOptions {
  /** Connection for ordinary commands; the consumer duplicates it for its blocking reads. */
  redis: Redis;
  config: IngestConfig;
  /** This data dir's name in the group (ingest/consumer-name.ts), or this instance's in the shared mode. */
  consumerName: string;
  pipeline: BatchIngest;
  /**
   * The shared mode: the group has several consumers, and entries pending this long on another of
   * them (an instance that died or hangs) are claimed and stored here, once (the shared store's
   * fingerprints decide). Unset (embedded): another consumer in the group is refused.
   */
  claimIdleMs?: number;
  metrics: Metrics;
  logger: Logger;
}

/** Another consumer serves the group: its readings would be invisible here (embedded mode). */
export class ConsumerRefusedError extends Error {}

const MAX_BACKOFF_MS = 5000;
const STATS_INTERVAL_MS = 2000;
/** A blocking read that has not answered this long after its BLOCK expired is presumed lost. */
const WATCHDOG_GRACE_MS = 10_000;
/** Entries waiting while no batch completes for this long: the consumer is stalled. */
const STALL_MS = 30_000;
/** Batches read and decoded ahead of the ones being committed. */
const READ_AHEAD = 2;
/**
 * Batches handed to the committer and not yet committed: while one DuckDB commit runs, the next
 * batches wait and go together in the next (group commit), so a commit's fixed cost (its WAL
 * sync, an appender per partition) is shared by more frames the faster they arrive.
 */
const COMMITTING = 4;
/** Not yet connected this long after start, without an error: still connecting, not disconnected. */
const CONNECT_GRACE_MS = 10_000;
/** How long start() waits for Redis to say who else is in the group before it lets the loop find out. */
const START_CHECK_MS = 2000;
/** Used memory above this share of maxmemory: Redis is near full. */
const NEAR_FULL = 0.9;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });

const isOom = (err: unknown) => err instanceof Error && err.message.startsWith('OOM');

/** FNV-1a of an entry id, then mixed with the unit's position: the unit's tag in the replay index (never 0). */
function tagOf(entryId: string, unit: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < entryId.length; i++) h = Math.imul(h ^ entryId.charCodeAt(i), 0x01000193);
  return (h ^ Math.imul(unit + 1, 0x9e3779b1)) | 0 || 1;
}

/**
 * The stream consumer: the one loop from Redis to DuckDB, in the embedded mode the group's only
 * consumer.
 *
 *   1. XREADGROUP a batch of new entries ('>'); the next read is already on its way while this
 *      batch is decoded and committed (READ_AHEAD), so Redis, the decode workers and DuckDB work
 *      at the same time; batches arriving while a commit runs share the next one (COMMITTING).
 *   2. Each entry becomes units (frames, or one JSON reading); the frames are decoded in the
 *      decode pool, off this thread (pipeline.prepare).
 *   3. pipeline.commit checks replay, claims and authority and hands the accepted records, their
 *      fingerprints and the stream position to the committer: ONE DuckDB transaction.
 *   4. Only then the batch is settled: a dead letter (XADD, with the reason) per rejected unit,
 *      then XACK of every entry (a letter a full Redis refuses is kept and written when it has room).
 *
 * Nothing else is kept: a crash anywhere leaves the unacknowledged entries pending under this
 * consumer's name, and the next start reads them first (history, from '0'). A frame whose
 * fingerprint DuckDB stored under this same entry is a redelivery, only acknowledged; a JSON
 * reading finds its work-queue row by entry id. In the embedded mode entries of other consumers
 * are never claimed: a second consumer in the group is refused. In the shared mode (claimIdleMs)
 * the group has several consumers, and this one takes over entries idle on another (claimIdle).
 */
export class StreamConsumer {
  private readonly cfg: IngestConfig;
  private readonly name: string;
  private readonly log: Logger;
  private reader: Redis | undefined;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private statsTimer: NodeJS.Timeout | undefined;
  private connected = false;
  private everConnected = false;
  private startedAt = 0;
  private groupReady = false;
  private refused: string | null = null;
  private pending = 0;
  private lag = 0;
  private lastBatch: IngestStatus['consumer']['last_batch'] = null;
  private lastProgressAt = Date.now();
  private lastError: string | null = null;
  private redisFullAt = 0;
  private memory: { used: number; max: number } | null = null;
  /** Dead letters Redis refused (memory full), by entry id: written when it has room. */
  private readonly owed = new Map<string, DeadLetter[]>();
  private settling: Promise<void> = Promise.resolve();
  private writingLetters: Promise<void> = Promise.resolve();

  constructor(private readonly options: ConsumerOptions) {
    this.cfg = options.config;
    this.name = options.consumerName;
    this.log = options.logger.child({ component: 'consumer', stream: this.cfg.stream, group: this.cfg.group, consumer: this.name });
  }

  /**
   * Starts the loop. When Redis answers at once, first makes sure no other consumer serves the
   * group (ConsumerRefusedError); a Redis that is away is waited for by the loop.
   */
  async start(): Promise<void> {
    if (this.loop) return;
    try {
      await Promise.race([this.ensureGroup(), new Promise((resolve) => setTimeout(resolve, START_CHECK_MS).unref())]);
    } catch (err) {
      if (err instanceof ConsumerRefusedError) throw err;
    }
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

  /** Finishes the batch in progress (committed and, when Redis answers, acknowledged), then stops. Safe to call twice. */
  async stop(): Promise<void> {
    this.abort.abort();
    clearInterval(this.statsTimer);
    this.statsTimer = undefined;
    // Ends a blocking read at once. Entries it may have been given stay pending and come back
    // through the history read on the next start.
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
      consumer: this.name,
      pending: this.pending,
      lag: this.lag,
      last_batch: this.lastBatch,
      last_error: this.refused ?? this.lastError,
      refused: this.refused !== null,
      stalled: this.connected && this.pending + this.lag > 0 && now - this.lastProgressAt > STALL_MS,
      redis_refusing_writes: now - this.redisFullAt < 2 * STATS_INTERVAL_MS + 1000,
      redis_memory: this.memory,
      redis_near_full: this.memory !== null && this.memory.max > 0 && this.memory.used > NEAR_FULL * this.memory.max,
      owed_dead_letters: [...this.owed.values()].reduce((n, letters) => n + letters.length, 0),
    };
  }

  private async run(signal: AbortSignal): Promise<void> {
    let backoff = 100;
    // Own pending entries first (a previous life of this consumer, or a failed batch), oldest first.
    let history: string | null = '0';
    const ahead: Array<Promise<Batch | null>> = [];
    const committing: Array<Promise<void>> = [];
    const readAhead = () => {
      const next = this.read('>').then((raw) => (raw.length === 0 ? null : this.prepare(raw)));
      next.catch(() => undefined);
      ahead.push(next);
    };
    let claimedAt = Date.now();
    while (!signal.aborted) {
      try {
        if (!this.groupReady) await this.ensureGroup();
        const claimIdleMs = this.options.claimIdleMs;
        if (claimIdleMs !== undefined && history === null && Date.now() - claimedAt >= claimIdleMs / 2) {
          claimedAt = Date.now();
          if ((await this.claimIdle(claimIdleMs)) > 0) {
            // The claimed entries are pending on this consumer now: read through the history, as after
            // a restart. Batches read ahead stay pending too and come back the same way.
            await Promise.allSettled(ahead.splice(0));
            history = '0';
          }
        }
        if (history !== null) {
          while (committing.length > 0) await committing.shift();
          const raw = await this.read(history);
          this.setConnected(true);
          if (raw.length === 0) history = null;
          else {
            history = raw[raw.length - 1]![0].toString();
            await this.commit(await this.prepare(raw));
          }
          continue;
        }
        while (ahead.length < READ_AHEAD && !signal.aborted) readAhead();
        const batch = await ahead.shift()!;
        this.setConnected(true);
        if (batch) {
          // Checked and handed over now, in order; its commit is awaited once COMMITTING are out.
          const commit = this.commit(batch);
          commit.catch(() => undefined);
          committing.push(commit);
          while (committing.length >= COMMITTING) await committing.shift();
        } else {
          while (committing.length > 0) await committing.shift();
          this.lastProgressAt = Date.now();
        }
        backoff = 100;
      } catch (err) {
        // Batches read ahead are dropped uncommitted: their entries stay pending, read again from the history.
        await Promise.allSettled(ahead.splice(0));
        await Promise.allSettled(committing.splice(0));
        await this.settling.catch(() => undefined);
        if (signal.aborted) break;
        if (err instanceof ConsumerRefusedError) {
          this.refused = err.message;
          this.log.error(err.message);
          break;
        }
        const message = err instanceof Error ? err.message : String(err);
        if (message.includes('NOGROUP')) this.groupReady = false;
        this.lastError = message;
        if (!isOom(err)) this.setConnected(false);
        this.options.metrics.errorsTotal.inc({ component: 'consumer' });
        this.log.warn({ err, retryInMs: backoff }, 'stream read failed; retrying');
        history = '0';
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
    await Promise.allSettled(ahead.splice(0));
    await Promise.allSettled(committing.splice(0));
    await this.settling.catch((err: unknown) => this.log.warn({ err }, 'could not acknowledge the last batch; it is read again on the next start'));
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    if (connected) this.everConnected = true;
    this.options.metrics.ingestConnected.set(connected ? 1 : 0);
    if (connected) this.log.info('connected to the stream');
  }

  /**
   * Creates the group at id 0 (so entries added before the first start are read) with MKSTREAM,
   * and refuses to join a group another consumer serves. A full Redis refuses XGROUP CREATE even
   * for a group that exists: then it is looked up instead.
   */
  private async ensureGroup(): Promise<void> {
    const { redis } = this.options;
    try {
      await redis.xgroup('CREATE', this.cfg.stream, this.cfg.group, '0', 'MKSTREAM');
      this.log.info('consumer group created');
    } catch (err) {
      if (isOom(err)) {
        this.redisFullAt = Date.now();
        const groups = (await redis.xinfo('GROUPS', this.cfg.stream).catch(() => [])) as unknown[][];
        if (!groups.some((g) => g.includes(this.cfg.group))) throw err;
      } else if (!(err instanceof Error) || !err.message.includes('BUSYGROUP')) {
        throw err;
      }
    }
    if (this.options.claimIdleMs !== undefined) {
      this.groupReady = true;
      return;
    }
    const consumers = (await redis.xinfo('CONSUMERS', this.cfg.stream, this.cfg.group)) as unknown[][];
    const others = consumers.map((c) => String(c[c.indexOf('name') + 1])).filter((name) => name !== this.name);
    if (others.length > 0) {
      throw new ConsumerRefusedError(
        `stream ${this.cfg.stream}, group ${this.cfg.group} is already served by consumer ${others.join(', ')} (another data dir); this one is ${this.name}. ` +
          'In the embedded mode one data dir serves a group: several instances need the shared mode (DATABASE_URL on each, one PostgreSQL). ' +
          `If ${others[0]} is gone for good and its data dir with it, remove it from the group — XGROUP DELCONSUMER ${this.cfg.stream} ${this.cfg.group} ${others[0]} ` +
          '(entries still pending on it are then not read again) — or give this data dir its name (INGEST_CONSUMER before its first start, or the file DATA_DIR/consumer).',
      );
    }
    this.groupReady = true;
  }

  /**
   * Takes over entries pending longer than `minIdleMs` on other consumers of the group (XPENDING
   * with IDLE, then XCLAIM of their ids, page by page); returns how many. This consumer's own
   * pending entries are left alone: they are in its batches (XAUTOCLAIM would take those too, and
   * a slow commit would then have its entries read again). XCLAIM re-checks the idle time, so an
   * entry another consumer claimed meanwhile is not taken twice.
   */
  private async claimIdle(minIdleMs: number): Promise<number> {
    const { redis } = this.options;
    let start = '-';
    let claimed = 0;
    for (;;) {
      const page = (await redis.xpending(this.cfg.stream, this.cfg.group, 'IDLE', minIdleMs, start, '+', this.cfg.batchSize)) as Array<[string, string, number, number]>;
      const theirs = page.filter(([, consumer]) => consumer !== this.name).map(([id]) => id);
      if (theirs.length > 0) claimed += ((await redis.xclaim(this.cfg.stream, this.cfg.group, this.name, minIdleMs, ...theirs, 'JUSTID')) as string[]).length;
      if (page.length < this.cfg.batchSize) break;
      start = `(${page[page.length - 1]![0]}`;
    }
    if (claimed > 0) this.log.info({ claimed }, 'claimed entries pending on other consumers');
    return claimed;
  }

  private async read(from: string): Promise<RawEntry[]> {
    const reader = this.reader!;
    // The Buffer variant keeps binary `frame` fields intact.
    const args = ['GROUP', this.cfg.group, this.name, 'COUNT', this.cfg.batchSize];
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

  /** Reads entries into units and decodes their frames: everything but the checks and the commit. */
  private async prepare(raw: RawEntry[]): Promise<Batch> {
    const entries: Entry[] = [];
    const units: IngestUnit[] = [];
    const tags: number[] = [];
    const entryIds: string[] = [];
    for (const [rawId, rawFields] of raw) {
      const id = rawId.toString();
      const fields: EntryFields | null = rawFields;
      const entryUnits = fields ? parseStreamEntry(fields) : [];
      entryUnits.forEach((unit, u) => {
        units.push(unit);
        tags.push(tagOf(id, u));
        entryIds.push(id);
      });
      entries.push({ id, fields, units: entryUnits.length });
    }
    return { entries, units, tags: Int32Array.from(tags), entryIds, prepared: await this.options.pipeline.prepare(units) };
  }

  /** Commits a batch, then settles it (overlapping the next batch's commit). */
  private async commit(batch: Batch): Promise<void> {
    const { entries } = batch;
    const outcomes = await this.options.pipeline.commit(batch.prepared, {
      source: 'stream',
      anonymous: true,
      tags: batch.tags,
      entryIds: batch.entryIds,
      position: entries[entries.length - 1]!.id,
    });
    const rejected = outcomes.filter((o) => !o.ok).length;
    this.lastBatch = { at: new Date().toISOString(), entries: entries.length, accepted: outcomes.length - rejected, rejected };
    this.lastProgressAt = Date.now();
    // One settle in flight: a failed one surfaces at the next batch, and its entries stay pending.
    const previous = this.settling;
    await previous;
    this.settling = this.settle(entries, outcomes);
    this.settling.catch(() => undefined);
  }

  /**
   * Writes the dead letters of a committed batch, then acknowledges all its entries. Letters a full
   * Redis refuses are kept here and written once it has room (refreshStats): holding their entries
   * pending instead would hold the trim behind them, and a full Redis frees memory only by trimming.
   * The cost: a crash while Redis is full loses those letters (the frames were rejected either way).
   */
  private async settle(entries: readonly Entry[], outcomes: readonly UnitOutcome[]): Promise<void> {
    let at = 0;
    for (const entry of entries) {
      const letters = deadLettersOf(entry, outcomes.slice(at, (at += entry.units)));
      if (letters.length > 0) this.owed.set(entry.id, letters);
    }
    await this.writeOwed();
    await this.options.redis.xack(this.cfg.stream, this.cfg.group, ...entries.map((e) => e.id));
    // A full Redis frees memory only when acknowledged entries are trimmed: do it now.
    if (Date.now() - this.redisFullAt < STATS_INTERVAL_MS) await this.trim();
  }

  /** Writes the dead letters owed, oldest first; those Redis refuses stay owed. One write at a time. */
  private writeOwed(): Promise<void> {
    const run = this.writingLetters.catch(() => undefined).then(() => this.writeOwedNow());
    this.writingLetters = run;
    return run;
  }

  private async writeOwedNow(): Promise<void> {
    if (this.owed.size === 0) return;
    const { redis, metrics } = this.options;
    const owed = [...this.owed];
    const pipeline = redis.pipeline();
    for (const [, letters] of owed) {
      for (const letter of letters) pipeline.xadd(this.cfg.deadLetterStream, 'MAXLEN', '~', this.cfg.deadLetterMaxLen, '*', ...letter.flat());
    }
    const results = (await pipeline.exec()) ?? [];
    let k = 0;
    for (const [id, letters] of owed) {
      const mine = results.slice(k, (k += letters.length));
      const failed = mine.find(([err]) => err)?.[0];
      if (failed && isOom(failed)) this.redisFullAt = Date.now();
      // Letters already written are not written again.
      const left = letters.filter((_, i) => mine[i]?.[0]);
      metrics.deadLetters.inc(letters.length - left.length);
      if (left.length === 0) this.owed.delete(id);
      else this.owed.set(id, left);
    }
  }

  /** Pending and lag for the gauges, Redis memory, trimming, and a retry of owed dead letters. */
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
      if (this.owed.size > 0) await this.writeOwed();
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
