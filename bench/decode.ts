/**
 * Decode throughput of level-1 (HMAC-SHA256/16) pressure frames, against bare HMAC as the baseline.
 *
 * decode  = createDecoder().decode(frame): header checks, HMAC + constant-time compare, drift,
 *           CBOR limits walk + cbor-x decode, records, and the in-memory replay check that also
 *           remembers the key. Every frame is distinct (a pool of POOL frames; a fresh decoder and
 *           replay memory per pass over the pool), so no decode is answered early as a replay.
 * hmac    = createHmac('sha256', secret).update(header‖payload).digest() over the same frames' bytes.
 *
 * Runs alternate (hmac, decode for 1 entry, then for 16) for ROUNDS rounds of ~RUN_MS each, after a
 * warm-up; each ratio compares runs of the same round. Bounded at well under 30 s.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { NanogridataConfig } from '../src/config.js';
import { createDecoder } from '../src/nanogridata/decoder.js';
import { encodeFrame, pressurePayload } from '../src/nanogridata/encoder.js';
import { HEADER_SIZE } from '../src/nanogridata/frame.js';

const RUN_MS = 2000;
const ROUNDS = 3;
const POOL = 20_000;
const NOW = Math.floor(Date.now() / 1000);

const secret = randomBytes(32);
const config: NanogridataConfig = { secrets: new Map([[0x10, secret]]), acceptUnsigned: false, maxDriftS: 3600 };

function pool(entriesPerFrame: number): Buffer[] {
  return Array.from({ length: POOL }, (_, i) =>
    encodeFrame({
      modelId: 0x10,
      level: 1,
      timestamp: NOW - (i % 600),
      payload: pressurePayload({
        deviceId: `ESP32-${String(i % 1000).padStart(4, '0')}`,
        labId: 'LAB-01',
        entries: Array.from({ length: entriesPerFrame }, (_, k) => ({ ts: NOW - 600 - k, value: 80_000 + i + k })),
      }),
      secret,
    }),
  );
}

/** Calls `fn` on the pool's frames in turn for about `ms`; frames per second. */
function measure(frames: Buffer[], ms: number, makeFn: () => (frame: Buffer) => unknown): number {
  let fn = makeFn();
  let done = 0;
  let i = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    for (let k = 0; k < 1000; k++) {
      fn(frames[i]!);
      if (++i === frames.length) {
        i = 0;
        fn = makeFn(); // a new pass: fresh replay memory, so frames stay new
      }
    }
    done += 1000;
    elapsed = performance.now() - start;
  }
  return (done / elapsed) * 1000;
}

const hmacOf = () => (frame: Buffer) => createHmac('sha256', secret).update(frame.subarray(0, frame.length - 16)).digest();
const decodeOf = () => {
  const decoder = createDecoder({ config, now: () => NOW });
  return (frame: Buffer) => {
    const r = decoder.decode(frame);
    if (!r.ok) throw new Error(`benchmark frame rejected: ${r.reason}`);
    return r;
  };
};

const sets = [
  { name: '1 entry', frames: pool(1) },
  { name: '16 entries', frames: pool(16) },
];
for (const s of sets) {
  const bytes = s.frames[0]!.length;
  console.log(`${s.name}: frames of ${bytes} bytes (${bytes - HEADER_SIZE - 16} payload)`);
}

// Warm-up: let the JIT settle on both paths.
for (const s of sets) {
  measure(s.frames, 300, hmacOf);
  measure(s.frames, 300, decodeOf);
}

const results = new Map<string, Array<{ hmac: number; decode: number }>>();
for (let round = 1; round <= ROUNDS; round++) {
  for (const s of sets) {
    const hmac = measure(s.frames, RUN_MS, hmacOf);
    const decode = measure(s.frames, RUN_MS, decodeOf);
    (results.get(s.name) ?? results.set(s.name, []).get(s.name)!).push({ hmac, decode });
    console.log(
      `round ${round}  ${s.name.padEnd(10)}  hmac ${fmt(hmac)}/s  decode ${fmt(decode)}/s  ratio ${(decode / hmac).toFixed(2)}`,
    );
  }
}

console.log('\nsummary (median of rounds)');
for (const [name, runs] of results) {
  const hmac = median(runs.map((r) => r.hmac));
  const decode = median(runs.map((r) => r.decode));
  const ratio = median(runs.map((r) => r.decode / r.hmac));
  console.log(`${name.padEnd(10)}  bare hmac ${fmt(hmac)}/s  decode ${fmt(decode)}/s  ratio ${ratio.toFixed(2)}${name === '1 entry' ? `  (target ≥ 0.50: ${ratio >= 0.5 ? 'met' : 'NOT met'})` : ''}`);
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US').padStart(9);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
