import { randomFillSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NEW, REDELIVERY, REPLAY, ReplayIndex } from '../../src/ingest/replay-index.js';

const WINDOW_S = 600;
/** Slices are windowS / 60 wide: 10 s here. */
const SLICE_S = 10;
const T0 = 1_750_000_000;

/** 8 fingerprint bytes from two u32 words, little-endian (lo, hi), as the ingest path lays them out. */
function fpOf(lo: number, hi: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, lo >>> 0, true);
  view.setUint32(4, hi >>> 0, true);
  return out;
}

const ZERO = fpOf(0, 0);
const ONES = fpOf(0xffffffff, 0xffffffff);

describe('ReplayIndex verdicts', () => {
  it('slices are windowS / 60 wide', () => {
    expect(new ReplayIndex({ windowS: WINDOW_S }).sliceS).toBe(SLICE_S);
    expect(new ReplayIndex({ windowS: 7200 }).sliceS).toBe(120);
    expect(new ReplayIndex({ windowS: 30 }).sliceS).toBe(1);
    expect(() => new ReplayIndex({ windowS: 0 })).toThrow(RangeError);
  });

  it('new, then replay from another entry, redelivery from the same entry', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const fp = fpOf(0x12345678, 0x9abcdef0);
    expect(index.check(fp, 0, T0, 7)).toBe(NEW);
    index.add(fp, 0, T0, 7);
    expect(index.check(fp, 0, T0, 7)).toBe(REDELIVERY);
    expect(index.check(fp, 0, T0, 8)).toBe(REPLAY);
    expect(index.check(fp, 0, T0, 0)).toBe(REPLAY);
    expect(index.size).toBe(1);
  });

  it('tag 0 (HTTP) is never a redelivery, whichever way round', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const a = fpOf(1, 2);
    const b = fpOf(3, 4);
    index.add(a, 0, T0, 0);
    expect(index.check(a, 0, T0, 0)).toBe(REPLAY);
    expect(index.check(a, 0, T0, 5)).toBe(REPLAY);
    index.add(b, 0, T0, 5);
    expect(index.check(b, 0, T0, 0)).toBe(REPLAY);
  });

  it('takes tags as 32-bit words: a signed tag (Int32Array) matches its unsigned reading', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const fp = fpOf(11, 12);
    index.add(fp, 0, T0, -5);
    expect(index.check(fp, 0, T0, -5)).toBe(REDELIVERY);
    expect(index.check(fp, 0, T0, 0xfffffffb)).toBe(REDELIVERY);
  });

  it('check does not change the index', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const fp = fpOf(5, 6);
    expect(index.check(fp, 0, T0, 1)).toBe(NEW);
    expect(index.check(fp, 0, T0, 1)).toBe(NEW);
    expect(index.size).toBe(0);
    expect(index.bytes).toBe(0);
  });

  it('adding what is there neither duplicates it nor changes its tag', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const fp = fpOf(21, 22);
    index.add(fp, 0, T0, 1);
    index.add(fp, 0, T0, 2);
    index.add(fp, 0, T0 + 1, 3); // same slice
    expect(index.size).toBe(1);
    expect(index.check(fp, 0, T0, 1)).toBe(REDELIVERY);
    expect(index.check(fp, 0, T0, 2)).toBe(REPLAY);
    index.remove(fp, 0, T0);
    expect(index.check(fp, 0, T0, 1)).toBe(NEW);
    expect(index.size).toBe(0);
  });

  it('looks only in the slice of the header time (a copy carries the same time)', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const fp = fpOf(31, 32);
    const ts = 100 * SLICE_S + 3;
    index.add(fp, 0, ts, 1);
    expect(index.check(fp, 0, 100 * SLICE_S, 2)).toBe(REPLAY);
    expect(index.check(fp, 0, 100 * SLICE_S + SLICE_S - 1, 2)).toBe(REPLAY);
    expect(index.check(fp, 0, 100 * SLICE_S + SLICE_S, 2)).toBe(NEW);
    expect(index.check(fp, 0, 100 * SLICE_S - 1, 2)).toBe(NEW);
  });

  it('reads the fingerprint at any offset of a larger buffer', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const buf = new Uint8Array(64);
    buf.set(fpOf(0xdeadbeef, 0xcafef00d), 13);
    index.add(buf, 13, T0, 9);
    expect(index.check(fpOf(0xdeadbeef, 0xcafef00d), 0, T0, 9)).toBe(REDELIVERY);
    expect(index.check(buf, 12, T0, 9)).toBe(NEW);
    expect(index.check(buf, 14, T0, 9)).toBe(NEW);
  });
});

