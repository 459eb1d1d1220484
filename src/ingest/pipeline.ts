import { randomUUID } from 'node:crypto';
import type { NanogridataConfig } from '../config.js';
import { ForbiddenError } from '../errors.js';
import type { Principal } from '../http/auth.js';
import type { Metrics } from '../metrics.js';
import type { IngestSource } from '../operational/buffer.js';
import type { OperationalStore } from '../operational/store.js';
import { inspectFrame } from '../nanogridata/decoder.js';
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
export function readingRecords(reading: Reading): MeasurementRecord[] {
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

  constructor(private readonly options: PipelineOptions) {
    this.store = options.store;
    this.now = options.now ?? (() => Date.now() / 1000);
  }

  /**
   * HTTP JSON ingest. A user's readings claim unknown sensors for that user; a sensor owned by
   * someone else fails the whole call (403) and nothing is stored.
   */
  ingestReadings(readings: Reading[], principal: Principal, source: IngestSource = 'http'): { ids: number[]; records: number } {
    const sourceIds = readings.map(() => `${source}:${randomUUID()}`);
    const { ids, records } = this.store.transaction(() => {
      if (principal.kind === 'user') {
        for (const sensorId of new Set(readings.map((r) => r.sensor_id))) {
          if (!this.store.devices.claimForUser(sensorId, principal.userId)) {
            throw new ForbiddenError(`sensor ${sensorId} belongs to another user`);
          }
        }
      }
      const ids: number[] = [];
      let records = 0;
      readings.forEach((reading, i) => {
        const stored = this.storeReading(sourceIds[i]!, source, reading);
        ids.push(stored.id!);
        records += stored.records;
      });
      return { ids, records };
    });
    this.options.metrics.telemetryIngested.inc({ source }, readings.length);
    this.options.metrics.recordsIngested.inc({ source }, records);
    return { ids, records };
  }

  /** A body of concatenated frames (HTTP). Each frame is its own message: an identical repeat is a replay. */
  async ingestFrameBody(body: Buffer, deviceId?: string): Promise<FramesResult> {
    const requestId = randomUUID();
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
    const outcomes: UnitOutcome[] = new Array(units.length);
    let accepted = 0;
    let records = 0;
    this.store.transaction(() => {
      // Usage is billed to the sensor's owner, once per stored message (a redelivery is not billed again).
      const usage = new Map<number, number>();
      const countUsage = (sensorId: string, n: number) => {
        const owner = this.store.devices.ownerOf(sensorId);
        if (owner != null && n > 0) usage.set(owner, (usage.get(owner) ?? 0) + n);
      };
      units.forEach((unit, i) => {
        let outcome: UnitOutcome;
        if (unit.kind === 'invalid') {
          outcome = { ok: false, reason: unit.reason };
        } else if (unit.kind === 'reading') {
          const stored = this.storeReading(unit.sourceId, source, unit.reading);
          outcome = { ok: true, records: stored.records };
          if (stored.id !== null) countUsage(unit.reading.sensor_id, stored.records);
        } else {
          const result = results[i]!;
          if (result.ok) {
            const fresh = this.storeFrame(unit, source, result);
            outcome = { ok: true, records: result.records.length };
            if (fresh) countUsage(result.device_id, result.records.length);
          } else {
            outcome = result;
          }
        }
        if (outcome.ok) {
          accepted++;
          records += outcome.records;
        }
        outcomes[i] = outcome;
      });
      for (const [userId, n] of usage) this.store.billing.addUsage(userId, n);
    });
    const { metrics } = this.options;
    metrics.telemetryIngested.inc({ source }, accepted);
    metrics.recordsIngested.inc({ source }, records);
    for (const o of outcomes) if (!o.ok) metrics.framesRejected.inc({ reason: o.reason });
    return outcomes;
  }

  private decodeOptions() {
    return { config: this.options.nanogridata, nowS: this.now() };
  }

  /** Runs every check but replay per frame, then the replay checks of the whole batch in one call. */
  private async decodeFrames(units: IngestUnit[]): Promise<Array<DecodeResult | undefined>> {
    const options = this.decodeOptions();
    const results: Array<DecodeResult | undefined> = new Array(units.length);
    const checks: ReplayCheck[] = [];
    const pending: Array<{ i: number; result: DecodeResult }> = [];
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
      checks.push({
        key: inspection.replayKey,
        ttlS: inspection.replayTtlS,
        remember: inspection.result.ok,
        ...(unit.messageId !== undefined ? { messageId: unit.messageId } : {}),
      });
      pending.push({ i, result: inspection.result });
    });
    if (checks.length > 0) {
      const replays = await this.options.replay.check(checks);
      pending.forEach(({ i, result }, k) => {
        results[i] = replays[k] ? { ok: false, reason: 'replay' } : result;
      });
    }
    return results;
  }

  /** Stores a reading; id is null when this source id was stored before (a redelivery). */
  private storeReading(sourceId: string, source: IngestSource, reading: Reading): { id: number | null; records: number } {
    const records = readingRecords(reading);
    const { buffer, devices } = this.store;
    const id = buffer.insert({
      sourceId,
      source,
      sensorId: reading.sensor_id,
      ts: reading.timestamp,
      labId: null,
      modelId: null,
      raw: Buffer.from(JSON.stringify(reading.data)),
      records,
    });
    if (id !== null) {
      devices.recordActivity({ deviceId: reading.sensor_id, lastSeen: this.now(), frames: 0, records: records.length, labId: null, modelId: null });
    }
    return { id, records: records.length };
  }

  /** Stores a decoded frame; false when this source id was stored before (a redelivery). */
  private storeFrame(unit: Extract<IngestUnit, { kind: 'frame' }>, source: IngestSource, frame: DecodedFrame): boolean {
    const { header } = frame;
    let fresh: boolean;
    if (header.payload_type === PAYLOAD_TELEMETRY) {
      fresh = this.store.buffer.insert({
        sourceId: unit.sourceId,
        source,
        sensorId: frame.device_id,
        ts: header.timestamp,
        labId: frame.lab_id,
        modelId: header.model_id,
        raw: unit.bytes,
        records: frame.records,
      }) !== null;
    } else {
      fresh = this.store.deviceEvents.add({
        sourceId: unit.sourceId,
        deviceId: frame.device_id,
        payloadType: header.payload_type,
        ts: header.timestamp,
        body: frame.event ?? {},
      });
    }
    if (!fresh) return false;
    this.store.devices.recordActivity({
      deviceId: frame.device_id,
      lastSeen: this.now(),
      frames: 1,
      records: frame.records.length,
      labId: frame.lab_id,
      modelId: header.model_id,
    });
    return true;
  }
}
