import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SqlRunner } from './engine.js';
import { Params, matching } from './filters.js';
import type { ExportFile, ExportFormat, ExportRequest } from './types.js';

/** ISO-8601 UTC with microseconds, for the text formats. */
const ISO_TS = `strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS ts`;
const COLUMNS = 'sensor_id, metric, value, unit, lab_id, model_id, source';
/** JSON has no inf or NaN (files from before the ingest bound may hold them): those become null. */
const JSON_COLUMNS = COLUMNS.replace('value', 'CASE WHEN isfinite(value) THEN value END AS value');
/**
 * A spreadsheet runs a CSV cell that starts with = + - @ (or tab, CR) as a formula: sensor ids,
 * metric names and units come from clients, so such a text cell gets a leading ' (OWASP's advice).
 * Numbers are left alone (a negative value is not a formula).
 */
const csvText = (column: string) => `CASE WHEN regexp_matches(${column}, '^[=+\\-@\\t\\r]') THEN '''' || ${column} ELSE ${column} END AS ${column}`;
const CSV_COLUMNS = [csvText('sensor_id'), csvText('metric'), 'value', csvText('unit'), csvText('lab_id'), 'model_id', csvText('source')].join(', ');

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

/** An export written to a private temp file, not yet opened. */
export interface ExportedFile {
  /** The file, in a directory of its own (mkdtemp) that the reader removes. */
  path: string;
  dir: string;
  contentType: string;
  filename: string;
}

/**
 * Writes the matching measurements with DuckDB's COPY (parameterised SELECT) into a private
 * temp directory. The path is always ours (mkdtemp); a client never names a server path.
 */
export async function exportToFile(db: SqlRunner, request: ExportRequest): Promise<ExportedFile> {
  // The request schema allows only the formats above.
  const format = FORMATS[request.format];
  const p = new Params();
  const source = matching(p, request);
  const dir = await mkdtemp(join(tmpdir(), 'ocean-export-'));
  try {
    const path = join(dir, `export.${format.extension}`);
    await db.exec('export', `COPY (SELECT ${format.select} FROM ${source} AS m) TO '${path.replaceAll("'", "''")}' (${format.copy})`, p.values, p.types);
    return { path, dir, contentType: format.contentType, filename: `ocean-measurements-${stamp(new Date())}.${format.extension}` };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Opens an exported file and removes it at once: the open descriptor keeps the bytes readable
 * until the stream closes, and nothing is left behind whatever the client does.
 */
export async function openExport(file: ExportedFile): Promise<ExportFile> {
  try {
    const handle = await open(file.path, 'r');
    try {
      const { size } = await handle.stat();
      return { stream: handle.createReadStream(), contentType: file.contentType, filename: file.filename, size };
    } catch (err) {
      await handle.close();
      throw err;
    }
  } finally {
    await rm(file.dir, { recursive: true, force: true });
  }
}

/** An export as a download. */
export async function exportMeasurements(db: SqlRunner, request: ExportRequest): Promise<ExportFile> {
  return openExport(await exportToFile(db, request));
}

/** 2024-05-01T12:00:00.000Z → 20240501T120000Z */
const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
