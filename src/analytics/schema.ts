import { PARTITIONS, PARTITION_TABLES } from './partitions.js';

/**
 * The analytics schema. `ts` is a plain TIMESTAMP holding UTC: time_bucket and range filters
 * work on it natively (no ICU time-zone arithmetic as with TIMESTAMPTZ), it is stored as int64
 * microseconds (compact; zone maps prune time ranges), and exports show real timestamps.
 * No indexes: DuckDB scans with zone maps; an ART index on sensor_id measured no faster.
 */
const COLUMNS = `(
    buffer_id BIGINT NOT NULL,
    ts        TIMESTAMP NOT NULL,
    sensor_id VARCHAR NOT NULL,
    metric    VARCHAR NOT NULL,
    value     DOUBLE NOT NULL,
    unit      VARCHAR NOT NULL,
    lab_id    VARCHAR,
    model_id  SMALLINT,
    source    VARCHAR NOT NULL
  )`;

export const SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS analytics_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)`,
  `INSERT INTO analytics_meta VALUES ('partitions', '${PARTITIONS}') ON CONFLICT (key) DO NOTHING`,
  ...PARTITION_TABLES.map((table) => `CREATE TABLE IF NOT EXISTS ${table} ${COLUMNS}`),
  // Every measurement, whatever its partition: for ad-hoc SQL and all-sensor reads.
  `CREATE OR REPLACE VIEW measurements AS ${PARTITION_TABLES.map((t) => `SELECT * FROM ${t}`).join(' UNION ALL ')}`,
  // One row (id 1): the highest buffer id whose records are in the measurements tables.
  `CREATE TABLE IF NOT EXISTS ingest_state (
    id         INTEGER PRIMARY KEY,
    high_water BIGINT NOT NULL
  )`,
];

/** The partition count a file was written with must be this build's. */
export const PARTITIONS_CHECK = `SELECT value FROM analytics_meta WHERE key = 'partitions'`;
