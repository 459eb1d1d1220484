import { describe, expect, it } from 'vitest';
import { degradedReasons } from '../../src/health.js';
import type { IngestStatus } from '../../src/ingest/status.js';

const well: IngestStatus = {
  consumer: { enabled: true, connected: true, stalled: false, redis_refusing_writes: false, redis_near_full: false, owed_dead_letters: 0 },
  committer: { batch: 10, queue_through: 4, position: '1-0', last_commit_at: null, last_error: null, failures: 0, backlog: 0 },
  replay: { frames: 100, bytes: 4096 },
};
const disk = { free: 10 * 1024 ** 3, total: 100 * 1024 ** 3 };
const with_ = (patch: { consumer?: Partial<IngestStatus['consumer']>; committer?: Partial<NonNullable<IngestStatus['committer']>> }): IngestStatus => ({
  consumer: { ...well.consumer, ...patch.consumer },
  committer: { ...well.committer!, ...patch.committer },
  replay: well.replay,
});

describe('health reasons', () => {
  it('has none when all is well, also without Redis', () => {
    expect(degradedReasons(well, disk)).toEqual([]);
    expect(degradedReasons(with_({ consumer: { enabled: false, connected: false } }), disk)).toEqual([]);
  });

  it.each([
    ['consumer_disconnected', with_({ consumer: { connected: false } })],
    ['consumer_refused', with_({ consumer: { connected: false, refused: true } })],
    ['consumer_stalled', with_({ consumer: { stalled: true } })],
    ['redis_refusing_writes', with_({ consumer: { redis_refusing_writes: true } })],
    ['redis_near_maxmemory', with_({ consumer: { redis_near_full: true } })],
    ['dead_letters_pending', with_({ consumer: { owed_dead_letters: 2 } })],
    ['ingest_commit_failing', with_({ committer: { failures: 1 } })],
  ])('names %s', (reason, status) => {
    expect(degradedReasons(status, disk)).toEqual([reason]);
  });

  it('names a full disk by free bytes or by share', () => {
    expect(degradedReasons(well, { free: 10 * 1024 ** 2, total: 10 * 1024 ** 3 })).toEqual(['disk_full']);
    expect(degradedReasons(well, { free: 500 * 1024 ** 2, total: 1024 ** 4 })).toEqual(['disk_full']);
  });

  it('does not call readings on their way into analytics a problem', () => {
    expect(degradedReasons(with_({ committer: { backlog: 1000 } }), disk)).toEqual([]);
  });
});
