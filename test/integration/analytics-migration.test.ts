import { DuckDBInstance } from '@duckdb/node-api';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AnalyticsEngine } from '../../src/analytics/engine.js';
import { commitRows } from '../helpers/measurements.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

/**
 * A file in layout 1 (measurements_pNN with their strings and buffer_id, ingest_state(id,
 * high_water)), as test/fixtures/v1-data-dir holds one, is moved to layout 2 when it is opened:
 * the same measurements, the same answers, its high-water mark as queue_through.
 */
const FIXTURE = join(import.meta.dirname, '../fixtures/v1-data-dir/analytics.duckdb');
const ROW = `sensor_id, strftime(ts, '%Y-%m-%dT%H:%M:%S.%f') AS ts, metric, value, unit, lab_id, model_id, source`;
const ORDER = 'ORDER BY sensor_id, ts, metric, value';

/** Rows of a query on the file itself (read-only), outside the engine. */
async function direct(path: string, sql: string): Promise<Array<Record<string, unknown>>> {
  const instance = await DuckDBInstance.create(path, { access_mode: 'READ_ONLY' });
  const c = await instance.connect();
  try {
    return (await c.runAndReadAll(sql)).getRowObjectsJS() as Array<Record<string, unknown>>;
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

describe('analytics store: migration of a layout 1 file on open', () => {
  let dir: TempDir;
  let path: string;
  let engine: AnalyticsEngine | undefined;
  const open = async () => (engine = await AnalyticsEngine.open({ path, memoryLimit: '256MB', threads: 1 }));
  beforeEach(async () => {
    dir = await makeTempDir('ocean-migrate-');
    path = join(dir.path, 'analytics.duckdb');
    await copyFile(FIXTURE, path);
  });
  afterEach(async () => {
    await engine?.close();
    engine = undefined;
    await dir.cleanup();
  });

  it('keeps every measurement and every answer, and takes high_water as queue_through', async () => {
    const rowsBefore = await direct(path, `SELECT ${ROW} FROM measurements ${ORDER}`);
    expect(rowsBefore).toHaveLength(22);
    const statsBefore = await direct(
      path,
      `SELECT sensor_id, metric, unit, count(*)::INTEGER AS count, avg(value) AS avg, min(value) AS min, max(value) AS max, stddev_samp(value) AS sd,
         strftime(min(ts), '%Y-%m-%dT%H:%M:%S.%g') || 'Z' AS first, strftime(max(ts), '%Y-%m-%dT%H:%M:%S.%g') || 'Z' AS last
       FROM measurements GROUP BY ALL ORDER BY ALL`,
    );
    const bucketsBefore = await direct(
      path,
      `SELECT sensor_id, strftime(time_bucket(INTERVAL 5 MINUTE, ts, TIMESTAMP '1970-01-01'), '%Y-%m-%dT%H:%M:%S.%g') || 'Z' AS bucket,
         count(*)::INTEGER AS count, avg(value) AS avg, min(value) AS min, max(value) AS max
       FROM measurements GROUP BY ALL ORDER BY ALL`,
    );
    const sensors = [...new Set(rowsBefore.map((r) => String(r.sensor_id)))];

    await open();
    const e = engine!;
    expect(await e.ingestState()).toEqual({ batch: 0, queueThrough: 12, position: null, purgesDone: [], effects: [] });
    expect(await e.all('test', `SELECT ${ROW} FROM measurements ${ORDER}`)).toEqual(rowsBefore);

    for (const sensor of sensors) {
      const stats = await e.sensorStats(sensor);
      const expected = statsBefore.filter((r) => r.sensor_id === sensor);
      expect(stats.metrics.map((m) => [m.metric, m.unit, m.count, m.avg_value, m.min_value, m.max_value, m.stddev_value, m.first_reading, m.last_reading])).toEqual(
        expected.map((r) => [r.metric, r.unit, r.count, r.avg, r.min, r.max, r.sd, r.first, r.last]),
      );
      const series = await e.timeseries(sensor, { interval: '5m' });
      expect(series.data.map((b) => [b.bucket, b.count, b.avg_value, b.min_value, b.max_value])).toEqual(
        bucketsBefore.filter((r) => r.sensor_id === sensor).map((r) => [r.bucket, r.count, r.avg, r.min, r.max]),
      );
    }
    const list = await e.sensors();
    expect(list.sensors.map((s) => [s.sensor_id, s.count])).toEqual(sensors.sort().map((s) => [s, rowsBefore.filter((r) => r.sensor_id === s).length]));
    const compared = await e.compare(sensors);
    expect(compared.sensors.map((s) => s.count)).toEqual(sensors.map((s) => rowsBefore.filter((r) => r.sensor_id === s).length));

    // Layout 1's tables are gone; the file says which layout it is in.
    const tables = await e.all('test', `SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'measurements%'`);
    expect(tables).toEqual([]);
    expect(await e.all('test', `SELECT value FROM analytics_meta WHERE key = 'layout'`)).toEqual([{ value: '2' }]);
  });

  it('opens the migrated file again as it is, and commits after what it took over', async () => {
    await open();
    const series = (await engine!.all('test', 'SELECT count(*)::INTEGER AS n FROM series'))[0]!.n;
    await engine!.close();
    await open();
    expect((await engine!.all('test', 'SELECT count(*)::INTEGER AS n FROM measurements'))[0]!.n).toBe(22);
    // A series the file had: found among those loaded at open, not made again.
    const more = Array.from({ length: 10 }, (_, i) => ({ sensor_id: 'alice-t1', metric: 'temperature', unit: '', lab_id: null, model_id: null, source: 'http', ts: 1_767_229_200 + i, value: i }));
    await commitRows(engine!, more, { queueThrough: 13 });
    expect(await engine!.ingestState()).toMatchObject({ batch: 1, queueThrough: 13 });
    expect((await engine!.all('test', 'SELECT count(*)::INTEGER AS n FROM measurements'))[0]!.n).toBe(32);
    expect((await engine!.all('test', 'SELECT count(*)::INTEGER AS n FROM series'))[0]!.n).toBe(series);
  });

  it('leaves the file in layout 1, whole, when the migration fails', async () => {
    // A table in the way of layout 2's: the copy into it fails and everything rolls back.
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    await c.run('CREATE TABLE series (x INTEGER)');
    c.closeSync();
    instance.closeSync();
    await expect(open()).rejects.toThrow();
    engine = undefined;
    expect(await direct(path, 'SELECT count(*)::INTEGER AS n FROM measurements')).toEqual([{ n: 22 }]);
    expect(await direct(path, 'SELECT high_water FROM ingest_state')).toEqual([{ high_water: 12n }]);
    expect(await direct(path, `SELECT count(*)::INTEGER AS n FROM duckdb_tables() WHERE table_name LIKE 'readings%'`)).toEqual([{ n: 0 }]);
  });
});
