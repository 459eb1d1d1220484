import { ForbiddenError } from '../errors.js';
import { timed, type Metrics } from '../metrics.js';
import { FINGERPRINT_BYTES } from '../nanogridata/types.js';
import type { IngestSource } from '../operational/buffer.js';
import { RecordBatchBuilder, filterRecords, readRecordBatch } from '../operational/record-batch.js';
import type { OperationalStore } from '../operational/store.js';
import type { CommitPart, Committer } from './committer.js';
import { LATER, PASSED, reasonOf, type DecodedBatch } from './decode-batch.js';
import type { DecodePool } from './decode-pool.js';
import type { Reading } from './reading.js';
import { REDELIVERY, REPLAY, type ReplayIndex } from './replay-index.js';
import type { Effects } from './side-effects.js';

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
  | {
      ok: true;
      records: number;
      /** A reading's row in the work queue. */
      bufferId?: number;
      /** Stored before: a stream entry delivered again after a crash (only acknowledged). */
      redelivery?: true;
    }
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

export interface CommitOptions extends ReadingParty {
  source: IngestSource;
  /**
   * Per unit, the identity of its place in the stream (a hash of entry id and position in it, never
   * 0): a frame remembered under the same tag was stored by an earlier delivery of that entry.
   * Absent (HTTP): every repeat is a replay.
   */
  tags?: Int32Array;
  /** Per unit, its stream entry id (a JSON reading delivered again finds its row by it). */
  entryIds?: readonly string[];
  /** The batch's last stream entry id. */
  position?: string;
}

/** A batch decoded (off the main thread), waiting for its commit. */
export interface PreparedBatch {
  units: readonly IngestUnit[];
  /** Per unit: its frame's index in `decoded`, or -1. */
  frameOf: Int32Array;
  decoded: DecodedBatch | null;
}

interface PipelineOptions {
  store: OperationalStore;
  decoder: DecodePool;
  replay: ReplayIndex;
  committer: Committer;
  metrics: Metrics;
  /** Unix seconds; injectable for tests and the soak benchmark. */
  now?: () => number;
  /** Called after readings from HTTP are stored (the per-sensor Redis streams). */
  onReadingsStored?: (readings: readonly Reading[]) => void;
}

/**
 * Decode → checks → one commit, shared by the stream consumer, HTTP frames and JSON ingest.
 *
 * `prepare` decodes a batch's frames in the decode pool. `commit` then runs, on this thread and
 * without yielding, every check that needs shared state — the replay index, a user's claim on the
 * sensor, who may write JSON readings — takes the accepted frames' fingerprints into the replay
 * index and hands their records, fingerprints and side effects to the committer (one DuckDB
 * transaction). One message never fails the rest: a message that fails a check is rejected alone,
 * with its reason. A commit that fails stores nothing of the batch: its fingerprints are forgotten
 * again and the caller sees the error (the consumer reads the entries again, HTTP answers 5xx).
 */
export class IngestPipeline {
  private readonly store: OperationalStore;
  private readonly now: () => number;

  constructor(private readonly options: PipelineOptions) {
    this.store = options.store;
    this.now = options.now ?? (() => Date.now() / 1000);
    const pushSecrets = () => options.decoder.setDeviceSecrets(this.store.devices.ownSecrets());
    pushSecrets();
    this.store.devices.onSecretsChanged(pushSecrets);
  }

  /** Decodes and stores a batch: one outcome per unit, in order. Throws when nothing of it could be stored. */
  async ingest(units: readonly IngestUnit[], options: CommitOptions & { maxBadMacs?: number }): Promise<UnitOutcome[]> {
    return this.commit(await this.prepare(units, options.maxBadMacs), options);
  }

  /** Decodes the frames of a batch in the decode pool. Several batches may be prepared while another commits. */
  prepare(units: readonly IngestUnit[], maxBadMacs?: number): Promise<PreparedBatch> {
    return prepareUnits(this.options.decoder, units, this.now(), maxBadMacs);
  }

