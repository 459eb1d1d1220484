import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTempStore, type TempStore } from '../helpers/temp-store.js';

describe('operational metadata and profiles', () => {
  let t: TempStore;
  beforeEach(() => {
    t = openTempStore();
  });
  afterEach(() => t.cleanup());

  it('stores any JSON value under a key and replaces it on a second set', () => {
    t.store.metadata.set('site', { name: 'Lab 1', floors: [1, 2] });
    expect(t.store.metadata.get('site')).toMatchObject({ key: 'site', value: { name: 'Lab 1', floors: [1, 2] } });
    t.store.metadata.set('site', 'plain text');
    expect(t.store.metadata.get('site')!.value).toBe('plain text');
    t.store.metadata.set('nothing', null);
    expect(t.store.metadata.get('nothing')!.value).toBeNull();
    expect(t.store.metadata.get('missing')).toBeUndefined();
  });

  it('keeps profiles apart from key-value entries with the same key', () => {
    t.store.metadata.set('p1', 42);
    t.store.metadata.storeProfile({ profile_id: 'p1', sensor_id: 's1', timestamp: 1_767_225_600, metadata: { depth: 10 } });
    expect(t.store.metadata.get('p1')!.value).toBe(42);
    expect(t.store.metadata.getProfile('p1')).toEqual({
      profile_id: 'p1',
      sensor_id: 's1',
      timestamp: '2026-01-01T00:00:00.000Z',
      metadata: { depth: 10 },
    });
    expect(t.store.metadata.getProfile('missing')).toBeUndefined();
  });

  it('defaults a profile timestamp to now', () => {
    const before = Date.now();
    t.store.metadata.storeProfile({ profile_id: 'p2', sensor_id: 's1', metadata: {} });
    const ts = Date.parse(t.store.metadata.getProfile('p2')!.timestamp);
    expect(ts).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(ts).toBeLessThanOrEqual(Date.now());
  });
});

describe('operational device events', () => {
  let t: TempStore;
  beforeEach(() => {
    t = openTempStore();
  });
  afterEach(() => t.cleanup());

  it('stores an event once per source id and lists a device events newest first', () => {
    const add = (sourceId: string, deviceId: string, payloadType: number) =>
      t.store.deviceEvents.add({ sourceId, deviceId, payloadType, ts: 1_767_225_600, body: { device_id: deviceId, src: sourceId } });
    expect(add('e1', 'dev-1', 3)).toBe(true);
    expect(add('e1', 'dev-1', 3)).toBe(false);
    add('e2', 'dev-1', 2);
    add('e3', 'dev-2', 3);
    const events = t.store.deviceEvents.list('dev-1', { limit: 10 });
    expect(events.map((e) => [e.type, e.body['src']])).toEqual([
      ['config', 'e2'],
      ['event', 'e1'],
    ]);
    expect(events[0]!.ts).toBe('2026-01-01T00:00:00.000Z');
    expect(t.store.deviceEvents.list('dev-1', { limit: 10, before: events[0]!.id }).map((e) => e.body['src'])).toEqual(['e1']);
  });
});