describe('ReplayIndex edge fingerprints', () => {
  it('fingerprint 0 and all-ones are frames like any other', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    expect(index.check(ZERO, 0, T0, 1)).toBe(NEW);
    index.add(ZERO, 0, T0, 1);
    expect(index.check(ZERO, 0, T0, 1)).toBe(REDELIVERY);
    expect(index.check(ZERO, 0, T0, 2)).toBe(REPLAY);
    expect(index.check(ONES, 0, T0, 1)).toBe(NEW);
    index.add(ONES, 0, T0, 3);
    index.add(ZERO, 0, T0, 4);
    expect(index.size).toBe(2);
    expect(index.check(ONES, 0, T0, 3)).toBe(REDELIVERY);
    index.remove(ZERO, 0, T0);
    expect(index.check(ZERO, 0, T0, 1)).toBe(NEW);
    expect(index.check(ONES, 0, T0, 3)).toBe(REDELIVERY);
    expect(index.size).toBe(1);
    index.remove(ZERO, 0, T0);
    expect(index.size).toBe(1);
  });

  it('keeps fingerprint 0 apart per slice and through growth', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    index.add(ZERO, 0, T0, 1);
    for (let i = 1; i <= 5000; i++) index.add(fpOf(i, i * 7), 0, T0, i);
    expect(index.check(ZERO, 0, T0, 1)).toBe(REDELIVERY);
    expect(index.check(ZERO, 0, T0 + SLICE_S, 1)).toBe(NEW);
    expect(index.size).toBe(5001);
  });
});

describe('ReplayIndex tables', () => {
  it('handles keys that all share a home slot, across growth, removal and wrap-around', () => {
    // Fingerprints that differ only in the low bits of the high word mix to keys that differ only
    // in low bits of the word whose high bits pick the home slot: one long cluster per group.
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const groups = 8;
    const perGroup = 300;
    const fps: Uint8Array[] = [];
    for (let g = 0; g < groups; g++) {
      const lo = 0x01000193 * (g + 1);
      const hiBase = (g * 0x20000000) >>> 0;
      for (let i = 0; i < perGroup; i++) fps.push(fpOf(lo, hiBase + i));
    }
    fps.forEach((fp, i) => index.add(fp, 0, T0, i + 1));
    expect(index.size).toBe(fps.length);
    fps.forEach((fp, i) => expect(index.check(fp, 0, T0, i + 1)).toBe(REDELIVERY));
    // Same pattern, not added.
    for (let g = 0; g < groups; g++) expect(index.check(fpOf(0x01000193 * (g + 1), ((g * 0x20000000) >>> 0) + perGroup + 5), 0, T0, 1)).toBe(NEW);

    fps.forEach((fp, i) => i % 2 === 0 && index.remove(fp, 0, T0));
    expect(index.size).toBe(fps.length / 2);
    fps.forEach((fp, i) => expect(index.check(fp, 0, T0, i + 1)).toBe(i % 2 === 0 ? NEW : REDELIVERY));
    fps.forEach((fp, i) => i % 2 === 0 && index.add(fp, 0, T0, i + 1));
    fps.forEach((fp, i) => expect(index.check(fp, 0, T0, i + 1)).toBe(REDELIVERY));
    expect(index.size).toBe(fps.length);
  });

  it('grows one slice past many resizes and keeps every frame', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const n = 200_000; // 16 slots growing 1.2× at a time: ~50 rebuilds
    const fp = randomFillSync(new Uint8Array(n * 8));
    for (let i = 0; i < n; i++) index.add(fp, i * 8, T0, i + 1);
    for (let i = 0; i < n; i++) index.add(fp, i * 8, T0, i + 1); // twice: no duplicates
    expect(index.size).toBeLessThanOrEqual(n); // random 64-bit fps: a repeat is vanishingly unlikely
    expect(index.size).toBeGreaterThan(n - 2);
    let redeliveries = 0;
    for (let i = 0; i < n; i++) if (index.check(fp, i * 8, T0, i + 1) === REDELIVERY) redeliveries++;
    expect(redeliveries).toBe(index.size);
    const other = randomFillSync(new Uint8Array(10_000 * 8));
    let fresh = 0;
    for (let i = 0; i < 10_000; i++) if (index.check(other, i * 8, T0, 1) === NEW) fresh++;
    expect(fresh).toBe(10_000);
    expect(index.bytes / index.size).toBeLessThanOrEqual(16);
  });

  it('stays within 16 bytes a frame with frames spread over the window', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const n = 300_000;
    const fp = randomFillSync(new Uint8Array(n * 8));
    for (let i = 0; i < n; i++) index.add(fp, i * 8, T0 + (i % WINDOW_S), 0);
    expect(index.bytes / index.size).toBeLessThanOrEqual(16);
  });
});

