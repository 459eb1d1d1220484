/**
 * ReplayIndex (src/ingest/replay-index.ts): ns per add / check and bytes per remembered frame.
 *
 * bulk      = N random fingerprints, header times uniform over a 600 s window (windowS = 2 × 300 s),
 *             added in random time order; then each checked again (all REPLAY/REDELIVERY hits), and
 *             N fresh ones checked (all NEW misses, the common case on the hot path).
 * stream    = time moves one second at a time, N / 600 frames a second with header times up to 5 s
 *             behind, each checked then added (the ingest order), forgetBefore(now − 600) every
 *             second; run for 700 s so the window is full and has moved; bytes/frame at the end.
 * load range = bytes/frame for N from 1M up to 1.2M (one growth step of the tables), since where N
 *             falls between two capacities decides the load.
 *
 * Bounded at ~20 s on a slow machine (one pass each; numbers are per op averages over the pass).
 */
import { randomFillSync } from 'node:crypto';
import { NEW, ReplayIndex } from '../src/ingest/replay-index.js';

const WINDOW_S = 600;
const NOW = 1_750_000_000;

const ns = (t0: bigint, ops: number) => Number(process.hrtime.bigint() - t0) / ops;
const fmt = (x: number) => x.toFixed(1).padStart(7);

function randomTimes(n: number): Uint32Array {
  const ts = new Uint32Array(n);
  for (let i = 0; i < n; i++) ts[i] = NOW - WINDOW_S + Math.floor(Math.random() * WINDOW_S);
  return ts;
}

function bulk(n: number): void {
  const fp = randomFillSync(new Uint8Array(n * 8));
  const fresh = randomFillSync(new Uint8Array(n * 8));
  const ts = randomTimes(n);
  const tag = randomFillSync(new Uint32Array(n));
  const index = new ReplayIndex({ windowS: WINDOW_S });

  let t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) index.add(fp, i * 8, ts[i]!, tag[i]!);
  const addNs = ns(t0, n);

  let hits = 0;
  t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (index.check(fp, i * 8, ts[i]!, i & 1 ? tag[i]! : 0) !== NEW) hits++;
  const hitNs = ns(t0, n);

  let misses = 0;
  t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (index.check(fresh, i * 8, ts[i]!, tag[i]!) === NEW) misses++;
  const missNs = ns(t0, n);

  if (hits !== n || misses !== n || index.size !== n) throw new Error(`bulk ${n}: hits ${hits}, misses ${misses}, size ${index.size}`);
  console.log(
    `bulk   ${String(n / 1e6).padStart(3)}M: add ${fmt(addNs)} ns  check(hit) ${fmt(hitNs)} ns  check(miss) ${fmt(missNs)} ns  ` +
      `${(index.bytes / index.size).toFixed(2)} bytes/frame (${(index.bytes / 2 ** 20).toFixed(1)} MiB)`,
  );
}

function stream(n: number): void {
  const perS = Math.round(n / WINDOW_S);
  const seconds = WINDOW_S + 100;
  const total = perS * seconds;
  const fp = randomFillSync(new Uint8Array(total * 8));
  const lag = new Uint8Array(total);
  for (let i = 0; i < total; i++) lag[i] = Math.floor(Math.random() * 6);
  const index = new ReplayIndex({ windowS: WINDOW_S });

  let k = 0;
  let fresh = 0;
  const t0 = process.hrtime.bigint();
  for (let s = 0; s < seconds; s++) {
    const now = NOW + s;
    for (let j = 0; j < perS; j++, k++) {
      const ts = now - lag[k]!;
      if (index.check(fp, k * 8, ts, k) === NEW) {
        index.add(fp, k * 8, ts, k);
        fresh++;
      }
    }
    index.forgetBefore(now - WINDOW_S);
  }
  const pairNs = ns(t0, total);
  if (fresh !== total) throw new Error('stream: a fresh frame was not NEW');
  console.log(
    `stream ${String(n / 1e6).padStart(3)}M: check+add ${fmt(pairNs)} ns (forgetBefore each second included)  ` +
      `${index.size} remembered, ${(index.bytes / index.size).toFixed(2)} bytes/frame (${(index.bytes / 2 ** 20).toFixed(1)} MiB)`,
  );
}

function loadRange(): void {
  const out: string[] = [];
  for (let n = 1_000_000; n <= 1_200_000; n += 40_000) {
    const fp = randomFillSync(new Uint8Array(n * 8));
    const ts = randomTimes(n);
    const index = new ReplayIndex({ windowS: WINDOW_S });
    for (let i = 0; i < n; i++) index.add(fp, i * 8, ts[i]!, 0);
    out.push(`${(n / 1e6).toFixed(2)}M ${(index.bytes / index.size).toFixed(2)}`);
  }
  console.log(`load range (N → bytes/frame): ${out.join(', ')}`);
}

const started = Date.now();
// Warm-up so the first figures are not the JIT's.
bulk(200_000);
console.log('-- measured --');
bulk(1_000_000);
bulk(5_000_000);
stream(1_000_000);
stream(5_000_000);
loadRange();
console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s)`);
