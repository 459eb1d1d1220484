import { randomBytes } from 'node:crypto';
import type { NanogridataConfig } from '../config.js';
import { ForbiddenError } from '../errors.js';
import type { Principal } from '../http/auth.js';
import { timed, type Metrics } from '../metrics.js';
import type { BufferInsert, IngestSource } from '../operational/buffer.js';
import type { DeviceActivity } from '../operational/devices.js';
import type { OperationalStore } from '../operational/store.js';
import { inspectFrame, replayCheckOf, resolveReplay, type PassedInspection } from '../nanogridata/decoder.js';
import { splitFrames } from './split-frames.js';
import type { DecodeResult, DecodedFrame, FrameContext, MeasurementRecord, ReplayCheck, ReplayMemory } from '../nanogridata/types.js';

/** Payload type 1: records go to analytics; other types are kept as device events. */
const PAYLOAD_TELEMETRY = 1;

/** A JSON reading, as HTTP ingest and JSON stream entries carry it (already validated). */
export interface Reading {
  sensor_id: string;
  data: Record<string, unknown>;
  /** Unix seconds. */
  timestamp: number;
}

/** One unit of work for the pipeline. `sourceId` is unique per transport message: storing it twice is a no-op. */
export type IngestUnit =
  | { kind: 'frame'; sourceId: string; bytes: Buffer; deviceId?: string; messageId?: string }
  | { kind: 'reading'; sourceId: string; reading: Reading }
  /** An entry that could not be parsed into either; it is rejected with this reason. */
  | { kind: 'invalid'; sourceId: string; reason: string };

export type UnitOutcome = { ok: true; records: number } | { ok: false; reason: string };

export interface FramesResult {
  accepted: number;
  rejected: Array<{ index: number; reason: string }>;
}

/** Numeric fields of a reading become records (metric = key); everything else stays in the raw payload. */
function readingRecords(reading: Reading): MeasurementRecord[] {
  const records: MeasurementRecord[] = [];
  for (const [metric, value] of Object.entries(reading.data)) {
    if (typeof value === 'number' && Number.isFinite(value)) {
      records.push({ sensor_id: reading.sensor_id, metric, unit: '', ts: reading.timestamp, value });
    }
  }
  return records;
}

interface PipelineOptions {
  store: OperationalStore;
  nanogridata: NanogridataConfig;
  replay: ReplayMemory;
  metrics: Metrics;
  /** Unix seconds; injectable for tests. */
  now?: () => number;
}

/**
 * Decode → SQLite buffer, shared by HTTP ingest, the HTTP frames endpoint and the Redis consumer.
 * A batch is written in one transaction (buffer rows, device activity, usage, events), so a batch is
 * either stored whole or not at all; the caller acknowledges its transport only after this returns.
 */