  /** Checks and commits a prepared batch (see the class comment); each batch exactly once. */
  async commit(batch: PreparedBatch, options: CommitOptions): Promise<UnitOutcome[]> {
    const { outcomes, part, taken } = this.accept(batch, options);
    if (part) {
      try {
        await this.options.committer.submit(part);
      } catch (err) {
        const { replay } = this.options;
        const fp = part.fingerprints!;
        for (let k = 0; k < taken; k++) replay.remove(fp.fp, k * FINGERPRINT_BYTES, fp.ts[k]!);
        throw err;
      }
    }
    countOutcomes(this.options.metrics, outcomes, options.source);
    return outcomes;
  }

  /** JSON readings (HTTP batch) in a transaction of their own: all stored, or none (403). */
  ingestReadings(readings: readonly Reading[], options: ReadingParty & { source: IngestSource }): UnitOutcome[] {
    const outcomes = timed(this.options.metrics, 'sqlite', 'ingest_batch', () => this.store.transaction(() => this.storeReadings(readings, options)));
    this.readingsCommitted(readings, options.source);
    return outcomes;
  }

  /**
   * Stores readings in the work queue inside the caller's transaction (HTTP group commit); the
   * committer carries them into analytics. The caller calls readingsCommitted after its commit.
   */
  storeReadings(readings: readonly Reading[], options: ReadingParty & { source: IngestSource; entryIds?: readonly (string | undefined)[] }): UnitOutcome[] {
    const { store } = this;
    if (readings.length > 0 && options.owner !== undefined) {
      const refused = store.devices.claimAllForUser(new Set(readings.map((r) => r.sensor_id)), options.owner);
      if (refused !== undefined) throw new ForbiddenError(`sensor ${refused} belongs to another user or device`);
    }
    const at = Math.floor(this.now());
    return readings.map((reading, i): UnitOutcome => {
      if (options.anonymous && store.devices.isHeld(reading.sensor_id)) {
        return { ok: false, reason: 'device_authority', detail: `sensor ${reading.sensor_id} is registered or owned: unsigned readings cannot write to it` };
      }
      const records = new RecordBatchBuilder(reading.values.length);
      for (const [metric, value] of reading.values) records.add({ sensor_id: reading.sensor_id, metric, unit: '', ts: reading.timestamp, value }, null, null);
      const entryId = options.entryIds?.[i];
      const { id, fresh } = store.buffer.insert({
        source: options.source,
        sensorId: reading.sensor_id,
        ts: reading.timestamp,
        data: reading.data,
        records: records.toBuffer(),
        recordCount: reading.values.length,
        ...(entryId !== undefined ? { entryId } : {}),
      });
      if (!fresh) return { ok: true, records: 0, bufferId: id, redelivery: true };
      // The reading's activity and usage count in its own transaction: exactly once.
      store.devices.recordActivity({ deviceId: reading.sensor_id, lastSeen: at, frames: 0, records: reading.values.length, labId: null, modelId: null });
      // A user's readings are of sensors the claim above made (or found) theirs.
      const owner = options.owner ?? store.devices.ownerOf(reading.sensor_id);
      if (owner != null && reading.values.length > 0) store.billing.addUsage(owner, reading.values.length);
      return { ok: true, records: reading.values.length, bufferId: id };
    });
  }

  /** After readings stored by storeReadings committed: metrics and the per-sensor streams. */
  readingsCommitted(readings: readonly Reading[], source: IngestSource): void {
    countReadings(this.options.metrics, readings, source);
    if (source === 'http') this.options.onReadingsStored?.(readings);
  }

  /** Resolves once the decode workers run. */
  ready(): Promise<void> {
    return this.options.decoder.ready();
  }

  async close(): Promise<void> {
    await this.options.decoder.close();
  }

