import { PARTITIONS, PARTITION_TABLES } from './partitions.js';

/** The on-disk layout this build writes (analytics_meta 'layout'); files without the key are in layout 1 (migrate.ts). */
export const LAYOUT = 2;

/**
 * The analytics schema, layout 2: readings are numbers, `(series, ts, value)`, and a series row
 * holds sensor, metric, unit, lab, model and source once. A reading costs 20 bytes before
 * compression instead of six strings, and appending it copies three typed columns.
 *
 * `ts` is a plain TIMESTAMP holding UTC: time_bucket and range filters work on it natively (no
 * ICU time-zone arithmetic as with TIMESTAMPTZ), it is stored as int64 microseconds (compact;
 * zone maps prune time ranges), and exports show real timestamps. No indexes on readings: DuckDB
 * scans with zone maps.
 */
export const SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS analytics_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)`,
  `INSERT INTO analytics_meta VALUES ('partitions', '${PARTITIONS}') ON CONFLICT (key) DO NOTHING`,
  `CREATE TABLE IF NOT EXISTS series (
    series    INTEGER PRIMARY KEY,
    sensor_id VARCHAR NOT NULL,
    metric    VARCHAR NOT NULL,
    unit      VARCHAR NOT NULL,
    lab_id    VARCHAR,
    model_id  SMALLINT,
    source    VARCHAR NOT NULL
  )`,
  ...PARTITION_TABLES.map((table) => `CREATE TABLE IF NOT EXISTS ${table} (series INTEGER NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE NOT NULL)`),
  // Every measurement with its strings, whatever its partition: for ad-hoc SQL and exports.
  `CREATE OR REPLACE VIEW measurements AS
   SELECT s.sensor_id, r.ts, s.metric, r.value, s.unit, s.lab_id, s.model_id, s.source
   FROM (${PARTITION_TABLES.map((t) => `SELECT * FROM ${t}`).join(' UNION ALL ')}) r JOIN series s ON r.series = s.series`,
  // Accepted frames' fingerprints inside the drift window (ts: the frame header's time, Unix s).
  `CREATE TABLE IF NOT EXISTS replay_fingerprints (fp BIGINT NOT NULL, ts INTEGER NOT NULL, tag INTEGER NOT NULL)`,
  // One row: the last batch committed, the work-queue id through which rows are here, the stream position.
  `CREATE TABLE IF NOT EXISTS ingest_state (batch BIGINT NOT NULL, queue_through BIGINT NOT NULL, position VARCHAR)`,
  `INSERT INTO ingest_state SELECT 0, 0, NULL WHERE NOT EXISTS (SELECT 1 FROM ingest_state)`,
  // Side effects of a batch still owed to SQLite, as JSON text.
  `CREATE TABLE IF NOT EXISTS ingest_effects (batch BIGINT NOT NULL, effects VARCHAR NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS purges_done (id BIGINT PRIMARY KEY)`,
  `INSERT INTO analytics_meta VALUES ('layout', '${LAYOUT}') ON CONFLICT (key) DO NOTHING`,
];

