import { execFile } from 'node:child_process';
import { closeSync, constants, openSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import type { DuckDBType, DuckDBValue } from '@duckdb/node-api';
import { AppError, QueryTimeoutError } from '../errors.js';
import { Params, matching } from './filters.js';
import type { ExportFile, ExportFormat, ExportRequest } from './types.js';

/** ISO-8601 UTC with microseconds, for the text formats. */
const ISO_TS = `strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS ts`;
const COLUMNS = 'sensor_id, metric, value, unit, lab_id, model_id, source';
/** JSON has no inf or NaN (files from before the ingest bound may hold them): those become null. */
const JSON_COLUMNS = COLUMNS.replace('value', 'CASE WHEN isfinite(value) THEN value END AS value');

/**
 * CSV opened in a spreadsheet runs a cell starting with = + - @ tab or CR as a formula: such text
 * cells get a leading ' (OWASP's CSV injection advice). Numbers are left alone (-1.5 is data).
 */
const guard = (column: string) => `CASE WHEN left(${column}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) THEN '''' || ${column} ELSE ${column} END AS ${column}`;
const CSV_COLUMNS = `${guard('sensor_id')}, ${guard('metric')}, value, ${guard('unit')}, ${guard('lab_id')}, model_id, ${guard('source')}`;

/**
 * Per format: the COPY options, the column list and the download's content type.
 * json is one JSON array (what `format=json` suggests to a client); ndjson is one object per
 * line, for exports too large to parse in one piece. Parquet keeps ts as a UTC timestamp.
 */
const FORMATS: Record<ExportFormat, { copy: string; select: string; contentType: string; extension: string }> = {
  parquet: {
    copy: 'FORMAT parquet, COMPRESSION zstd',
    select: `timezone('UTC', ts) AS ts, ${COLUMNS}`,
    contentType: 'application/vnd.apache.parquet',
    extension: 'parquet',
  },
  csv: { copy: 'FORMAT csv, HEADER true', select: `${ISO_TS}, ${CSV_COLUMNS}`, contentType: 'text/csv; charset=utf-8', extension: 'csv' },
  json: { copy: 'FORMAT json, ARRAY true', select: `${ISO_TS}, ${JSON_COLUMNS}`, contentType: 'application/json', extension: 'json' },
  ndjson: { copy: 'FORMAT json', select: `${ISO_TS}, ${JSON_COLUMNS}`, contentType: 'application/x-ndjson', extension: 'ndjson' },
};

/** The content type of each format, for the OpenAPI document. */
export const EXPORT_CONTENT_TYPES = Object.fromEntries(
  Object.entries(FORMATS).map(([name, f]) => [name, f.contentType]),
) as Record<ExportFormat, string>;

/** A COPY statement writing the matching measurements to `path` (always a pipe of ours, never a client's path). */
export function exportStatement(request: ExportRequest, path: string): { sql: string; values: DuckDBValue[]; types: DuckDBType[] } {
  // The request schema allows only the formats above.
  const format = FORMATS[request.format];
  const p = new Params();
  const source = matching(p, request);
  // USE_TMP_FILE false: DuckDB would otherwise write beside the pipe and rename.
  const sql = `COPY (SELECT ${format.select} FROM ${source} AS m) TO '${path.replaceAll("'", "''")}' (${format.copy}, USE_TMP_FILE false)`;
  return { sql, values: p.values, types: p.types };
}

/** What runs the COPY: in this thread (the engine) or in the analytics worker (the client). */
export interface ExportRunner {
  /** Runs the COPY to `path`; settles when DuckDB has written everything (or failed). */
  run(path: string): Promise<void>;
  /** Interrupts the COPY (past the time limit, or the client went away). */
  cancel(): void;
}

const execFileAsync = promisify(execFile);

/** Exports at once by default (EXPORTS_MAX): each holds a DuckDB connection of its own for as long as its client reads. */
export const MAX_EXPORTS = 2;

/** How long an export may hold its slot, and how slowly its client may read. */
export interface ExportLimits {
  /** Past this, the export is cut off. */
  maxDurationMs?: number;
  /** A client that took fewer bytes per second than this over a window, while the export was waiting for it, is cut off; 0: none. */
  minBytesPerS?: number;
  /** The window of minBytesPerS. Default 30 s. */
  rateWindowMs?: number;
}

/** Why an export was cut off; the client sees a cut-off download, the log this. */
export class ExportCutOffError extends AppError {
  constructor(message: string) {
    super('export_cut_off', 503, message);
  }
}

/**
 * Streams an export without a file: DuckDB's COPY writes into a named pipe (mkfifo) in a private
 * temp directory, and the download reads the other end as a socket (non-blocking, on the event
 * loop rather than in the libuv thread pool). Nothing is stored, so temp disk stays at zero and
 * memory at the pipe and stream buffers; DuckDB waits while the client is slow.
 *
 * Resolves once the first bytes are there (so an empty or failing export is still an HTTP error);
 * past `timeoutMs` without them the COPY is interrupted and this rejects with QueryTimeoutError.
 * A failure after the first byte destroys the stream (the client sees a cut-off download); a
 * client that goes away interrupts the COPY, which frees its connection.
 */
export async function streamExport(request: ExportRequest, runner: ExportRunner, timeoutMs: number, limits: ExportLimits = {}): Promise<ExportFile> {
  const format = FORMATS[request.format];
  const dir = await mkdtemp(join(tmpdir(), 'ocean-export-'));
  const path = join(dir, `export.${format.extension}`);
  let hold: number | undefined;
  let reader: Socket | undefined;
  try {
    await execFileAsync('mkfifo', ['-m', '600', path]);
    // Non-blocking opens never wait. `hold` is a writer of ours, so the reader sees no end of file
    // before DuckDB has opened its side; it is closed once the COPY settled.
    reader = new Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
    hold = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    reader?.destroy();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const out = new PassThrough();
  let settled = false;
  /** Once the caller has the stream, failures reach it as a stream error; before, as a rejection. */
  let handedOver = false;
  const copied = runner.run(path).finally(() => {
    settled = true;
    // Before the reader can see the end: the directory is gone once the download ends.
    rmSync(dir, { recursive: true, force: true });
    if (hold !== undefined) closeSync(hold);
    hold = undefined;
  });
  copied.catch((err: unknown) => (handedOver ? out.destroy(err instanceof Error ? err : new Error(String(err))) : out.destroy()));
  reader.on('error', (err) => (handedOver ? out.destroy(err) : out.destroy()));
  out.on('close', () => {
    reader!.destroy();
    if (!settled) runner.cancel();
  });
  reader.pipe(out);

  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((resolve) => reader!.once('data', () => resolve())),
      // A COPY that fails before its first byte rejects here (one that succeeds always wrote a
      // header or brackets first).
      copied.then(() => undefined),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          runner.cancel();
          reject(new QueryTimeoutError(timeoutMs));
        }, timeoutMs);
      }),
    ]);
  } catch (err) {
    out.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  handedOver = true;
  const closed = new Promise<void>((resolve) => out.once('close', resolve));
  holdBounded(out, reader, () => settled, limits);
  const finished = Promise.all([copied.catch(() => undefined), closed]).then(() => undefined);
  return { stream: out, contentType: format.contentType, filename: `ocean-measurements-${stamp(new Date())}.${format.extension}`, finished };
}

