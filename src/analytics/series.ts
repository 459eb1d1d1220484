import type { DuckDBConnection } from '@duckdb/node-api';
import { withAppender } from './append.js';
import type { RecordColumns } from '../operational/record-batch.js';
import { partitionOf } from './partitions.js';

/** A series as the series table holds it. */
interface SeriesRow {
  series: number;
  sensorId: string;
  metric: string;
  unit: string;
  labId: string | null;
  modelId: number | null;
  source: string;
}

/** One text per series: its strings cannot hold NUL (JSON text and frame strings are NUL-free in practice; a NUL would only split a series). */
const keyOf = (sensorId: string, metric: string, unit: string, labId: string | null, modelId: number | null, source: string) =>
  `${sensorId}\0${metric}\0${unit}\0${labId ?? '\u0001'}\0${modelId ?? -1}\0${source}`;

/**
 * Series ids by their strings, all of them in memory (a few per sensor), loaded at open. Ids of
 * series made in a commit are taken back if the commit rolls back (`forget`), so the map holds
 * only what the table holds. Used by the single writer only.
 */
export class SeriesIndex {
  private readonly ids = new Map<string, number>();
  private next = 1;
  /** Series made since the last commit or rollback: their rows are still to be inserted. */
  private fresh: SeriesRow[] = [];

  static async load(c: DuckDBConnection): Promise<SeriesIndex> {
    const index = new SeriesIndex();
    const result = await c.runAndReadAll('SELECT series, sensor_id, metric, unit, lab_id, model_id, source FROM series');
    for (const [series, sensorId, metric, unit, labId, modelId, source] of result.getRowsJS() as Array<[number, string, string, string, string | null, number | null, string]>) {
      index.ids.set(keyOf(sensorId, metric, unit, labId, modelId, source), series);
      if (series >= index.next) index.next = series + 1;
    }
    return index;
  }

  get size(): number {
    return this.ids.size;
  }

  /**
   * Each record's series and partition: the strings are looked up once per distinct
   * (sensor, metric, unit, lab, model) index combination of the segment, never per record.
   */
  resolve(c: RecordColumns, source: string): { series: Int32Array; partition: Uint8Array } {
    const n = c.length;
    const series = new Int32Array(n);
    const partition = new Uint8Array(n);
    const m = c.strings.length;
    // Per sensor string: its partition, and its series by (metric, unit, lab) then model.
    const partitionOfString = new Int16Array(m).fill(-1);
    const bySensor: Array<Map<number, Map<number, number>> | undefined> = new Array(m);
    for (let i = 0; i < n; i++) {
      const s = c.sensor[i]!;
      let p = partitionOfString[s]!;
      if (p < 0) p = partitionOfString[s] = partitionOf(c.strings[s]!);
      partition[i] = p;
      const inner = (bySensor[s] ??= new Map());
      // Below 2^53 for any string count a batch can have (m < 2^17).
      const k = (c.metric[i]! * m + c.unit[i]!) * (m + 1) + c.lab[i]! + 1;
      let byModel = inner.get(k);
      if (!byModel) inner.set(k, (byModel = new Map()));
      const model = c.model[i]!;
      let id = byModel.get(model);
      if (id === undefined) {
        const lab = c.lab[i]!;
        id = this.idOf(c.strings[s]!, c.strings[c.metric[i]!]!, c.strings[c.unit[i]!]!, lab < 0 ? null : c.strings[lab]!, model < 0 ? null : model, source);
        byModel.set(model, id);
      }
      series[i] = id;
    }
    return { series, partition };
  }

  private idOf(sensorId: string, metric: string, unit: string, labId: string | null, modelId: number | null, source: string): number {
    const key = keyOf(sensorId, metric, unit, labId, modelId, source);
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.next++;
      this.ids.set(key, id);
      this.fresh.push({ series: id, sensorId, metric, unit, labId, modelId, source });
    }
    return id;
  }

  /** Inserts the rows of the series made since the last commit, in the writer's open transaction. */
  async insertFresh(c: DuckDBConnection): Promise<void> {
    if (this.fresh.length === 0) return;
    await withAppender(c, 'series', (appender) => {
      for (const r of this.fresh) {
        appender.appendInteger(r.series);
        appender.appendVarchar(r.sensorId);
        appender.appendVarchar(r.metric);
        appender.appendVarchar(r.unit);
        if (r.labId === null) appender.appendNull();
        else appender.appendVarchar(r.labId);
        if (r.modelId === null) appender.appendNull();
        else appender.appendSmallInt(r.modelId);
        appender.appendVarchar(r.source);
        appender.endRow();
      }
    });
  }

  /** The commit went through: the new series are in the table. */
  committed(): void {
    this.fresh = [];
  }

  /** The commit rolled back: its new series are not in the table, so their ids are free again. */
  rolledBack(): void {
    for (const r of this.fresh) this.ids.delete(keyOf(r.sensorId, r.metric, r.unit, r.labId, r.modelId, r.source));
    if (this.fresh.length > 0) this.next = this.fresh[0]!.series;
    this.fresh = [];
  }
}
