import { ForbiddenError } from '../errors.js';
import { LATER, PASSED, reasonOf } from '../ingest/decode-batch.js';
import type { DecodePool } from '../ingest/decode-pool.js';
import { countOutcomes, countReadings, prepareUnits, type CommitOptions, type IngestUnit, type PreparedBatch, type UnitOutcome } from '../ingest/pipeline.js';
import type { Reading } from '../ingest/reading.js';
import type { Metrics } from '../metrics.js';
import { FINGERPRINT_BYTES } from '../nanogridata/types.js';
import type { DeviceActivity } from '../operational/devices.js';
import { RecordBatchBuilder, filterRecords, readRecordBatch } from '../operational/record-batch.js';
import { appendActivity } from './activity.js';
import { inTransaction, sqlState, type Pg, type PgClient } from './connect.js';
import { createPgDeviceEvents, createPgDevices } from './devices.js';
import { PgSeries, prepareReadings, REDELIVERY, REPLAY, storeReadings, withoutFrames, type PgSegment, type PreparedReadings } from './readings.js';

/** Payload type 1: records go to analytics; other types are kept as device events. */
const PAYLOAD_TELEMETRY = 1;
/** Settled devices remembered at most (then forgotten all at once, and looked up again). */
const MAX_SETTLED = 100_000;

/** A frame that passed its checks so far, waiting for the database's word on its fingerprint. */
interface Candidate {
  unit: number;
  frame: number;
  deviceId: string;
  records: number;
  /** Index of its first record in the decoded batch's records. */
  start: number;
  telemetry: boolean;
}

/**
 * The shared mode's ingest: the embedded pipeline's commit (ingest/pipeline.ts) with PostgreSQL
 * deciding what it decided with its in-memory replay index. A batch is one transaction: the frames
 * that passed decoding and the claim check go in with their fingerprints (postgres/readings.ts:
 * a frame whose fingerprint is there already, from whichever instance, is a replay, or a
 * redelivery of the same stream entry), and with them, in the same transaction, what the stored
 * ones change: device activity (appended, then folded into devices and the owners' usage by
 * postgres/activity.ts, as the embedded side effects are a moment after the commit), device
 * events, JSON readings and their work-queue rows. So nothing is counted twice and nothing stored
 * is left uncounted, whichever instance dies when. Outcomes and reasons are the embedded pipeline's, unit for unit.
 */
export class PgIngest {
  private readonly now: () => number;
  private readonly series: PgSeries;
  /** Devices known to be neither new nor claimed by JSON (for good: see postgres/devices.ts): their frames need no lookup. */
  private readonly settled = new Set<string>();

  constructor(
    private readonly options: {
      pool: Pg;
      decoder: DecodePool;
      /** Unix seconds. */
      now?: () => number;
      maxSensorsPerUser?: number;
      metrics?: Metrics;
    },
  ) {
    this.now = options.now ?? (() => Date.now() / 1000);
    this.series = new PgSeries(options.pool);
  }

  /** Decodes and stores a batch: one outcome per unit, in order. Throws when nothing of it could be stored. */
  async ingest(units: readonly IngestUnit[], options: CommitOptions & { maxBadMacs?: number }): Promise<UnitOutcome[]> {
    return this.commit(await this.prepare(units, options.maxBadMacs), options);
  }

  /** Decodes a batch's frames in the decode pool, off this thread. */
  prepare(units: readonly IngestUnit[], maxBadMacs?: number): Promise<PreparedBatch> {
    return prepareUnits(this.options.decoder, units, this.now(), maxBadMacs);
  }

  /**
   * Checks and stores a prepared batch in one transaction: one outcome per unit, in order. Throws
   * when nothing of it was stored (the database unreachable: the consumer reads it again). A batch
   * the database refuses for its data (SQLSTATE class 22, which the checks at the edge should have
   * made impossible) is stored in halves, down to the unit it refuses, which is rejected alone
   * (`unstorable`, with the database's message) rather than holding the stream for ever.
   */
  async commit(batch: PreparedBatch, options: CommitOptions): Promise<UnitOutcome[]> {
    try {
      return await this.commitWhole(batch, options);
    } catch (err) {
      if (!sqlState(err)?.startsWith('22')) throw err;
      const { units } = batch;
      if (units.length === 1) return [{ ok: false, reason: 'unstorable', detail: (err as Error).message }];
      const half = async (from: number, to: number) =>
        this.commit(await this.prepare(units.slice(from, to)), {
          ...options,
          ...(options.tags ? { tags: options.tags.subarray(from, to) } : {}),
          ...(options.entryIds ? { entryIds: options.entryIds.slice(from, to) } : {}),
        });
      const mid = units.length >> 1;
      return [...(await half(0, mid)), ...(await half(mid, units.length))];
    }
  }