/**
 * Cuts an export off (destroying its stream, which interrupts the COPY and frees its slot) once it
 * has run `maxDurationMs`, or when fewer than `minBytesPerS` entered its stream over a window while
 * the stream's buffer was full (the client, not DuckDB, was what it waited for).
 */
function holdBounded(out: PassThrough, reader: Socket, copyEnded: () => boolean, limits: ExportLimits): void {
  const timers: NodeJS.Timeout[] = [];
  if (limits.maxDurationMs !== undefined) {
    const ms = limits.maxDurationMs;
    timers.push(setTimeout(() => out.destroy(new ExportCutOffError(`the export ran longer than the ${ms} ms limit and was cut off`)), ms));
  }
  const minRate = limits.minBytesPerS ?? 0;
  if (minRate > 0) {
    const windowMs = limits.rateWindowMs ?? 30_000;
    let taken = 0;
    let takenBefore = 0;
    // Counted where the pipe's bytes enter the stream (not with a listener on `out`, which would
    // consume it): backpressure stops them there as soon as the client stops taking them.
    reader.on('data', (chunk: Buffer) => (taken += chunk.length));
    timers.push(
      setInterval(() => {
        const rate = ((taken - takenBefore) * 1000) / windowMs;
        takenBefore = taken;
        const waitingForClient = !copyEnded() && (out.writableNeedDrain || out.readableLength >= out.readableHighWaterMark);
        if (rate < minRate && waitingForClient) out.destroy(new ExportCutOffError(`the client read the export slower than ${minRate} bytes/s and it was cut off`));
      }, windowMs),
    );
  }
  out.once('close', () => timers.forEach(clearTimeout));
}

/** 2024-05-01T12:00:00.000Z → 20240501T120000Z */
const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
