import type { IngestSource } from '../operational/buffer.js';
import { readRecordBatch, type RecordColumns } from '../operational/record-batch.js';
import { FINGERPRINT_BYTES } from '../nanogridata/types.js';
import type { Pg, PgClient } from './connect.js';

/** The frames a segment's records came in, in record order (as the decoder writes them). */
export interface PgFrames {
  /** FINGERPRINT_BYTES per frame. */
  fingerprints: Uint8Array;
  /** Header times, Unix seconds. */
  timestamps: Uint32Array;
  /** Per frame, a 32-bit hash of the stream entry that brought it (0 over HTTP). */
  tags: Int32Array;
  /** How many of the segment's records each frame holds. */
  recordCounts: Uint16Array;
}

/** Readings to store: packed records (operational/record-batch.ts) of one source, and the frames they came in. */
export interface PgSegment {
  source: IngestSource;
  records: Uint8Array;
  /** Absent for JSON readings: they have no fingerprint and are always stored. */
  frames?: PgFrames;
}

/** What became of a frame. */
export const STORED = 0;
/** Its fingerprint was there already, from another stream entry or another request. */
export const REPLAY = 1;
/** Its fingerprint was there already, from this same stream entry: a redelivery, stored before. */
export const REDELIVERY = 2;

/** What names a series: sensor, metric, unit, lab, model, source. */
type SeriesKey = [string, string, string, string | null, number | null, string];

/**
 * The series ids this instance knows, by (sensor, metric, unit, lab, model, source). Series are
 * created by whichever instance first sees them (an upsert: two instances creating one series at
 * once get the same id) and never change, so a known id is never stale.
 */
export class PgSeries {
  private readonly ids = new Map<string, number>();

  constructor(private readonly pool: Pg) {}

  /** Each record's series id, creating the series this instance has not seen. */
  async resolve(c: RecordColumns, source: IngestSource): Promise<Int32Array> {
    // Records name their strings by index into the batch's table: the distinct index tuples are few.
    const local = new Map<string, string>();
    const keys = new Array<string>(c.length);
    const missing = new Map<string, SeriesKey>();
    for (let i = 0; i < c.length; i++) {
      const at = `${c.sensor[i]},${c.metric[i]},${c.unit[i]},${c.lab[i]},${c.model[i]}`;
      let key = local.get(at);
      if (key === undefined) {
        const row: SeriesKey = [c.strings[c.sensor[i]!]!, c.strings[c.metric[i]!]!, c.strings[c.unit[i]!]!, c.lab[i]! < 0 ? null : c.strings[c.lab[i]!]!, c.model[i]! < 0 ? null : c.model[i]!, source];
        key = JSON.stringify(row);
        local.set(at, key);
        if (!this.ids.has(key)) missing.set(key, row);
      }
      keys[i] = key;
    }
    if (missing.size > 0) await this.create([...missing.values()]);
    const out = new Int32Array(c.length);
    for (let i = 0; i < c.length; i++) out[i] = this.ids.get(keys[i]!)!;
    return out;
  }

  private async create(rows: SeriesKey[]): Promise<void> {
    const column = (k: number) => rows.map((v) => v[k]);
    // DO UPDATE (a no-op) rather than DO NOTHING: RETURNING then gives the id of a series that exists.
    // In key order, so that two instances creating overlapping series lock them in one order (no deadlock).
    const { rows: made } = await this.pool.query<{ series: number; sensor_id: string; metric: string; unit: string; lab_id: string | null; model_id: number | null; source: string }>(
      `INSERT INTO series(sensor_id, metric, unit, lab_id, model_id, source)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::smallint[], $6::text[]) ORDER BY 1, 2, 3, 4, 5, 6
       ON CONFLICT ON CONSTRAINT series_key DO UPDATE SET sensor_id = excluded.sensor_id
       RETURNING series, sensor_id, metric, unit, lab_id, model_id, source`,
      [column(0), column(1), column(2), column(3), column(4), column(5)],
    );
    for (const r of made) this.ids.set(JSON.stringify([r.sensor_id, r.metric, r.unit, r.lab_id, r.model_id, r.source]), r.series);
  }
}

const fingerprintText = (view: DataView, frame: number): string => view.getBigInt64(frame * FINGERPRINT_BYTES, true).toString();

/** Segments made ready to store: columns for the statement, series resolved, duplicates within the batch decided. */
export interface PreparedReadings {
  fp: string[];
  fts: number[];
  ftag: number[];
  rfp: Array<string | null>;
  rseries: number[];
  rts: number[];
  rvalue: number[];
  /** Per segment, per frame. */
  verdicts: Uint8Array[];
  frames: Array<{ verdicts: Uint8Array; frame: number; fp: string; tag: number }>;
}

/**
 * Resolves the segments' series (creating new ones, committed on their own) and lays their readings
 * out by column. Runs before the caller's transaction takes its connection, so that a transaction
 * never waits for a second connection of the same pool.
 */