  /**
   * The synchronous part of commit: every check against shared state, and the part to commit.
   * `taken`: the accepted frames, whose fingerprints are now in the replay index.
   */
  private accept(batch: PreparedBatch, options: CommitOptions): { outcomes: UnitOutcome[]; part: CommitPart | undefined; taken: number } {
    const { store } = this;
    const { replay } = this.options;
    const { units, frameOf, decoded: d } = batch;
    const outcomes: UnitOutcome[] = new Array(units.length);
    const readings: Reading[] = [];
    const readingAt: number[] = [];
    const nFrames = d?.status.length ?? 0;
    const fp = new Uint8Array(nFrames * FINGERPRINT_BYTES);
    const fpTs = new Uint32Array(nFrames);
    const fpTag = new Int32Array(nFrames);
    let taken = 0;
    const effects: Effects = { at: Math.floor(this.now()), activity: [], events: [] };
    const activity = new Map<string, Effects['activity'][number]>();
    const frameDevices = new Set<string>();
    const keep: Array<[start: number, end: number]> = [];
    let firstRecord = 0;
    let allRecords = 0;

    try {
      units.forEach((unit, i) => {
        if (unit.kind === 'invalid') {
          outcomes[i] = { ok: false, reason: unit.reason, ...(unit.detail !== undefined ? { detail: unit.detail } : {}) };
          return;
        }
        if (unit.kind === 'reading') {
          readings.push(unit.reading);
          readingAt.push(i);
          return;
        }
        const f = frameOf[i]!;
        if (d!.status[f] !== PASSED) {
          outcomes[i] = { ok: false, reason: reasonOf(d!, f) };
          return;
        }
        const records = d!.recordCounts[f]!;
        const start = firstRecord;
        firstRecord += records;
        allRecords += records;
        const ts = d!.timestamps[f]!;
        const tag = options.tags?.[i] ?? 0;
        const seen = replay.check(d!.fingerprints, f * FINGERPRINT_BYTES, ts, tag);
        if (seen === REDELIVERY) {
          outcomes[i] = { ok: true, records: 0, redelivery: true };
          return;
        }
        if (seen === REPLAY) {
          outcomes[i] = { ok: false, reason: 'replay' };
          return;
        }
        if (d!.later[f] !== 0) {
          outcomes[i] = { ok: false, reason: LATER[d!.later[f]!]! };
          return;
        }
        const deviceId = d!.strings[d!.deviceIds[f]!]!;
        // A sensor a user claimed by JSON: its frames are held for an admin (not stored, not remembered).
        const claimant = store.devices.claimantOf(deviceId);
        if (claimant !== undefined) {
          outcomes[i] = { ok: false, reason: 'claim_conflict', detail: `sensor ${deviceId} is claimed by a user's JSON ingest: held for an admin` };
          store.devices.noteConflict(deviceId, claimant);
          return;
        }
        replay.add(d!.fingerprints, f * FINGERPRINT_BYTES, ts, tag);
        fp.set(d!.fingerprints.subarray(f * FINGERPRINT_BYTES, (f + 1) * FINGERPRINT_BYTES), taken * FINGERPRINT_BYTES);
        fpTs[taken] = ts;
        fpTag[taken] = tag;
        taken++;
        frameDevices.add(deviceId);
        const payloadType = d!.payloadTypes[f]!;
        if (payloadType === PAYLOAD_TELEMETRY) {
          outcomes[i] = { ok: true, records };
          keep.push([start, start + records]);
          const a = activity.get(deviceId) ?? [deviceId, 0, 0, null, null];
          a[1]++;
          a[2] += records;
          const lab = d!.labIds[f]!;
          if (lab >= 0) a[3] = d!.strings[lab]!;
          a[4] = d!.modelIds[f]!;
          activity.set(deviceId, a);
        } else {
          outcomes[i] = { ok: true, records: 0 };
          const body = d!.events.find(([frame]) => frame === f)?.[1] ?? {};
          const sourceId = `event:${Buffer.from(d!.fingerprints.buffer, d!.fingerprints.byteOffset + f * FINGERPRINT_BYTES, FINGERPRINT_BYTES).toString('hex')}`;
          effects.events.push([sourceId, deviceId, payloadType, ts, body]);
        }
      });

      // Sensors first seen in frames become devices now, before any claim could take them.
      if (frameDevices.size > 0) store.devices.noteFrameDevices(frameDevices);
      if (readings.length > 0) {
        const entryIds = options.entryIds ? readingAt.map((i) => options.entryIds![i]) : undefined;
        const stored = this.store.transaction(() =>
          this.storeReadings(readings, { source: options.source, anonymous: options.anonymous ?? false, ...(entryIds ? { entryIds } : {}) }),
        );
        stored.forEach((o, k) => (outcomes[readingAt[k]!] = o));
        const fresh = readings.filter((_, k) => stored[k]!.ok && !(stored[k] as { redelivery?: true }).redelivery);
        if (fresh.length > 0) this.readingsCommitted(fresh, options.source);
      }
    } catch (err) {
      // Nothing of the batch is stored: its frames are not taken either (a retry is no replay).
      for (let k = 0; k < taken; k++) replay.remove(fp, k * FINGERPRINT_BYTES, fpTs[k]!);
      throw err;
    }
    effects.activity = [...activity.values()];
    if (taken === 0) return { outcomes, part: undefined, taken };
    const kept = keep.reduce((n, [a, b]) => n + b - a, 0);
    const records = kept === allRecords ? d!.records : keptRecords(d!.records, keep);
    const part: CommitPart = {
      segments: kept > 0 ? [{ source: options.source, records }] : [],
      fingerprints: { fp: fp.subarray(0, taken * FINGERPRINT_BYTES), ts: fpTs.subarray(0, taken), tag: fpTag.subarray(0, taken) },
      effects,
      ...(options.position !== undefined ? { position: options.position } : {}),
    };
    return { outcomes, part, taken };
  }

}

