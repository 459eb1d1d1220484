import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { AppError, ForbiddenError } from '../errors.js';
import { timed, type Metrics } from '../metrics.js';
import { FINGERPRINT_BYTES, type ReplayItem } from '../nanogridata/types.js';
import type { ActivityEntry, IngestSource } from '../operational/buffer.js';
import { RecordBatchBuilder, filterRecords, readRecordBatch, recordCountOf } from '../operational/record-batch.js';
import type { OperationalStore } from '../operational/store.js';
import { LATER, PASSED, reasonOf, type DecodedBatch } from './decode-batch.js';
import type { DecodeWorker } from './decode-pool.js';
import { framesResult, type FramesResult } from './frames-result.js';
import type { Reading } from './reading.js';
import type { ReplayMemory } from './replay-memory.js';
import { splitFrames } from './split-frames.js';

/** Payload type 1: records go to analytics; other types are kept as device events. */
const PAYLOAD_TELEMETRY = 1;
/**
 * bad_mac frames after which the rest of an HTTP body goes unchecked (not_verified). A board
 * with a wrong secret fails every frame of its body; sixteen say so as well as ten thousand do.
 */
export const MAX_BAD_MACS_PER_BODY = 16;

/** One message for the pipeline: a frame, a JSON reading, or an input already known to be unreadable. */
export type IngestUnit =
  | { kind: 'frame'; bytes: Buffer; deviceId?: string }
  | { kind: 'reading'; reading: Reading }
  | { kind: 'invalid'; reason: string; detail?: string };

export type UnitOutcome =
  | { ok: true; records: number; /** A reading's buffer row (its id in the work queue). */ bufferId?: number }
  | { ok: false; reason: string; detail?: string };

/** Who JSON readings come from: a user (`owner`), no authenticated party (`anonymous`), or else the admin. */
interface ReadingParty {
  /** Readings claim unknown sensors for this user; a sensor that is not the user's fails the whole call (403). */
  owner?: string;
  /**
   * Readings that nobody authenticated (the stream's JSON entries): one naming a sensor that a
   * party speaks for (registered by an admin, or owned by a user) is rejected alone,
   * `device_authority`.
   */
  anonymous?: boolean;
}

export interface IngestOptions extends ReadingParty {
  source: IngestSource;
  /** Runs inside the batch transaction with the outcomes: what the caller keeps with the batch (the stream outbox). */
  inTransaction?: (outcomes: readonly UnitOutcome[]) => void;
  /** See DecodeRequest.maxBadMacs. */
  maxBadMacs?: number;
}

/** A batch decoded and looked up in the replay memory, ready to commit. */
export interface PreparedBatch {
  prepared: Prepared[];
  records: Uint8Array;
  token: number;
}

/** A unit with what decoding and the replay lookup said of it. */
interface Prepared {
  unit: IngestUnit;
  /** A frame: its place in the decoded batch, where the record of its records starts, and what the replay memory said. */
  frame?: { batch: DecodedBatch; index: number; firstRecord: number; replay?: ReplayItem; known?: boolean };
}

interface PipelineOptions {
  store: OperationalStore;
  decoder: DecodeWorker;
  replay: ReplayMemory;
  metrics: Metrics;
  logger: Logger;
  /** Unix seconds; injectable for tests and the soak benchmark. */
  now?: () => number;
  /** Called after readings from HTTP are stored (the per-sensor Redis streams). */
  onReadingsStored?: (readings: readonly Reading[]) => void;
}

/**
 * Decode → SQLite buffer, shared by HTTP ingest, the HTTP frames endpoint and the Redis consumer.
 * A batch is stored in one transaction (buffer rows, replay memory, devices, events, the caller's
 * outbox), so it is stored whole or not at all, and its frames count as accepted exactly when it
 * commits. One message can never fail the rest: what cannot be stored alone is rejected alone.
 */
