import { describe, expect, it } from 'vitest';
import { Admission, type AdmissionLimits } from '../../src/analytics/admission.js';

const LIMITS: AdmissionLimits = { running: 2, perCallerRunning: 1, perCallerWaiting: 1, queue: 2, timeoutMs: 200, exports: 2, perCallerExports: 1 };

/** A query that runs until the test lets it end. */
function held() {
  let end!: () => void;
  const ended = new Promise<void>((resolve) => (end = resolve));
  return { end, run: async (remainingMs: number) => (await ended, remainingMs) };
}

const caller = (key: string, arrivedAt = performance.now()) => ({ key, arrivedAt });

describe('analytics admission', () => {
  it('counts the time limit from arrival: a query that waited its limit out never runs (query_timeout)', async () => {
    const a = new Admission(LIMITS);
    const first = held();
    const running = a.query(caller('alice'), first.run);
    let ran = false;
    const waiting = a.query(caller('alice'), async () => (ran = true));
    await expect(waiting).rejects.toMatchObject({ statusCode: 503, code: 'query_timeout' });
    expect(ran).toBe(false);
    first.end();
    await expect(running).resolves.toBeGreaterThan(0);
    // A request that arrived longer ago than the limit does not start either.
    await expect(a.query(caller('alice', performance.now() - 1000), async () => 1)).rejects.toMatchObject({ code: 'query_timeout' });
  });

  it('hands a query what is left of its limit, not the whole limit', async () => {
    const a = new Admission(LIMITS);
    const remaining = await a.query(caller('alice', performance.now() - 150), async (ms) => ms);
    expect(remaining).toBeLessThanOrEqual(50);
  });

  it("bounds each caller's share and the queue (busy) and starts another caller's query on the free reader", async () => {
    const a = new Admission(LIMITS);
    const alice = held();
    const running = a.query(caller('alice'), alice.run);
    const aliceWaits = a.query(caller('alice'), async () => 'second');
    await expect(a.query(caller('alice'), async () => 'third')).rejects.toMatchObject({ statusCode: 503, code: 'busy' });
    // Bob is not behind alice: the second reader is his.
    await expect(a.query(caller('bob'), async () => 'bob')).resolves.toBe('bob');
    alice.end();
    await expect(running).resolves.toBeGreaterThan(0);
    await expect(aliceWaits).resolves.toBe('second');
  });

  it('gives exports a slot per caller and in all, refusing beyond (busy) until a slot is released', () => {
    const a = new Admission(LIMITS);
    const release = a.exportSlot(caller('alice'));
    expect(() => a.exportSlot(caller('alice'))).toThrow(expect.objectContaining({ code: 'busy', retryAfterS: 1 }));
    const bob = a.exportSlot(caller('bob'));
    expect(() => a.exportSlot(caller('carol'))).toThrow(expect.objectContaining({ code: 'busy' }));
    release();
    release(); // twice is harmless
    expect(() => a.exportSlot(caller('carol'))).not.toThrow();
    bob();
  });
});
