/**
 * Readings are spread over a fixed number of tables by a hash of their series' sensor_id. DuckDB has no
 * clustered index and rows arrive in time order with every sensor interleaved, so a one-sensor
 * query would otherwise scan every sensor's rows; with 16 partitions it scans a sixteenth, and
 * each partition stays in time order (zone maps on ts still prune ranges). The view
 * `measurements` is the union of all partitions joined with their series.
 *
 * The count and the hash are part of the on-disk format: changing either needs a migration
 * (the engine refuses a file written with another count).
 */
export const PARTITIONS = 16;

export const PARTITION_TABLES: readonly string[] = Array.from(
  { length: PARTITIONS },
  (_, i) => `readings_p${String(i).padStart(2, '0')}`,
);

/** FNV-1a (32-bit) over the UTF-16 code units of the id: stable, cheap, well spread. */
export function partitionOf(sensorId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < sensorId.length; i++) {
    h ^= sensorId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % PARTITIONS;
}