export class IngestPipeline {
  private readonly store: OperationalStore;
  private readonly now: () => number;
  private readonly log: Logger;
  /** Source ids of device events: unique per process (start time + random) and increasing. */
  private readonly idPrefix = `${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
  private idSeq = 0;

  constructor(private readonly options: PipelineOptions) {
    this.store = options.store;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.log = options.logger.child({ component: 'pipeline' });
    const pushSecrets = () => options.decoder.setDeviceSecrets(this.store.devices.ownSecrets());
    pushSecrets();
    this.store.devices.onSecretsChanged(pushSecrets);
  }

  /**
   * Decodes and stores a batch. Returns one outcome per unit, in order. Throws only when the batch
   * could not be stored at all (then nothing of it was): the caller must not acknowledge it.
   */
  async ingest(units: readonly IngestUnit[], options: IngestOptions): Promise<UnitOutcome[]> {
    return this.commit(await this.prepare(units, options.maxBadMacs), options);
  }

  /**
   * Step 1 of ingest, asynchronous and off the main thread where it can be: decodes the frames
   * (decode worker) and asks the replay memory about them. Several batches may be prepared while
   * another commits; `commit` each exactly once, in any order.
   */
  async prepare(units: readonly IngestUnit[], maxBadMacs?: number): Promise<PreparedBatch> {
    const { prepared, records } = await this.decode(units, maxBadMacs);
    const items = prepared.flatMap((p) => (p.frame?.replay ? [p.frame.replay] : []));
    const looked = await this.options.replay.lookup(items);
    let k = 0;
    for (const p of prepared) if (p.frame?.replay) p.frame.known = looked.known[k++]!;
    return { prepared, records, token: looked.token };
  }

  /** A prepared batch that will not be committed (its entries will be read again). */
  discard(batch: PreparedBatch): void {
    this.options.replay.release(batch.token);
  }

  /** Step 2, synchronous: stores a prepared batch in one transaction and returns the outcomes. */
  commit(batch: PreparedBatch, options: IngestOptions): UnitOutcome[] {
    const { replay } = this.options;
    let outcomes: UnitOutcome[];
    try {
      outcomes = timed(this.options.metrics, 'sqlite', 'ingest_batch', () => this.store_(batch.prepared, batch.records, options));
    } finally {
      replay.release(batch.token);
    }
    this.countOutcomes(outcomes, options.source);
    void replay.flush();
    return outcomes;
  }

  /**
   * A body of concatenated frames (HTTP). Each frame is its own message: an identical repeat is a
   * replay. A body of more than `maxFrames` frames is refused whole (413) before any is decoded.
   */
  async ingestFrameBody(body: Buffer, options: { deviceId?: string | undefined; maxFrames: number }): Promise<FramesResult> {
    const { frames, unreadable, tooMany } = splitFrames(body, options.maxFrames);
    if (tooMany) {
      throw new AppError('too_many_frames', 413, `the body holds more than ${options.maxFrames} frames: send at most ${options.maxFrames} per request`);
    }
    const { deviceId } = options;
    const units: IngestUnit[] = frames.map((bytes) => ({ kind: 'frame', bytes, ...(deviceId !== undefined ? { deviceId } : {}) }));
    if (unreadable) units.push({ kind: 'invalid', reason: unreadable.reason });
    return framesResult(await this.ingest(units, { source: 'http_frames', maxBadMacs: MAX_BAD_MACS_PER_BODY }));
  }

  /** JSON readings (HTTP batch) in a transaction of their own: all stored, or none (403). */
  ingestReadings(readings: readonly Reading[], options: ReadingParty & { source: IngestSource }): UnitOutcome[] {
    const outcomes = timed(this.options.metrics, 'sqlite', 'ingest_batch', () => this.store.transaction(() => this.storeReadings(readings, options)));
    this.readingsCommitted(readings, options.source);
    return outcomes;
  }

  /**
   * Stores readings inside the caller's transaction (HTTP group commit); the caller calls
   * readingsCommitted after its commit.
   */
  storeReadings(readings: readonly Reading[], options: ReadingParty & { source: IngestSource }): UnitOutcome[] {
    return this.storeUnits(
      readings.map((reading) => ({ unit: { kind: 'reading', reading } })),
      options,
    );
  }

  /** After readings stored by storeReadings committed: metrics and the per-sensor streams. */
  readingsCommitted(readings: readonly Reading[], source: IngestSource): void {
    const records = readings.reduce((n, r) => n + r.values.length, 0);
    this.options.metrics.telemetryIngested.inc({ source }, readings.length);
    this.options.metrics.recordsIngested.inc({ source }, records);
    if (source === 'http') this.options.onReadingsStored?.(readings);
  }

  /** Resolves once the decode worker runs. */
  ready(): Promise<void> {
    return this.options.decoder.ready();
  }

  async close(): Promise<void> {
    await this.options.decoder.close();
  }

  /** Decodes the frames of a batch in the decode worker; `records` are those of its telemetry frames that passed. */
  private async decode(units: readonly IngestUnit[], maxBadMacs?: number): Promise<{ prepared: Prepared[]; records: Uint8Array }> {
    const prepared: Prepared[] = units.map((unit) => ({ unit }));
    const frames = prepared.filter((p) => p.unit.kind === 'frame');
    if (frames.length === 0) return { prepared, records: NO_RECORDS };
    const ends = new Uint32Array(frames.length);
    let end = 0;
    frames.forEach((p, i) => (ends[i] = end += (p.unit as { bytes: Buffer }).bytes.length));
    const deviceIds = frames.map((p) => (p.unit as { deviceId?: string }).deviceId ?? null);
    // A buffer of its own (not a slice of Node's pool), so that it can move to the worker.
    const bytes = new Uint8Array(end);
    let at = 0;
    for (const p of frames) {
      const b = (p.unit as { bytes: Buffer }).bytes;
      bytes.set(b, at);
      at += b.length;
    }
    const decoded = await this.options.decoder.decode({
      bytes,
      ends,
      deviceIds: deviceIds.some((d) => d !== null) ? deviceIds : null,
      nowS: this.now(),
      ...(maxBadMacs !== undefined ? { maxBadMacs } : {}),
    });
    let firstRecord = 0;
    const fingerprints = Buffer.from(decoded.fingerprints.buffer, decoded.fingerprints.byteOffset, decoded.fingerprints.byteLength);
    frames.forEach((p, i) => {
      p.frame = { batch: decoded, index: i, firstRecord };
      if (decoded.status[i] === PASSED) {
        p.frame.replay = { timestamp: decoded.timestamps[i]!, fingerprint: fingerprints.subarray(i * FINGERPRINT_BYTES, (i + 1) * FINGERPRINT_BYTES) };
        firstRecord += decoded.recordCounts[i]!;
      }
    });
    return { prepared, records: decoded.records };
  }

  /**
   * Stores the batch in one transaction. When SQLite refuses it for a reason that is not the
   * database's condition (disk full, locked, I/O), each message is stored alone, and the ones that
   * still fail are rejected (`store_failed`) while the rest go on.
   */
  private store_(prepared: Prepared[], records: Uint8Array, options: IngestOptions): UnitOutcome[] {
    const { replay } = this.options;
    const run = (fallback: boolean) => {
      try {
        const outcomes = this.store.transaction(() => {
          const out = fallback ? this.storeOneByOne(prepared, records, options) : this.storeUnits(prepared, options, records);
          options.inTransaction?.(out);
          return out;
        });
        replay.committed();
        return outcomes;
      } catch (err) {
        replay.rolledBack();
        this.store.devices.forgetCache();
        throw err;
      }
    };
    try {
      return run(false);
    } catch (err) {
      if (err instanceof AppError || isStoreCondition(err)) throw err;
      this.log.error({ err }, 'a batch could not be stored; storing its messages one by one');
      return run(true);
    }
  }

  private storeOneByOne(prepared: Prepared[], records: Uint8Array, options: IngestOptions): UnitOutcome[] {
    return prepared.map((p) => {
      try {
        return this.store.transaction(() => this.storeUnits([p], options, records))[0]!;
      } catch (err) {
        if (err instanceof AppError || isStoreCondition(err)) throw err;
        if (p.frame?.replay) this.options.replay.unstage([p.frame.replay]);
        this.log.error({ err }, 'a message could not be stored; rejecting it');
        return { ok: false, reason: 'store_failed' };
      }
    });
  }

  /** Writes the units (inside the caller's transaction) and returns their outcomes. */
  private storeUnits(prepared: readonly Prepared[], options: ReadingParty & { source: IngestSource }, records: Uint8Array = NO_RECORDS): UnitOutcome[] {
    const { store } = this;
    const outcomes: UnitOutcome[] = new Array(prepared.length);
    // Frames: the replay memory settles which ones are new (earlier ones of this batch count).
    const framed = prepared.map((p, i) => ({ p, i })).filter(({ p }) => p.frame?.replay !== undefined);
    // Frames for a sensor a user claimed by JSON are held for an admin (not stored, not remembered).
    const claimants = new Map<number, string>();
    for (const { p, i } of framed) {
      const { batch, index } = p.frame!;
      if (batch.later[index] !== 0) continue;
      const claimant = store.devices.claimantOf(batch.strings[batch.deviceIds[index]!]!);
      if (claimant !== undefined) claimants.set(i, claimant);
    }
    const taken =
      framed.length === 0
        ? []
        : this.options.replay.claim(
            framed.map(({ p }) => p.frame!.replay!),
            framed.map(({ p, i }) => p.frame!.batch.later[p.frame!.index] === 0 && !claimants.has(i)),
            framed.map(({ p }) => p.frame!.known === true),
          );
    const takenAt = new Map(framed.map(({ i }, k) => [i, taken[k]!]));

    const activity = new Map<string, ActivityEntry>();
    const frameDevices = new Set<string>();
    const keepRecords: Array<[start: number, end: number]> = [];
    let frameMessages = 0;
    let frameRecords = 0;
    prepared.forEach((p, i) => {
      const { unit } = p;
      if (unit.kind === 'invalid') {
        outcomes[i] = { ok: false, reason: unit.reason, ...(unit.detail !== undefined ? { detail: unit.detail } : {}) };
        return;
      }
      if (unit.kind === 'reading') return; // below, all readings together
      const { batch, index } = p.frame!;
      if (batch.status[index] !== PASSED) {
        outcomes[i] = { ok: false, reason: reasonOf(batch, index) };
        return;
      }
      const records = batch.recordCounts[index]!;
      const deviceId = batch.strings[batch.deviceIds[index]!]!;
      const claimant = claimants.get(i);
      if (takenAt.get(i)) outcomes[i] = { ok: false, reason: 'replay' };
      else if (batch.later[index] !== 0) outcomes[i] = { ok: false, reason: LATER[batch.later[index]!]! };
      else if (claimant !== undefined) {
        outcomes[i] = { ok: false, reason: 'claim_conflict', detail: `sensor ${deviceId} is claimed by a user's JSON ingest: held for an admin` };
        store.devices.noteConflict(deviceId, claimant);
      } else {
        outcomes[i] = { ok: true, records };
        const payloadType = batch.payloadTypes[index]!;
        frameDevices.add(deviceId);
        if (payloadType === PAYLOAD_TELEMETRY) {
          keepRecords.push([p.frame!.firstRecord, p.frame!.firstRecord + records]);
          frameMessages++;
          frameRecords += records;
          const a = activity.get(deviceId) ?? [deviceId, 0, 0, null, null];
          a[1]++;
          a[2] += records;
          const lab = batch.labIds[index]!;
          if (lab >= 0) a[3] = batch.strings[lab]!;
          a[4] = batch.modelIds[index]!;
          activity.set(deviceId, a);
        } else {
          const body = batch.events.find(([frame]) => frame === index)?.[1] ?? {};
          store.deviceEvents.add({ sourceId: this.nextEventId(), deviceId, payloadType, ts: batch.timestamps[index]!, body });
        }
      }
    });
    if (frameDevices.size > 0) store.devices.noteFrameDevices(frameDevices);
    if (frameMessages > 0) {
      store.buffer.insert({
        source: options.source,
        messages: frameMessages,
        records: keptRecords(records, keepRecords),
        recordCount: frameRecords,
        activity: [...activity.values()],
      });
    }

    const readings = prepared.flatMap((p, i) => (p.unit.kind === 'reading' ? [{ reading: p.unit.reading, i }] : []));
    if (readings.length > 0 && options.owner !== undefined) {
      const refused = store.devices.claimAllForUser(new Set(readings.map((r) => r.reading.sensor_id)), options.owner);
      if (refused !== undefined) throw new ForbiddenError(`sensor ${refused} belongs to another user or device`);
    }
    for (const { reading, i } of readings) {
      if (options.anonymous && store.devices.isHeld(reading.sensor_id)) {
        outcomes[i] = { ok: false, reason: 'device_authority', detail: `sensor ${reading.sensor_id} is registered or owned: unsigned readings cannot write to it` };
        continue;
      }
      const records = new RecordBatchBuilder(reading.values.length);
      for (const [metric, value] of reading.values) records.add({ sensor_id: reading.sensor_id, metric, unit: '', ts: reading.timestamp, value }, null, null);
      const bufferId = store.buffer.insert({
        source: options.source,
        messages: 1,
        records: records.toBuffer(),
        recordCount: reading.values.length,
        reading: { sensorId: reading.sensor_id, ts: reading.timestamp, data: reading.data },
      });
      outcomes[i] = { ok: true, records: reading.values.length, bufferId };
    }
    return outcomes;
  }

  private nextEventId(): string {
    return `event:${this.idPrefix}:${(this.idSeq++).toString(36).padStart(10, '0')}`;
  }

  private countOutcomes(outcomes: readonly UnitOutcome[], source: IngestSource): void {
    const { metrics } = this.options;
    let accepted = 0;
    let records = 0;
    // One increment per reason per batch, not per frame: a body of thousands of rejected frames
    // would otherwise spend more on the counter than on refusing them.
    const rejected = new Map<string, number>();
    for (const o of outcomes) {
      if (o.ok) {
        accepted++;
        records += o.records;
      } else {
        rejected.set(o.reason, (rejected.get(o.reason) ?? 0) + 1);
      }
    }
    for (const [reason, n] of rejected) metrics.framesRejected.inc({ reason }, n);
    metrics.telemetryIngested.inc({ source }, accepted);
    metrics.recordsIngested.inc({ source }, records);
  }
}