  private async commitWhole(batch: PreparedBatch, options: CommitOptions): Promise<UnitOutcome[]> {
    const { units, frameOf, decoded: d } = batch;
    const outcomes: UnitOutcome[] = new Array(units.length);
    const readings: Array<{ unit: number; reading: Reading }> = [];
    const candidates: Candidate[] = [];
    /** Frames refused for a reason that a replay would have preceded (the embedded pipeline checks replay first). */
    const refusedLater: Array<{ unit: number; frame: number; outcome: UnitOutcome; conflict?: [string, string] }> = [];
    let firstRecord = 0;
    const claimants = d ? await this.claimants(d, units, frameOf) : new Map<string, string>();
    for (let i = 0; i < units.length; i++) {
      const unit = units[i]!;
      if (unit.kind === 'invalid') {
        outcomes[i] = { ok: false, reason: unit.reason, ...(unit.detail !== undefined ? { detail: unit.detail } : {}) };
        continue;
      }
      if (unit.kind === 'reading') {
        readings.push({ unit: i, reading: unit.reading });
        continue;
      }
      const f = frameOf[i]!;
      if (d!.status[f] !== PASSED) {
        outcomes[i] = { ok: false, reason: reasonOf(d!, f) };
        continue;
      }
      const records = d!.recordCounts[f]!;
      const start = firstRecord;
      firstRecord += records;
      if (d!.later[f] !== 0) {
        refusedLater.push({ unit: i, frame: f, outcome: { ok: false, reason: LATER[d!.later[f]!]! } });
        continue;
      }
      const deviceId = d!.strings[d!.deviceIds[f]!]!;
      const claimant = claimants.get(deviceId);
      if (claimant !== undefined) {
        refusedLater.push({
          unit: i,
          frame: f,
          outcome: { ok: false, reason: 'claim_conflict', detail: `sensor ${deviceId} is claimed by a user's JSON ingest: held for an admin` },
          conflict: [deviceId, claimant],
        });
        continue;
      }
      candidates.push({ unit: i, frame: f, deviceId, records, start, telemetry: d!.payloadTypes[f] === PAYLOAD_TELEMETRY });
    }

    const segment = d && candidates.length > 0 ? this.segmentOf(d, candidates, options) : undefined;
    // Series are resolved before the transaction takes its connection (it must never wait for a second one).
    const prepared = await prepareReadings(this.series, segment ? [segment] : []);
    const json = await this.prepareJson(readings.map((r) => r.reading), options.source);
    const at = Math.floor(this.now());
    let settledNow: string[] = [];
    const end = this.options.metrics?.commitDuration.startTimer();
    await inTransaction(this.options.pool, async (tx) => {
      const devices = createPgDevices(tx, this.deviceOptions());
      // Frames refused after decoding: a replay says so first; a held frame is counted for the admin.
      if (refusedLater.length > 0) {
        const known = await this.knownFingerprints(tx, d!, refusedLater.map((r) => r.frame));
        for (const r of refusedLater) {
          if (known.has(r.frame)) outcomes[r.unit] = { ok: false, reason: 'replay' };
          else {
            outcomes[r.unit] = r.outcome;
            if (r.conflict) await devices.noteConflict(...r.conflict);
          }
        }
      }
      // Sensors first seen in frames become devices now, before any claim could take them. One that
      // another instance claimed since the lookup above (its row appeared meanwhile) is held instead.
      const unsettled = [...new Set(candidates.map((c) => c.deviceId))].filter((id) => !this.settled.has(id));
      const held = new Map<string, string>();
      if (unsettled.length > 0) {
        const { rows: created } = await tx.query<{ device_id: string }>(
          "INSERT INTO devices(device_id, created_at, origin) SELECT id, $2, 'frame' FROM unnest($1::text[]) AS id ORDER BY id ON CONFLICT (device_id) DO NOTHING RETURNING device_id",
          [unsettled, at],
        );
        const made = new Set(created.map((r) => r.device_id));
        const existing = unsettled.filter((id) => !made.has(id));
        if (existing.length > 0) {
          const { rows } = await tx.query<{ device_id: string; owner_id: string }>(
            "SELECT device_id, owner_id FROM devices WHERE device_id = ANY($1::text[]) AND origin = 'claim' AND owner_id IS NOT NULL FOR SHARE",
            [existing],
          );
          for (const r of rows) held.set(r.device_id, r.owner_id);
        }
        settledNow = unsettled.filter((id) => !held.has(id));
      }
      const drop = new Set<string>();
      if (held.size > 0) {
        const view = new DataView(d!.fingerprints.buffer, d!.fingerprints.byteOffset, d!.fingerprints.byteLength);
        for (const c of candidates) {
          const claimant = held.get(c.deviceId);
          if (claimant === undefined) continue;
          drop.add(view.getBigInt64(c.frame * FINGERPRINT_BYTES, true).toString());
          outcomes[c.unit] = { ok: false, reason: 'claim_conflict', detail: `sensor ${c.deviceId} is claimed by a user's JSON ingest: held for an admin` };
          await devices.noteConflict(c.deviceId, claimant);
        }
      }
      const [verdicts] = segment ? await storeReadings(tx, withoutFrames(prepared, drop)) : [];
      const activity = new Map<string, DeviceActivity>();
      const events = createPgDeviceEvents(tx);
      for (let k = 0; k < candidates.length; k++) {
        const c = candidates[k]!;
        if (held.has(c.deviceId)) continue;
        const verdict = verdicts![k]!;
        if (verdict === REPLAY) {
          outcomes[c.unit] = { ok: false, reason: 'replay' };
          continue;
        }
        if (verdict === REDELIVERY) {
          outcomes[c.unit] = { ok: true, records: 0, redelivery: true };
          continue;
        }
        outcomes[c.unit] = { ok: true, records: c.telemetry ? c.records : 0 };
        if (c.telemetry) {
          const a = activity.get(c.deviceId) ?? { deviceId: c.deviceId, lastSeen: at, frames: 0, records: 0, labId: null, modelId: null };
          a.frames++;
          a.records += c.records;
          const lab = d!.labIds[c.frame]!;
          if (lab >= 0) a.labId = d!.strings[lab]!;
          a.modelId = d!.modelIds[c.frame]!;
          activity.set(c.deviceId, a);
        } else {
          const body = d!.events.find(([frame]) => frame === c.frame)?.[1] ?? {};
          const fp = Buffer.from(d!.fingerprints.buffer, d!.fingerprints.byteOffset + c.frame * FINGERPRINT_BYTES, FINGERPRINT_BYTES).toString('hex');
          await events.add({ sourceId: `event:${fp}`, deviceId: c.deviceId, payloadType: d!.payloadTypes[c.frame]!, ts: d!.timestamps[c.frame]!, body });
        }
      }
      await appendActivity(tx, [...activity.values()]);
      if (readings.length > 0) {
        const entryIds = options.entryIds ? readings.map((r) => options.entryIds![r.unit]) : undefined;
        const stored = await this.storeReadingsIn(tx, readings.map((r) => r.reading), json, { ...options, ...(entryIds ? { entryIds } : {}) });
        stored.forEach((o, k) => (outcomes[readings[k]!.unit] = o));
      }
    });
    end?.();
    // Committed: these devices exist (made by frames or before), and a frame's device is never claimed after.
    if (this.settled.size + settledNow.length > MAX_SETTLED) this.settled.clear();
    for (const id of settledNow) this.settled.add(id);
    this.count(outcomes, options.source, readings.filter((r) => outcomes[r.unit]!.ok && !(outcomes[r.unit] as { redelivery?: true }).redelivery).map((r) => r.reading));
    return outcomes;
  }