export class IngestPipeline {
  private readonly store: OperationalStore;
  private readonly now: () => number;
  /**
   * HTTP messages have no transport id: they get `<prefix>:<sequence>`, unique per pipeline
   * instance (start time + random bytes) and increasing, so the UNIQUE source_id index takes
   * appends instead of random inserts (random UUIDs made every row dirty its own index page).
   */
  private readonly idPrefix = `${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
  private idSeq = 0;
  private nextId(): string {
    return `${this.idPrefix}:${(this.idSeq++).toString(36).padStart(10, '0')}`;
  }

  constructor(private readonly options: PipelineOptions) {
    this.store = options.store;
    this.now = options.now ?? (() => Date.now() / 1000);
  }

  /**
   * HTTP JSON ingest. A user's readings claim unknown sensors for that user; a sensor owned by
   * someone else fails the whole call (403) and nothing is stored.
   */
  ingestReadings(readings: Reading[], principal: Principal, source: IngestSource = 'http'): { ids: number[]; records: number } {
    const units: IngestUnit[] = readings.map((reading) => ({ kind: 'reading', sourceId: `${source}:${this.nextId()}`, reading }));
    const stored = timed(this.options.metrics, 'sqlite', 'ingest_batch', () => this.store.transaction(() => {
      if (principal.kind === 'user') {
        for (const sensorId of new Set(readings.map((r) => r.sensor_id))) {
          if (!this.store.devices.claimForUser(sensorId, principal.userId)) {
            throw new ForbiddenError(`sensor ${sensorId} belongs to another user`);
          }
        }
      }
      return this.storeBatch(units, [], source);
    }));
    this.countOutcomes(stored.outcomes, source);
    return { ids: stored.bufferIds as number[], records: stored.records };
  }

  /** A body of concatenated frames (HTTP). Each frame is its own message: an identical repeat is a replay. */
  async ingestFrameBody(body: Buffer, deviceId?: string): Promise<FramesResult> {
    const requestId = this.nextId();
    const { frames, unreadable } = splitFrames(body);
    const units: IngestUnit[] = frames.map((bytes, index) => ({
      kind: 'frame',
      sourceId: `http:${requestId}:${index}`,
      bytes,
      ...(deviceId !== undefined ? { deviceId } : {}),
    }));
    if (unreadable) units.push({ kind: 'invalid', sourceId: `http:${requestId}:${unreadable.index}`, reason: unreadable.reason });
    const outcomes = await this.ingestUnits(units, 'http_frames');
    const rejected: FramesResult['rejected'] = [];
    outcomes.forEach((outcome, index) => {
      if (!outcome.ok) rejected.push({ index, reason: outcome.reason });
    });
    return { accepted: outcomes.length - rejected.length, rejected };
  }

  /**
   * Decodes and stores a batch. Returns one outcome per unit, in order. Throws only when the batch
   * could not be stored (then nothing of it was): the caller must not acknowledge it.
   */
  async ingestUnits(units: IngestUnit[], source: IngestSource): Promise<UnitOutcome[]> {
    const results = await this.decodeFrames(units);
    const { outcomes } = timed(this.options.metrics, 'sqlite', 'ingest_batch', () =>
      this.store.transaction(() => this.storeBatch(units, results, source)),
    );
    this.countOutcomes(outcomes, source);
    return outcomes;
  }

  private countOutcomes(outcomes: UnitOutcome[], source: IngestSource): void {
    const { metrics } = this.options;
    let accepted = 0;
    let records = 0;
    for (const o of outcomes) {
      if (o.ok) {
        accepted++;
        records += o.records;
      } else {
        metrics.framesRejected.inc({ reason: o.reason });
      }
    }
    metrics.telemetryIngested.inc({ source }, accepted);
    metrics.recordsIngested.inc({ source }, records);
  }

  /**
   * Writes a decoded batch; runs inside the caller's transaction. Rows whose source id was stored
   * before (a redelivery) are skipped and counted nowhere a second time. Device activity and usage
   * are written once per device per batch.
   */
  private storeBatch(units: IngestUnit[], results: Array<DecodeResult | undefined>, source: IngestSource) {
    const outcomes: UnitOutcome[] = new Array(units.length);
    const rows: BufferInsert[] = [];
    const rowUnits: number[] = [];
    const fresh: boolean[] = new Array(units.length).fill(false);
    const sensorOf: string[] = new Array(units.length);
    const frameOf: Array<DecodedFrame | undefined> = new Array(units.length);
    let records = 0;

    units.forEach((unit, i) => {
      if (unit.kind === 'invalid') {
        outcomes[i] = { ok: false, reason: unit.reason };
      } else if (unit.kind === 'reading') {
        const recs = readingRecords(unit.reading);
        rows.push({ sourceId: unit.sourceId, source, sensorId: unit.reading.sensor_id, ts: unit.reading.timestamp, labId: null, modelId: null, raw: Buffer.from(JSON.stringify(unit.reading.data)), records: recs });
        rowUnits.push(i);
        sensorOf[i] = unit.reading.sensor_id;
        outcomes[i] = { ok: true, records: recs.length };
      } else {
        const result = results[i]!;
        if (!result.ok) {
          outcomes[i] = result;
          return;
        }
        frameOf[i] = result;
        sensorOf[i] = result.device_id;
        outcomes[i] = { ok: true, records: result.records.length };
        if (result.header.payload_type === PAYLOAD_TELEMETRY) {
          rows.push({ sourceId: unit.sourceId, source, sensorId: result.device_id, ts: result.header.timestamp, labId: result.lab_id, modelId: result.header.model_id, raw: unit.bytes, records: result.records });
          rowUnits.push(i);
        } else {
          fresh[i] = this.store.deviceEvents.add({ sourceId: unit.sourceId, deviceId: result.device_id, payloadType: result.header.payload_type, ts: result.header.timestamp, body: result.event ?? {} });
        }
      }
      const outcome = outcomes[i]!;
      if (outcome.ok) records += outcome.records;
    });

    const bufferIds: Array<number | null> = new Array(units.length).fill(null);
    this.store.buffer.insertMany(rows).forEach((id, k) => {
      bufferIds[rowUnits[k]!] = id;
      fresh[rowUnits[k]!] = id !== null;
    });

    const now = this.now();
    const activity = new Map<string, DeviceActivity>();
    units.forEach((_unit, i) => {
      if (!fresh[i]) return;
      const frame = frameOf[i];
      const a = activity.get(sensorOf[i]!) ?? { deviceId: sensorOf[i]!, lastSeen: now, frames: 0, records: 0, labId: null, modelId: null };
      a.records += (outcomes[i] as { records: number }).records;
      if (frame) {
        a.frames++;
        a.labId = frame.lab_id ?? a.labId;
        a.modelId = frame.header.model_id;
      }
      activity.set(a.deviceId, a);
    });
    // Usage is billed to the sensor's owner, once per stored message.
    const usage = new Map<string, number>();
    for (const a of activity.values()) {
      this.store.devices.recordActivity(a);
      const owner = this.store.devices.ownerOf(a.deviceId);
      if (owner != null && a.records > 0) usage.set(owner, (usage.get(owner) ?? 0) + a.records);
    }
    for (const [userId, n] of usage) this.store.billing.addUsage(userId, n);
    return { outcomes, bufferIds, records };
  }

  private decodeOptions() {
    return { config: this.options.nanogridata, nowS: this.now() };
  }

  /** Runs every check but replay per frame, then the replay checks of the whole batch in one call. */
  private async decodeFrames(units: IngestUnit[]): Promise<Array<DecodeResult | undefined>> {
    const options = this.decodeOptions();
    const results: Array<DecodeResult | undefined> = new Array(units.length);
    const checks: ReplayCheck[] = [];
    const pending: Array<{ i: number; inspection: PassedInspection }> = [];
    units.forEach((unit, i) => {
      if (unit.kind !== 'frame') return;
      const ctx: FrameContext = {};
      if (unit.deviceId !== undefined) {
        ctx.deviceId = unit.deviceId;
        const secret = this.store.devices.secretOf(unit.deviceId);
        if (secret) ctx.deviceSecret = secret;
      }
      if (unit.messageId !== undefined) ctx.messageId = unit.messageId;
      const inspection = inspectFrame(unit.bytes, ctx, options);
      if (!inspection.ok) {
        results[i] = { ok: false, reason: inspection.reason };
        return;
      }
      checks.push(replayCheckOf(inspection, unit.messageId));
      pending.push({ i, inspection });
    });
    if (checks.length > 0) {
      const replays = await this.options.replay.check(checks);
      pending.forEach(({ i, inspection }, k) => {
        results[i] = resolveReplay(inspection, replays[k]!);
      });
    }
    return results;
  }
}