const NO_RECORDS = new RecordBatchBuilder(1).toBuffer();

/**
 * The packed records of the accepted telemetry frames (`keep`: ranges of record indexes, in
 * order): the decoder's batch as it is when every record is kept, else a copy of the kept ones.
 */
function keptRecords(all: Uint8Array, keep: ReadonlyArray<[number, number]>): Buffer {
  const whole = Buffer.from(all.buffer, all.byteOffset, all.byteLength);
  const kept = keep.reduce((n, [a, b]) => n + b - a, 0);
  if (kept === recordCountOf(whole)) return whole;
  const columns = readRecordBatch(all);
  const marks = new Uint8Array(columns.length);
  for (const [a, b] of keep) marks.fill(1, a, b);
  return filterRecords(columns, (i) => marks[i] === 1);
}

/**
 * SQLite errors that are the database's condition, not the data's: the whole batch waits for
 * them to pass (and is retried), rather than any message being rejected for them.
 */
export function isStoreCondition(err: unknown): boolean {
  if (!(err instanceof Database.SqliteError)) return false;
  return /^SQLITE_(BUSY|LOCKED|FULL|IOERR|READONLY|CANTOPEN|NOMEM|CORRUPT|NOTADB|PROTOCOL|INTERRUPT)/.test(err.code);
}