  /** JSON readings (HTTP) in a transaction of their own: all stored, or none (403 when a sensor is another's). */
  async ingestReadings(readings: readonly Reading[], options: CommitOptions): Promise<UnitOutcome[]> {
    const json = await this.prepareJson(readings, options.source);
    // Timed as a commit, as frames' transactions are (the embedded committer times JSON readings too).
    const end = this.options.metrics?.commitDuration.startTimer();
    const outcomes = await inTransaction(this.options.pool, (tx) => this.storeReadingsIn(tx, readings, json, options));
    end?.();
    this.count(outcomes, options.source, readings.filter((_, i) => outcomes[i]!.ok));
    return outcomes;
  }

  /** The embedded pipeline's counters, for what this batch stored and refused. */
  private count(outcomes: readonly UnitOutcome[], source: CommitOptions['source'], readings: readonly Reading[]): void {
    const { metrics } = this.options;
    if (!metrics) return;
    countOutcomes(metrics, outcomes, source);
    if (readings.length > 0) countReadings(metrics, readings, source);
    // This transaction was also the commit to analytics, which the embedded committer counts apart
    // (frames and JSON readings alike; a redelivery stores no records).
    metrics.committedRecords.inc(outcomes.reduce((n, o) => n + (o.ok ? o.records : 0), 0));
  }