export async function prepareReadings(series: PgSeries, segments: readonly PgSegment[]): Promise<PreparedReadings> {
  const out: PreparedReadings = { fp: [], fts: [], ftag: [], rfp: [], rseries: [], rts: [], rvalue: [], verdicts: [], frames: [] };
  const firstOf = new Map<string, number>();
  for (const segment of segments) {
    const c = readRecordBatch(segment.records);
    const ids = await series.resolve(c, segment.source);
    const push = (fp: string | null, i: number) => {
      out.rfp.push(fp);
      out.rseries.push(ids[i]!);
      out.rts.push(c.ts[i]!);
      out.rvalue.push(c.value[i]!);
    };
    const frames = segment.frames;
    if (!frames) {
      out.verdicts.push(new Uint8Array(0));
      for (let i = 0; i < c.length; i++) push(null, i);
      continue;
    }
    const v = new Uint8Array(frames.timestamps.length);
    out.verdicts.push(v);
    const view = new DataView(frames.fingerprints.buffer, frames.fingerprints.byteOffset, frames.fingerprints.byteLength);
    let record = 0;
    for (let f = 0; f < frames.timestamps.length; f++) {
      const key = fingerprintText(view, f);
      const n = frames.recordCounts[f]!;
      const tag = frames.tags[f]!;
      const firstTag = firstOf.get(key);
      if (firstTag !== undefined) {
        // The same frame twice in one batch: the first is decided by the database, this one is not stored.
        v[f] = tag !== 0 && firstTag === tag ? REDELIVERY : REPLAY;
      } else {
        firstOf.set(key, tag);
        out.fp.push(key);
        out.fts.push(frames.timestamps[f]!);
        out.ftag.push(tag);
        out.frames.push({ verdicts: v, frame: f, fp: key, tag });
        for (let i = record; i < record + n; i++) push(key, i);
      }
      record += n;
    }
  }
  return out;
}

/** The prepared readings without the frames whose fingerprints are in `drop` (and their readings). */
export function withoutFrames(p: PreparedReadings, drop: ReadonlySet<string>): PreparedReadings {
  if (drop.size === 0) return p;
  const keepFrame = p.fp.map((fp) => !drop.has(fp));
  const keepReading = p.rfp.map((fp) => fp === null || !drop.has(fp));
  const pick = <T>(column: T[], keep: boolean[]) => column.filter((_, i) => keep[i]);
  return {
    fp: pick(p.fp, keepFrame),
    fts: pick(p.fts, keepFrame),
    ftag: pick(p.ftag, keepFrame),
    rfp: pick(p.rfp, keepReading),
    rseries: pick(p.rseries, keepReading),
    rts: pick(p.rts, keepReading),
    rvalue: pick(p.rvalue, keepReading),
    verdicts: p.verdicts,
    frames: p.frames.filter((f) => !drop.has(f.fp)),
  };
}

/**
 * Stores prepared readings in the caller's transaction, each frame's only if its fingerprint is
 * new: the fingerprints are inserted first (in key order, so that concurrent batches lock them in
 * one order and cannot deadlock) and only the readings of the frames whose insert went in follow,
 * in the same statement. A fingerprint another instance is inserting waits for that transaction:
 * its commit makes this frame a replay, its rollback lets this one in. Returns each segment's
 * verdict per frame (STORED, REPLAY, REDELIVERY); readings without frames are stored.
 */
export async function storeReadings(client: PgClient, p: PreparedReadings): Promise<Uint8Array[]> {
  const { rows } = await client.query<{ fp: string }>(
    `WITH fresh AS (
       INSERT INTO replay_fingerprints(fp, ts, tag)
       SELECT * FROM unnest($1::bigint[], $2::integer[], $3::integer[]) AS f(fp, ts, tag) ORDER BY fp
       ON CONFLICT (fp) DO NOTHING
       RETURNING fp),
     stored AS (
       INSERT INTO readings(series, ts, value)
       SELECT r.series, to_timestamp(r.ts), r.value
       FROM unnest($4::bigint[], $5::integer[], $6::double precision[], $7::double precision[]) AS r(fp, series, ts, value)
       WHERE r.fp IS NULL OR r.fp IN (SELECT fp FROM fresh))
     SELECT fp::text FROM fresh`,
    [p.fp, p.fts, p.ftag, p.rfp, p.rseries, p.rts, p.rvalue],
  );
  const verdicts = p.verdicts.map((v) => v.slice());
  if (rows.length < p.fp.length) {
    const fresh = new Set(rows.map((r) => r.fp));
    const known = p.frames.filter((f) => !fresh.has(f.fp));
    const { rows: stored } = await client.query<{ fp: string; tag: number }>('SELECT fp::text, tag FROM replay_fingerprints WHERE fp = ANY($1::bigint[])', [
      known.map((f) => f.fp),
    ]);
    const tagOf = new Map(stored.map((r) => [r.fp, r.tag]));
    for (const f of known) verdicts[p.verdicts.indexOf(f.verdicts)]![f.frame] = f.tag !== 0 && tagOf.get(f.fp) === f.tag ? REDELIVERY : REPLAY;
  }
  return verdicts;
}