describe('ReplayIndex forgetting', () => {
  it('forgetBefore drops exactly the slices that end at or before the time given', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const base = 100 * SLICE_S; // slices 100..109
    for (let s = 0; s < 100; s++) index.add(fpOf(s, 1), 0, base + s, 1);
    const bytesBefore = index.bytes;

    index.forgetBefore(base + 55); // slices 100..104 end by base + 50; slice 105 straddles 55 and stays
    expect(index.size).toBe(50);
    expect(index.bytes).toBeLessThan(bytesBefore);
    for (let s = 0; s < 100; s++) expect(index.check(fpOf(s, 1), 0, base + s, 1)).toBe(s < 50 ? NEW : REDELIVERY);

    index.forgetBefore(base + 60); // slice 105 ends exactly at base + 60
    expect(index.size).toBe(40);
    expect(index.check(fpOf(59, 1), 0, base + 59, 1)).toBe(NEW);
    expect(index.check(fpOf(60, 1), 0, base + 60, 1)).toBe(REDELIVERY);

    index.forgetBefore(base + 60); // again: nothing more
    expect(index.size).toBe(40);
    index.forgetBefore(base + 1000);
    expect(index.size).toBe(0);
    expect(index.bytes).toBe(0);
  });

  it('a forgotten slice can be added to again (nothing stale is kept for it)', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const fp = fpOf(77, 78);
    index.add(fp, 0, T0, 1);
    expect(index.check(fp, 0, T0, 1)).toBe(REDELIVERY); // the slice is now the cached one
    index.forgetBefore(T0 + SLICE_S);
    expect(index.check(fp, 0, T0, 1)).toBe(NEW);
    index.add(fp, 0, T0, 2);
    expect(index.check(fp, 0, T0, 2)).toBe(REDELIVERY);
    expect(index.size).toBe(1);
  });

  it('remove of what is not there is a no-op, in an existing slice or not', () => {
    const index = new ReplayIndex({ windowS: WINDOW_S });
    const a = fpOf(1, 1);
    index.remove(a, 0, T0);
    index.add(a, 0, T0, 1);
    index.remove(fpOf(2, 2), 0, T0);
    index.remove(a, 0, T0 + SLICE_S);
    expect(index.size).toBe(1);
    expect(index.check(a, 0, T0, 1)).toBe(REDELIVERY);
    index.remove(a, 0, T0);
    index.remove(a, 0, T0);
    expect(index.size).toBe(0);
  });
});

