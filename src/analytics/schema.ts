/**
 * The analytics schema. `ts` is a plain TIMESTAMP holding UTC: time_bucket and range filters
 * work on it natively (no ICU time-zone arithmetic as with TIMESTAMPTZ), it is stored as int64
 * microseconds (compact, zone maps prune time ranges), and exports show real timestamps.
 * No indexes: DuckDB scans with zone maps; an ART index on sensor_id measured no faster and
 * slows appends.
 */
export const SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS measurements (
    buffer_id BIGINT NOT NULL,
    ts        TIMESTAMP NOT NULL,
    sensor_id VARCHAR NOT NULL,
    metric    VARCHAR NOT NULL,
    value     DOUBLE NOT NULL,
    unit      VARCHAR NOT NULL,
    lab_id    VARCHAR,
    model_id  SMALLINT,
    source    VARCHAR NOT NULL
  )`,
  // One row (id 1): the highest buffer id whose records are in measurements.
  `CREATE TABLE IF NOT EXISTS ingest_state (
    id         INTEGER PRIMARY KEY,
    high_water BIGINT NOT NULL
  )`,
];
