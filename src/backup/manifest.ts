import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

/** The manifest's name in a backup directory; written last, so a directory without it is no backup. */
export const MANIFEST = 'manifest.json';
/** The data files of a backup, named as in DATA_DIR. */
export const SQLITE_FILE = 'ocean.db';
export const DUCKDB_FILE = 'analytics.duckdb';

const count = z.number().int().nonnegative();

/** What a backup holds and how to check it (README, "Operations"). */
export const manifestSchema = z.object({
  format: z.literal('ocean-core-backup'),
  format_version: z.literal(1),
  created_at: z.string(),
  /** `online`: taken by the running service; `offline`: from the files of a stopped one. */
  mode: z.enum(['online', 'offline']),
  versions: z.object({ app: z.string(), schema: count, sqlite: z.string(), duckdb: z.string() }),
  counts: z.object({
    users: count,
    sessions: count,
    ledger: count,
    devices: count,
    /** Rows of the SQLite buffer and the messages (frames, readings) they hold. */
    buffer_rows: count,
    buffer_messages: count,
    measurements: count,
  }),
  /**
   * Where the two stores agree: DuckDB holds every buffer row up to duckdb_high_water (its
   * queue_through), the buffer every row after it; and DuckDB's last ingest batch and stream
   * position (absent in manifests written before layout 2).
   */
  ingest: z.object({
    buffer_last_id: count,
    /** The earlier release's flusher position (manifests written before layout 2 only). */
    buffer_flushed_through: count.optional(),
    /** SQLite's count of the ingest batches whose side effects it applied (layout 2 on). */
    effects_applied_through: count.optional(),
    duckdb_high_water: count,
    duckdb_batch: count.optional(),
    stream_position: z.string().nullable().optional(),
  }),
  /** Highest ids given out, which new ones continue above. */
  last_ids: z.object({ ledger: count, buffer: count }),
  files: z.array(z.object({ name: z.enum([SQLITE_FILE, DUCKDB_FILE]), bytes: count, sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
  duration_ms: count,
});
export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestFile = Manifest['files'][number];

/** Size and SHA-256 of a file, read as a stream (never whole into memory). */
export async function describeFile(dir: string, name: ManifestFile['name']): Promise<ManifestFile> {
  const path = join(dir, name);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return { name, bytes: (await stat(path)).size, sha256: hash.digest('hex') };
}

/** fsync of a file or directory. */
export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes the manifest under a temporary name, syncs it, renames it into place and syncs the directory. */
export async function writeManifest(dir: string, manifest: Manifest): Promise<void> {
  const temp = join(dir, `${MANIFEST}.partial`);
  await writeFile(temp, `${JSON.stringify(manifest, null, 2)}\n`, { flag: 'wx' });
  await syncPath(temp);
  await rename(temp, join(dir, MANIFEST));
  await syncPath(dir);
}

export class BackupInvalidError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupInvalidError';
  }
}

/** The manifest of a backup directory; a directory without one is a backup that never finished. */
export async function readManifest(dir: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new BackupInvalidError(`${dir} has no ${MANIFEST}: it is not a finished backup (a backup writes its manifest last)`);
    }
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new BackupInvalidError(`${join(dir, MANIFEST)} is not JSON`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) throw new BackupInvalidError(`${join(dir, MANIFEST)} is not an Ocean Core backup manifest: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  const names = parsed.data.files.map((f) => f.name).sort();
  if (names.join() !== [DUCKDB_FILE, SQLITE_FILE].join()) throw new BackupInvalidError(`${join(dir, MANIFEST)} must list ${SQLITE_FILE} and ${DUCKDB_FILE} once each`);
  return parsed.data;
}

/** Throws unless each file of the manifest in `dir` has its size and checksum. */
export async function verifyFiles(dir: string, manifest: Manifest): Promise<void> {
  for (const expected of manifest.files) {
    let actual: ManifestFile;
    try {
      actual = await describeFile(dir, expected.name);
    } catch (err) {
      throw new BackupInvalidError(`${expected.name} cannot be read: ${(err as Error).message}`);
    }
    if (actual.bytes !== expected.bytes) throw new BackupInvalidError(`${expected.name} is ${actual.bytes} bytes, the manifest says ${expected.bytes}`);
    if (actual.sha256 !== expected.sha256) throw new BackupInvalidError(`${expected.name} does not match its SHA-256 in the manifest`);
  }
}
