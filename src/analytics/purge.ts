import type { SqlRunner } from './engine.js';
import { PARTITION_TABLES, partitionOf } from './partitions.js';

/**
 * Deletes a sensor's measurements from buffer rows up to `throughBufferId`: the readings of a
 * user who had only claimed the sensor, once an admin gave it to another party. Idempotent.
 */
export async function deleteSensorHistory(db: SqlRunner, sensorId: string, throughBufferId: number): Promise<void> {
  await db.exec('purge', `DELETE FROM ${PARTITION_TABLES[partitionOf(sensorId)]} WHERE sensor_id = $1 AND buffer_id <= $2`, [sensorId, throughBufferId]);
}