  /** Each reading's records, laid out for the statement (series resolved), one segment per reading. */
  private async prepareJson(readings: readonly Reading[], source: CommitOptions['source']): Promise<PreparedReadings> {
    const segments = readings.map((reading): PgSegment => {
      const records = new RecordBatchBuilder(reading.values.length);
      for (const [metric, value] of reading.values) records.add({ sensor_id: reading.sensor_id, metric, unit: '', ts: reading.timestamp, value }, null, null);
      return { source, records: records.toBuffer() };
    });
    return prepareReadings(this.series, segments);
  }

  private deviceOptions() {
    return this.options.maxSensorsPerUser === undefined ? {} : { maxSensorsPerUser: this.options.maxSensorsPerUser };
  }

  /** The candidates' fingerprints and records, as one segment. */
  private segmentOf(d: NonNullable<PreparedBatch['decoded']>, candidates: readonly Candidate[], options: CommitOptions): PgSegment {
    const n = candidates.length;
    const fingerprints = new Uint8Array(n * FINGERPRINT_BYTES);
    const timestamps = new Uint32Array(n);
    const tags = new Int32Array(n);
    const recordCounts = new Uint16Array(n);
    const keep = new Uint8Array(readRecordBatch(d.records).length);
    candidates.forEach((c, k) => {
      fingerprints.set(d.fingerprints.subarray(c.frame * FINGERPRINT_BYTES, (c.frame + 1) * FINGERPRINT_BYTES), k * FINGERPRINT_BYTES);
      timestamps[k] = d.timestamps[c.frame]!;
      tags[k] = options.tags?.[c.unit] ?? 0;
      recordCounts[k] = c.telemetry ? c.records : 0;
      if (c.telemetry) keep.fill(1, c.start, c.start + c.records);
    });
    const all = readRecordBatch(d.records);
    const records = keep.every((v) => v === 1) ? d.records : filterRecords(all, (i) => keep[i] === 1);
    return { source: options.source, records, frames: { fingerprints, timestamps, tags, recordCounts } };
  }

  /** Which of these frames' fingerprints are stored already. */
  private async knownFingerprints(tx: PgClient, d: NonNullable<PreparedBatch['decoded']>, frames: readonly number[]): Promise<Set<number>> {
    const view = new DataView(d.fingerprints.buffer, d.fingerprints.byteOffset, d.fingerprints.byteLength);
    const keys = frames.map((f) => view.getBigInt64(f * FINGERPRINT_BYTES, true).toString());
    const { rows } = await tx.query<{ fp: string }>('SELECT fp::text FROM replay_fingerprints WHERE fp = ANY($1::bigint[])', [keys]);
    const known = new Set(rows.map((r) => r.fp));
    return new Set(frames.filter((_, k) => known.has(keys[k]!)));
  }

