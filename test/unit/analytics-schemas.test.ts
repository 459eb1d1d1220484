import { describe, expect, it } from 'vitest';
import { anomaliesQuery, compareBody, exportQuery, statsQuery, timeseriesQuery } from '../../src/analytics/schemas.js';

/** The checks the query code relies on: they happen here, at the edge, and only here. */
describe('analytics request schemas', () => {
  const fails = (result: { success: boolean; error?: { issues: Array<{ path: PropertyKey[] }> } }, path?: string) => {
    expect(result.success).toBe(false);
    if (path) expect(result.error!.issues.map((i) => i.path.join('.'))).toContain(path);
  };

  it('refuses start after end, and takes Unix seconds or ISO 8601 with null as absent', () => {
    fails(statsQuery.safeParse({ start: '1700000010', end: '1700000000' }), 'start');
    expect(statsQuery.parse({ start: '2023-11-14T22:13:20Z', end: null, metric: null })).toEqual({ start: 1_700_000_000, end: undefined, metric: undefined });
    fails(statsQuery.safeParse({ start: 'yesterday' }), 'start');
  });

  it('takes interval words and refuses anything that is not a number and a unit, defaulting to 5m', () => {
    expect(timeseriesQuery.parse({}).interval).toBe('5m');
    expect(timeseriesQuery.parse({ interval: null }).interval).toBe('5m');
    expect(timeseriesQuery.parse({ interval: '1 week' }).interval).toBe('1 week');
    for (const interval of ['5 minutes; DROP TABLE measurements', '0s', '-1m', '1 month', '367d']) {
      fails(timeseriesQuery.safeParse({ interval }), 'interval');
    }
  });

  it('refuses a threshold of 0 or less and a limit out of 1..10000; coerces numeric text; defaults 2.0 and 100', () => {
    expect(anomaliesQuery.parse({})).toMatchObject({ threshold: 2, limit: 100 });
    expect(anomaliesQuery.parse({ threshold: '2.5', limit: '7' })).toMatchObject({ threshold: 2.5, limit: 7 });
    for (const q of [{ threshold: '0' }, { threshold: '-1' }, { threshold: 'abc' }]) fails(anomaliesQuery.safeParse(q), 'threshold');
    for (const q of [{ limit: '0' }, { limit: '10001' }, { limit: '2.5' }]) fails(anomaliesQuery.safeParse(q), 'limit');
  });

  it('takes 0 to 100 sensor ids (numbers as text), ignores sensor_id and aggregation, refuses 101', () => {
    expect(compareBody.parse({ sensor_ids: [] }).sensor_ids).toEqual([]);
    expect(compareBody.parse({ sensor_ids: [42, 'a b'], sensor_id: 'x', aggregation: 'avg', start_time: null }).sensor_ids).toEqual(['42', 'a b']);
    fails(compareBody.safeParse({ sensor_ids: Array.from({ length: 101 }, (_, i) => `s-${i}`) }), 'sensor_ids');
    fails(compareBody.safeParse({ sensor_ids: ['a'], start_time: 20, end_time: 10 }), 'start_time');
    fails(compareBody.safeParse({ sensor_ids: ['bad\u0000id'] }), 'sensor_ids.0');
  });

  it('takes the four export formats only, parquet by default, one or several sensor ids', () => {
    expect(exportQuery.parse({}).format).toBe('parquet');
    expect(exportQuery.parse({ format: 'ndjson', sensor_id: 's' }).sensor_id).toEqual(['s']);
    expect(exportQuery.parse({ sensor_id: ['a', 'b'] }).sensor_id).toEqual(['a', 'b']);
    fails(exportQuery.safeParse({ format: 'xlsx' }), 'format');
    fails(exportQuery.safeParse({ format: '../../etc/passwd' }), 'format');
  });
});