describe('ReplayIndex against a Map model', () => {
  // Few fingerprint values, times over a few slices and few tags, so that commands meet each other.
  const fpWords = fc.constantFrom<[number, number]>(
    [0, 0],
    [0xffffffff, 0xffffffff],
    [1, 0],
    [0, 1],
    [0xabcdef01, 0x100],
    [0xabcdef01, 0x101],
    [0xabcdef01, 0x102],
    [0x5555, 0x80000000],
    [0x12345678, 0x9abcdef0],
  );
  const anyFp = fc.oneof(fpWords, fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })));
  const ts = fc.integer({ min: T0, max: T0 + 4 * SLICE_S });
  const tag = fc.constantFrom(0, 1, 2, -1, 0xffffffff, 0x7fffffff);
  const command = fc.oneof(
    { arbitrary: fc.record({ op: fc.constant('add' as const), fp: anyFp, ts, tag }), weight: 5 },
    { arbitrary: fc.record({ op: fc.constant('check' as const), fp: anyFp, ts, tag }), weight: 4 },
    { arbitrary: fc.record({ op: fc.constant('remove' as const), fp: anyFp, ts }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('forget' as const), ts }), weight: 1 },
  );

  it('gives the verdicts and size of the model', () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 400 }), (commands) => {
        const index = new ReplayIndex({ windowS: WINDOW_S });
        const model = new Map<string, number>(); // "slice:lo:hi" → tag (u32)
        const sliceOf = (t: number) => Math.floor(t / SLICE_S);
        const key = (fp: [number, number], t: number) => `${sliceOf(t)}:${fp[0]}:${fp[1]}`;
        for (const c of commands) {
          if (c.op === 'forget') {
            index.forgetBefore(c.ts);
            for (const k of [...model.keys()]) if ((Number(k.split(':')[0]) + 1) * SLICE_S <= c.ts) model.delete(k);
          } else {
            const bytes = fpOf(c.fp[0], c.fp[1]);
            const k = key(c.fp, c.ts);
            if (c.op === 'add') {
              index.add(bytes, 0, c.ts, c.tag);
              if (!model.has(k)) model.set(k, c.tag >>> 0);
            } else if (c.op === 'remove') {
              index.remove(bytes, 0, c.ts);
              model.delete(k);
            } else {
              const stored = model.get(k);
              const want = stored === undefined ? NEW : c.tag >>> 0 !== 0 && stored === c.tag >>> 0 ? REDELIVERY : REPLAY;
              expect(index.check(bytes, 0, c.ts, c.tag)).toBe(want);
            }
          }
          expect(index.size).toBe(model.size);
        }
        for (const [k, storedTag] of model) {
          const [slice, lo, hi] = k.split(':').map(Number) as [number, number, number];
          expect(index.check(fpOf(lo, hi), 0, slice * SLICE_S, storedTag)).toBe(storedTag !== 0 ? REDELIVERY : REPLAY);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('agrees with the model through growth and removals in one crowded slice', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 2000 })), { minLength: 500, maxLength: 4000 }),
        (ops) => {
          const index = new ReplayIndex({ windowS: WINDOW_S });
          const model = new Set<number>();
          for (const [isAdd, v] of ops) {
            // v in the high word's low bits: all in one long cluster; v in lo: spread out.
            const fp = v % 2 === 0 ? fpOf(0x1234, v) : fpOf(v, 0x1234);
            if (isAdd) {
              index.add(fp, 0, T0, v);
              model.add(v);
            } else {
              index.remove(fp, 0, T0);
              model.delete(v);
            }
          }
          expect(index.size).toBe(model.size);
          for (let v = 0; v <= 2000; v++) {
            const fp = v % 2 === 0 ? fpOf(0x1234, v) : fpOf(v, 0x1234);
            expect(index.check(fp, 0, T0, v)).toBe(model.has(v) ? (v !== 0 ? REDELIVERY : REPLAY) : NEW);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('ReplayIndex sizing', () => {
  it('starts the slice after a filled one at its size, so a steady stream never rebuilds a large table', () => {
    const index = new ReplayIndex({ windowS: 600 });
    const width = index.sliceS;
    for (let i = 0; i < 50_000; i++) index.add(fpOf(i + 1, 7), 0, 1_000 * width, 1);
    const filled = index.bytes;
    index.add(fpOf(1, 8), 0, 1_001 * width, 1);
    // The next slice holds the first one's frames without growing: as many bytes again, at once.
    expect(index.bytes - filled).toBeGreaterThanOrEqual(50_000 * 12);
    const grown = index.bytes;
    for (let i = 1; i < 50_000; i++) index.add(fpOf(i + 1, 8), 0, 1_001 * width, 1);
    expect(index.bytes).toBe(grown);
    expect(index.size).toBe(100_000);
    // A slice far from the last one (a clock off by minutes) starts small.
    const before = index.bytes;
    index.add(fpOf(1, 9), 0, 900 * width, 1);
    expect(index.bytes - before).toBeLessThan(1024);
  });
});
