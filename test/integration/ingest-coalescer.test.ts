import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ForbiddenError } from '../../src/errors.js';
import { IngestCoalescer } from '../../src/ingest/ingest-coalescer.js';
import type { Reading } from '../../src/ingest/reading.js';
import { openTempStore, type TempStore } from '../helpers/temp-store.js';

const admin = undefined; // no owner: the admin's readings claim nothing
const reading = (sensor_id: string): Reading => ({ sensor_id, data: '{"v":1}', values: [['v', 1]], timestamp: 1_767_225_600 });

/** A pipeline stand-in that writes a metadata key per reading, so what was committed is visible. */
function fakePipeline(t: TempStore, behaviour: (sensorId: string) => void = () => {}) {
  let calls = 0;
  let transactions = 0;
  const transaction = t.store.transaction.bind(t.store);
  const store = {
    db: t.store.db,
    transaction<T>(fn: () => T): T {
      // Counts real transactions, not the savepoints nested in them.
      if (!t.store.db.inTransaction) transactions++;
      return transaction(fn);
    },
  };
  let committed = 0;
  const pipeline = {
    storeReadings(readings: readonly Reading[]) {
      calls++;
      for (const r of readings) t.store.metadata.set(r.sensor_id, true);
      for (const r of readings) behaviour(r.sensor_id);
      return readings.map(() => ({ ok: true as const, records: 1, bufferId: calls }));
    },
    readingsCommitted(readings: readonly Reading[]) {
      committed += readings.length;
    },
  };
  return { store, pipeline, stats: () => ({ calls, transactions, committed }) };
}

describe('HTTP ingest group commit', () => {
  let t: TempStore;
  beforeEach(() => {
    t = openTempStore();
  });
  afterEach(() => t.cleanup());

  it('writes the requests of one event-loop turn in one transaction and answers each', async () => {
    const f = fakePipeline(t);
    const c = new IngestCoalescer(f.store, f.pipeline);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => c.submit([reading(`s${i}`)], admin)));
    expect(results.map((r) => r[0])).toEqual(Array(20).fill(expect.objectContaining({ ok: true, records: 1 })));
    expect(f.stats()).toEqual({ calls: 20, transactions: 1, committed: 20 });
    for (let i = 0; i < 20; i++) expect(t.store.metadata.get(`s${i}`)?.value).toBe(true);
  });

  it('caps the group size and carries the rest to the next transaction', async () => {
    const f = fakePipeline(t);
    const c = new IngestCoalescer(f.store, f.pipeline, 'http', 8);
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.submit([reading(`s${i}`)], admin)));
    expect(f.stats().transactions).toBe(3);
  });

  it('fails only the request that failed, rolling back only its own writes', async () => {
    const f = fakePipeline(t, (id) => {
      if (id === 'bad') throw new ForbiddenError('sensor bad belongs to another user');
    });
    const c = new IngestCoalescer(f.store, f.pipeline);
    const settled = await Promise.allSettled([c.submit([reading('a')], admin), c.submit([reading('bad')], admin), c.submit([reading('b')], admin)]);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason).toBeInstanceOf(ForbiddenError);
    expect(t.store.metadata.get('a')).toBeDefined();
    expect(t.store.metadata.get('b')).toBeDefined();
    expect(t.store.metadata.get('bad')).toBeUndefined();
  });

  it('fails the whole group, storing nothing, when the transaction itself is lost', async () => {
    const f = fakePipeline(t, (id) => {
      if (id === 'lost') t.store.db.exec('ROLLBACK'); // what SQLite does on an I/O or disk-full error
    });
    const c = new IngestCoalescer(f.store, f.pipeline);
    const settled = await Promise.allSettled([c.submit([reading('a')], admin), c.submit([reading('lost')], admin), c.submit([reading('b')], admin)]);
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
    for (const key of ['a', 'lost', 'b']) expect(t.store.metadata.get(key)).toBeUndefined();
    expect(t.store.db.inTransaction).toBe(false);
  });

  it('fails every request of the group when the commit fails', async () => {
    const f = fakePipeline(t);
    const c = new IngestCoalescer({ db: t.store.db, transaction: () => { throw new Error('disk I/O error'); } }, f.pipeline);
    const settled = await Promise.allSettled([c.submit([reading('a')], admin), c.submit([reading('b')], admin)]);
    expect(settled.every((s) => s.status === 'rejected')).toBe(true);
  });
});
