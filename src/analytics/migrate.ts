import type { DuckDBConnection } from '@duckdb/node-api';
import { PARTITIONS, PARTITION_TABLES } from './partitions.js';
import { SCHEMA } from './schema.js';

/**
 * Opening a file: creates the schema, and moves a file in layout 1 (each measurement with its
 * strings in `measurements_pNN(buffer_id, …)`, `ingest_state(id, high_water)`) to layout 2
 * (schema.ts) on the way. One transaction: a failure leaves the file as it was, and the next
 * open tries again; a file already in layout 2 only gets what is missing of its schema.
 */

const LEGACY_TABLES = PARTITION_TABLES.map((_, i) => `measurements_p${String(i).padStart(2, '0')}`);
const LEGACY_ALL = LEGACY_TABLES.map((t) => `SELECT * FROM ${t}`).join(' UNION ALL ');
const NEW_ALL = PARTITION_TABLES.map((t) => `SELECT * FROM ${t}`).join(' UNION ALL ');
const STRINGS = 'sensor_id, metric, unit, lab_id, model_id, source';

async function rows(c: DuckDBConnection, sql: string): Promise<Array<Record<string, unknown>>> {
  return (await c.runAndReadAll(sql)).getRowObjectsJS() as Array<Record<string, unknown>>;
}

async function tableExists(c: DuckDBConnection, name: string): Promise<boolean> {
  const found = await c.runAndReadAll(
    `SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' AND table_name = $1`,
    [name],
  );
  return found.currentRowCount > 0;
}

/** Schema in place (and a layout 1 file migrated); throws when the file has another partition count. */
export async function prepareSchema(c: DuckDBConnection, path: string): Promise<void> {
  await c.run('BEGIN TRANSACTION');
  try {
    if (await tableExists(c, 'analytics_meta')) {
      const stored = (await rows(c, `SELECT value FROM analytics_meta WHERE key = 'partitions'`))[0]?.value;
      if (stored !== undefined && stored !== String(PARTITIONS)) {
        throw new Error(`${path} was written with ${String(stored)} measurement partitions; this build uses ${PARTITIONS}`);
      }
    }
    const legacy = await tableExists(c, LEGACY_TABLES[0]!);
    let highWater = 0;
    if (legacy) {
      highWater = Number((await rows(c, 'SELECT coalesce(max(high_water), 0) AS h FROM ingest_state'))[0]?.h ?? 0);
      // Both names are layout 2's too: the view joins series now, and ingest_state has other columns.
      await c.run('DROP VIEW IF EXISTS measurements');
      await c.run('DROP TABLE ingest_state');
    }
    for (const statement of SCHEMA) await c.run(statement);
    if (legacy) await copyLegacy(c, highWater);
    await c.run('COMMIT');
  } catch (err) {
    await c.run('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Layout 1's measurements as series and readings (same partition: same hash), then its tables go. */
async function copyLegacy(c: DuckDBConnection, highWater: number): Promise<void> {
  await c.run(
    `INSERT INTO series
     SELECT (row_number() OVER (ORDER BY ${STRINGS}))::INTEGER, ${STRINGS}
     FROM (SELECT DISTINCT ${STRINGS} FROM (${LEGACY_ALL}))`,
  );
  for (let p = 0; p < PARTITIONS; p++) {
    // Arrival order (buffer id), as the flusher appended them: each partition stays in time order.
    await c.run(
      `INSERT INTO ${PARTITION_TABLES[p]}
       SELECT s.series, m.ts, m.value FROM ${LEGACY_TABLES[p]} m JOIN series s
         ON s.sensor_id = m.sensor_id AND s.metric = m.metric AND s.unit = m.unit AND s.source = m.source
        AND s.lab_id IS NOT DISTINCT FROM m.lab_id AND s.model_id IS NOT DISTINCT FROM m.model_id
       ORDER BY m.buffer_id, m.ts`,
    );
  }
  const [counts] = await rows(c, `SELECT (SELECT count(*) FROM (${LEGACY_ALL})) AS before, (SELECT count(*) FROM (${NEW_ALL})) AS after`);
  if (counts?.before !== counts?.after) throw new Error(`migration to layout 2 copied ${String(counts?.after)} of ${String(counts?.before)} measurements`);
  await c.run('UPDATE ingest_state SET queue_through = $1', [highWater]);
  for (const table of LEGACY_TABLES) await c.run(`DROP TABLE ${table}`);
}