  /**
   * Who claimed each device named by the batch's passed frames (a user's JSON claim: its frames are
   * held). One query for the devices not known to be settled; those found settled are remembered.
   */
  private async claimants(d: NonNullable<PreparedBatch['decoded']>, units: readonly IngestUnit[], frameOf: Int32Array): Promise<Map<string, string>> {
    const ids = new Set<string>();
    units.forEach((u, i) => {
      const f = frameOf[i]!;
      if (u.kind === 'frame' && d.status[f] === PASSED && d.later[f] === 0) {
        const id = d.strings[d.deviceIds[f]!]!;
        if (!this.settled.has(id)) ids.add(id);
      }
    });
    const claimants = new Map<string, string>();
    if (ids.size === 0) return claimants;
    const { rows } = await this.options.pool.query<{ device_id: string; owner_id: string | null; origin: string }>(
      'SELECT device_id, owner_id, origin FROM devices WHERE device_id = ANY($1::text[])',
      [[...ids]],
    );
    for (const r of rows) {
      if (r.origin === 'claim' && r.owner_id !== null) claimants.set(r.device_id, r.owner_id);
      else if (r.origin !== 'claim') this.settled.add(r.device_id);
    }
    return claimants;
  }

  /** JSON readings inside the caller's transaction: claims, authority, work-queue rows, readings, activity and usage. */
  private async storeReadingsIn(tx: PgClient, readings: readonly Reading[], prepared: PreparedReadings, options: CommitOptions): Promise<UnitOutcome[]> {
    const devices = createPgDevices(tx, this.deviceOptions());
    if (readings.length > 0 && options.owner !== undefined) {
      const refused = await devices.claimAllForUser(new Set(readings.map((r) => r.sensor_id)), options.owner);
      if (refused !== undefined) throw new ForbiddenError(`sensor ${refused} belongs to another user or device`);
    }
    const at = Math.floor(this.now());
    const outcomes: UnitOutcome[] = [];
    const stored = new Uint8Array(readings.length);
    const activity: DeviceActivity[] = [];
    for (let i = 0; i < readings.length; i++) {
      const reading = readings[i]!;
      if (options.anonymous && (await devices.isHeld(reading.sensor_id))) {
        outcomes.push({ ok: false, reason: 'device_authority', detail: `sensor ${reading.sensor_id} is registered or owned: unsigned readings cannot write to it` });
        continue;
      }
      const entryId = options.entryIds?.[i] ?? null;
      const { rows } = await tx.query<{ id: number; fresh: boolean }>(
        `WITH ins AS (
           INSERT INTO telemetry_buffer(source, sensor_id, ts, data, record_count, entry_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (entry_id) DO NOTHING RETURNING id)
         SELECT id, true AS fresh FROM ins UNION ALL SELECT id, false FROM telemetry_buffer WHERE entry_id = $6 AND NOT EXISTS (SELECT 1 FROM ins)`,
        [options.source, reading.sensor_id, reading.timestamp, reading.data, reading.values.length, entryId, at],
      );
      const row = rows[0]!;
      if (!row.fresh) {
        outcomes.push({ ok: true, records: 0, bufferId: row.id, redelivery: true });
        continue;
      }
      stored[i] = 1;
      activity.push({ deviceId: reading.sensor_id, lastSeen: at, frames: 0, records: reading.values.length, labId: null, modelId: null });
      outcomes.push({ ok: true, records: reading.values.length, bufferId: row.id });
    }
    const keep = readingsOf(prepared, readings, stored);
    if (keep.rseries.length > 0) await storeReadings(tx, keep);
    await appendActivity(tx, activity);
    return outcomes;
  }
}

/** The prepared columns of the readings marked in `stored` (a reading's records are consecutive, in reading order). */
function readingsOf(p: PreparedReadings, readings: readonly Reading[], stored: Uint8Array): PreparedReadings {
  if (stored.every((v) => v === 1)) return p;
  const pick = <T>(column: T[]): T[] => {
    const out: T[] = [];
    let at = 0;
    readings.forEach((r, i) => {
      if (stored[i]) out.push(...column.slice(at, at + r.values.length));
      at += r.values.length;
    });
    return out;
  };
  return { ...p, rfp: pick(p.rfp), rseries: pick(p.rseries), rts: pick(p.rts), rvalue: pick(p.rvalue) };
}
