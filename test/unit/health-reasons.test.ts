import { describe, expect, it } from 'vitest';
import { degradedReasons } from '../../src/health.js';
import type { IngestStatus } from '../../src/ingest/status.js';

const well: IngestStatus = {
  consumer: { enabled: true, connected: true, stalled: false, redis_refusing_writes: false, redis_near_full: false, owed_dead_letters: 0 },
  flusher: { high_water: 10, last_flush_at: null, last_error: null, failures: 0, quarantined: 0 },
  replay: { backlog: 0, last_error: null, races: 0 },
};
const disk = { free: 10 * 1024 ** 3, total: 100 * 1024 ** 3 };
const with_ = (patch: { consumer?: Partial<IngestStatus['consumer']>; flusher?: Partial<IngestStatus['flusher']>; replay?: Partial<IngestStatus['replay']> }): IngestStatus => ({
  consumer: { ...well.consumer, ...patch.consumer },
  flusher: { ...well.flusher, ...patch.flusher },
  replay: { ...well.replay, ...patch.replay },
});

describe('health reasons', () => {
  it('has none when all is well, also without Redis', () => {
    expect(degradedReasons(well, disk)).toEqual([]);
    expect(degradedReasons(with_({ consumer: { enabled: false, connected: false } }), disk)).toEqual([]);
  });

  it.each([
    ['consumer_disconnected', with_({ consumer: { connected: false } })],
    ['consumer_stalled', with_({ consumer: { stalled: true } })],
    ['redis_refusing_writes', with_({ consumer: { redis_refusing_writes: true } })],
    ['redis_near_maxmemory', with_({ consumer: { redis_near_full: true } })],
    ['replay_memory_behind', with_({ replay: { backlog: 3, last_error: 'OOM command not allowed' } })],
    ['dead_letters_pending', with_({ consumer: { owed_dead_letters: 2 } })],
    ['flusher_failing', with_({ flusher: { failures: 1 } })],
    ['quarantined_records', with_({ flusher: { quarantined: 4 } })],
  ])('names %s', (reason, status) => {
    expect(degradedReasons(status, disk)).toEqual([reason]);
  });

  it('names a full disk by free bytes or by share', () => {
    expect(degradedReasons(well, { free: 10 * 1024 ** 2, total: 10 * 1024 ** 3 })).toEqual(['disk_full']);
    expect(degradedReasons(well, { free: 500 * 1024 ** 2, total: 1024 ** 4 })).toEqual(['disk_full']);
  });

  it('does not call a replay backlog of frames just committed a problem', () => {
    expect(degradedReasons(with_({ replay: { backlog: 1000 } }), disk)).toEqual([]);
  });
});