/** The packed records of the accepted telemetry frames (`keep`: ranges of record indexes, in order). */
function keptRecords(all: Uint8Array, keep: ReadonlyArray<[number, number]>): Uint8Array {
  const columns = readRecordBatch(all);
  const marks = new Uint8Array(columns.length);
  for (const [a, b] of keep) marks.fill(1, a, b);
  return filterRecords(columns, (i) => marks[i] === 1);
}

/** Decodes a batch's frames in the decode pool (both modes' pipelines). `nowS`: the server clock, Unix seconds. */
export async function prepareUnits(decoder: DecodePool, units: readonly IngestUnit[], nowS: number, maxBadMacs?: number): Promise<PreparedBatch> {
  const frameOf = new Int32Array(units.length).fill(-1);
  let count = 0;
  let bytes = 0;
  units.forEach((u, i) => {
    if (u.kind !== 'frame') return;
    frameOf[i] = count++;
    bytes += u.bytes.length;
  });
  if (count === 0) return { units, frameOf, decoded: null };
  // One buffer of its own (not a slice of Node's pool), so that it can move to the worker.
  const all = new Uint8Array(bytes);
  const ends = new Uint32Array(count);
  const deviceIds: Array<string | null> = new Array(count);
  let named = false;
  let at = 0;
  units.forEach((u, i) => {
    if (u.kind !== 'frame') return;
    all.set(u.bytes, at);
    at += u.bytes.length;
    ends[frameOf[i]!] = at;
    deviceIds[frameOf[i]!] = u.deviceId ?? null;
    named ||= u.deviceId !== undefined;
  });
  const decoded = await decoder.decode({
    bytes: all,
    ends,
    deviceIds: named ? deviceIds : null,
    nowS,
    ...(maxBadMacs !== undefined ? { maxBadMacs } : {}),
  });
  return { units, frameOf, decoded };
}

/** Accepted frames and their records, and rejections by reason, of one batch (either mode's pipeline). */
export function countOutcomes(metrics: Metrics, outcomes: readonly UnitOutcome[], source: IngestSource): void {
  let accepted = 0;
  let records = 0;
  // One increment per reason per batch, not per frame: a body of thousands of rejected frames
  // would otherwise spend more on the counter than on refusing them.
  const rejected = new Map<string, number>();
  for (const o of outcomes) {
    if (o.ok) {
      if (o.redelivery || o.bufferId !== undefined) continue; // readings are counted when stored
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

/** JSON readings stored (either mode). */
export function countReadings(metrics: Metrics, readings: readonly Reading[], source: IngestSource): void {
  metrics.telemetryIngested.inc({ source }, readings.length);
  metrics.recordsIngested.inc({ source }, readings.reduce((n, r) => n + r.values.length, 0));
}
