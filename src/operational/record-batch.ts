/**
 * The one record form from decode to append: records packed by column, one typed array per
 * numeric column and a table of the distinct strings (sensor ids, metrics, units, labs) that the
 * string columns index. The decoder writes it, it moves between threads without a copy, a JSON
 * reading's work-queue row keeps it as a BLOB, and the analytics commit resolves each record's
 * series from it without building an object per record.
 *
 * Layout (host byte order, little-endian on every platform Node supports): a 16-byte header
 * (magic, record count, string count, string bytes), then ts f64[n], value f64[n], sensor u32[n],
 * metric u32[n], unit u32[n], lab i32[n] (-1 = none), model i16[n] (-1 = none), padding to 4,
 * string end offsets u32[m], string bytes (UTF-8).
 */
import type { MeasurementRecord } from '../nanogridata/types.js';

const MAGIC = 0x3142524f; // 'ORB1'
const HEADER = 16;

export interface RecordColumns {
  length: number;
  /** Unix seconds. */
  ts: Float64Array;
  value: Float64Array;
  sensor: Uint32Array;
  metric: Uint32Array;
  unit: Uint32Array;
  /** Index into strings, or -1. */
  lab: Int32Array;
  /** Model id, or -1. */
  model: Int16Array;
  strings: string[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Collects records and packs them; strings are stored once per batch. */
export class RecordBatchBuilder {
  private capacity: number;
  private n = 0;
  private ts: Float64Array;
  private value: Float64Array;
  private sensor: Uint32Array;
  private metric: Uint32Array;
  private unit: Uint32Array;
  private lab: Int32Array;
  private model: Int16Array;
  private readonly stringIndex = new Map<string, number>();
  private readonly strings: string[] = [];

  constructor(capacity = 64) {
    this.capacity = Math.max(1, capacity);
    this.ts = new Float64Array(this.capacity);
    this.value = new Float64Array(this.capacity);
    this.sensor = new Uint32Array(this.capacity);
    this.metric = new Uint32Array(this.capacity);
    this.unit = new Uint32Array(this.capacity);
    this.lab = new Int32Array(this.capacity);
    this.model = new Int16Array(this.capacity);
  }

  get length(): number {
    return this.n;
  }

  add(record: MeasurementRecord, labId: string | null, modelId: number | null): void {
    if (this.n === this.capacity) this.grow();
    const i = this.n++;
    this.ts[i] = record.ts;
    this.value[i] = record.value;
    this.sensor[i] = this.intern(record.sensor_id);
    this.metric[i] = this.intern(record.metric);
    this.unit[i] = this.intern(record.unit);
    this.lab[i] = labId === null ? -1 : this.intern(labId);
    this.model[i] = modelId === null ? -1 : modelId;
  }

  /** The packed batch. */
  toBuffer(): Buffer {
    const n = this.n;
    const bytes = this.strings.map((s) => encoder.encode(s));
    const stringBytes = bytes.reduce((total, b) => total + b.length, 0);
    const columnsEnd = HEADER + n * (8 + 8 + 4 + 4 + 4 + 4 + 2);
    const offsetsAt = align4(columnsEnd);
    const size = offsetsAt + 4 * bytes.length + stringBytes;
    const out = new ArrayBuffer(size);
    new Uint32Array(out, 0, 4).set([MAGIC, n, bytes.length, stringBytes]);
    let at = HEADER;
    at = put(out, at, this.ts.subarray(0, n));
    at = put(out, at, this.value.subarray(0, n));
    at = put(out, at, this.sensor.subarray(0, n));
    at = put(out, at, this.metric.subarray(0, n));
    at = put(out, at, this.unit.subarray(0, n));
    at = put(out, at, this.lab.subarray(0, n));
    put(out, at, this.model.subarray(0, n));
    const ends = new Uint32Array(out, offsetsAt, bytes.length);
    const text = new Uint8Array(out, offsetsAt + 4 * bytes.length);
    let end = 0;
    bytes.forEach((b, k) => {
      text.set(b, end);
      end += b.length;
      ends[k] = end;
    });
    return Buffer.from(out);
  }

  private intern(s: string): number {
    let k = this.stringIndex.get(s);
    if (k === undefined) {
      k = this.strings.length;
      this.strings.push(s);
      this.stringIndex.set(s, k);
    }
    return k;
  }

  private grow(): void {
    this.capacity *= 2;
    const grown = <T extends Float64Array | Uint32Array | Int32Array | Int16Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(this.capacity);
      b.set(a);
      return b;
    };
    this.ts = grown(this.ts);
    this.value = grown(this.value);
    this.sensor = grown(this.sensor);
    this.metric = grown(this.metric);
    this.unit = grown(this.unit);
    this.lab = grown(this.lab);
    this.model = grown(this.model);
  }
}

const align4 = (n: number) => (n + 3) & ~3;

function put(out: ArrayBuffer, at: number, column: Float64Array | Uint32Array | Int32Array | Int16Array): number {
  new Uint8Array(out, at, column.byteLength).set(new Uint8Array(column.buffer, column.byteOffset, column.byteLength));
  return at + column.byteLength;
}

/** The columns of a packed batch: views over it when it is 8-byte aligned, else over an aligned copy. */
export function readRecordBatch(blob: Uint8Array): RecordColumns {
  const aligned = blob.byteOffset % 8 === 0;
  const buf = aligned ? blob.buffer : new Uint8Array(blob).buffer;
  const base = aligned ? blob.byteOffset : 0;
  const [magic, n, m, stringBytes] = new Uint32Array(buf, base, 4) as unknown as [number, number, number, number];
  if (magic !== MAGIC) throw new Error('not a packed record batch');
  let at = base + HEADER;
  const take = <T>(make: (at: number) => T, bytes: number): T => {
    const view = make(at);
    at += bytes;
    return view;
  };
  const ts = take((a) => new Float64Array(buf, a, n), 8 * n);
  const value = take((a) => new Float64Array(buf, a, n), 8 * n);
  const sensor = take((a) => new Uint32Array(buf, a, n), 4 * n);
  const metric = take((a) => new Uint32Array(buf, a, n), 4 * n);
  const unit = take((a) => new Uint32Array(buf, a, n), 4 * n);
  const lab = take((a) => new Int32Array(buf, a, n), 4 * n);
  const model = take((a) => new Int16Array(buf, a, n), 2 * n);
  at = base + align4(at - base);
  const ends = new Uint32Array(buf, at, m);
  const text = new Uint8Array(buf, at + 4 * m, stringBytes);
  const strings: string[] = new Array(m);
  let start = 0;
  for (let k = 0; k < m; k++) {
    strings[k] = decoder.decode(text.subarray(start, ends[k]));
    start = ends[k]!;
  }
  return { length: n, ts, value, sensor, metric, unit, lab, model, strings };
}

/** How many records a packed batch holds, from its header, without reading it. */
export function recordCountOf(blob: Uint8Array): number {
  return blob.byteLength >= HEADER ? new DataView(blob.buffer, blob.byteOffset, HEADER).getUint32(4, true) : 0;
}

/** Record `i` of a batch as an object (tests, the work queue, quarantine). */
export function recordAt(c: RecordColumns, i: number): MeasurementRecord & { lab_id: string | null; model_id: number | null } {
  return {
    sensor_id: c.strings[c.sensor[i]!]!,
    metric: c.strings[c.metric[i]!]!,
    unit: c.strings[c.unit[i]!]!,
    ts: c.ts[i]!,
    value: c.value[i]!,
    lab_id: c.lab[i]! < 0 ? null : c.strings[c.lab[i]!]!,
    model_id: c.model[i]! < 0 ? null : c.model[i]!,
  };
}

/** A batch of the records of `c` whose index `keep` accepts. */
export function filterRecords(c: RecordColumns, keep: (i: number) => boolean): Buffer {
  const out = new RecordBatchBuilder(c.length);
  for (let i = 0; i < c.length; i++) {
    if (!keep(i)) continue;
    const r = recordAt(c, i);
    out.add(r, r.lab_id, r.model_id);
  }
  return out.toBuffer();
}
