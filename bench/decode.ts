/**
 * Decode throughput of level-1 (HMAC-SHA256/16) pressure frames, against bare HMAC as the baseline.
 *
 * hmac      = createHmac('sha256', secret).update(header‖payload).digest() over the same frames' bytes.
 * decode    = createDecoder().decode(frame): header checks, HMAC + constant-time compare, drift,
 *             CBOR limits walk + cbor-x decode, records, and the in-memory replay check, which also
 *             remembers the key. Every frame is new to the replay memory (see decoderOf).
 * no-replay = the same without a replay memory: the per-frame work of the ingest pipeline, whose
 *             replay check is one batched call to the shared (Redis) memory.
 *
 * A pool of POOL distinct frames per kind is decoded in turn. After a warm-up, each round gives each
 * method ~RUN_MS per frame kind, in SLICES alternating slices so that load from elsewhere on the
 * machine hits all alike. Rates are per wall-clock second and per CPU second of the process (GC
 * threads included), the latter being steadier on a shared machine. Bounded at well under 30 s.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { NanogridataConfig } from '../src/config.js';
import { createDecoder } from '../src/nanogridata/decoder.js';
import { encodeFrame, pressurePayload } from '../src/nanogridata/encoder.js';
import { HEADER_SIZE } from '../src/nanogridata/frame.js';
import { InMemoryReplayMemory } from '../src/nanogridata/replay.js';

const RUN_MS = 1500;
const SLICES = 10;
const ROUNDS = 2;
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

/** Runs `fn` over a pool's frames in turn, a slice of time at a time, resuming where it stopped. */
class Runner {
  private fn: (frame: Buffer) => unknown;
  private i = 0;
  done = 0;
  elapsedMs = 0;
  /** Process CPU time (user + system, all threads: GC helpers count) spent in this runner's slices. */
  cpuMs = 0;

  constructor(
    private readonly frames: Buffer[],
    private readonly makeFn: () => (frame: Buffer) => unknown,
  ) {
    this.fn = makeFn();
  }

  run(ms: number): void {
    const cpu = process.cpuUsage();
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < ms) {
      for (let k = 0; k < 500; k++) {
        this.fn(this.frames[this.i]!);
        if (++this.i === this.frames.length) {
          this.i = 0;
          this.fn = this.makeFn(); // a new pass (see decoderOf)
        }
      }
      this.done += 500;
      elapsed = performance.now() - start;
    }
    this.elapsedMs += elapsed;
    const used = process.cpuUsage(cpu);
    this.cpuMs += (used.user + used.system) / 1000;
  }

  /** Frames per wall-clock second. */
  get rate(): number {
    return (this.done / this.elapsedMs) * 1000;
  }

  /** Frames per CPU second: less disturbed than wall time when other processes share the cores. */
  get cpuRate(): number {
    return (this.done / this.cpuMs) * 1000;
  }
}

const hmacOf = () => (frame: Buffer) => createHmac('sha256', secret).update(frame.subarray(0, frame.length - 16)).digest();
/**
 * A decoder per pass over the pool. With replay, all passes share one in-memory replay memory on its
 * own clock, moved past the drift window at each pass: the previous pass's keys have expired by
 * then, so the memory stays at its steady size (about one pool of live keys) and reclaims expired
 * slots as a long-running decoder's does, instead of growing from empty at every pass.
 */
const decoderOf = (replay: boolean) => {
  let memoryNow = NOW;
  const memory = new InMemoryReplayMemory({ now: () => memoryNow, maxDriftS: config.maxDriftS });
  return () => {
    memoryNow += 2 * config.maxDriftS + 1;
    const decoder = createDecoder({ config, now: () => NOW, replay: replay ? memory : null });
    return (frame: Buffer) => {
      const r = decoder.decode(frame);
      if (!r.ok) throw new Error(`benchmark frame rejected: ${r.reason}`);
      return r;
    };
  };
};
const METHODS = [
  { name: 'hmac', make: hmacOf },
  { name: 'decode', make: decoderOf(true) },
  { name: 'no-replay', make: decoderOf(false) },
] as const;

const sets = [
  { name: '1 entry', frames: pool(1) },
  { name: '16 entries', frames: pool(16) },
];
console.log(`hmac      = bare createHmac('sha256', secret).update(header‖payload).digest()
decode    = createDecoder().decode(): every check + CBOR + records + in-memory replay check (remembers the key)
no-replay = the same decoder with replay: null (the ingest pipeline's per-frame work; its replay check is batched)
rates per wall-clock second and per CPU second of the process (GC threads included); ×ratio = rate / hmac rate`);
for (const s of sets) {
  const bytes = s.frames[0]!.length;
  console.log(`${s.name}: level-1 pressure frames of ${bytes} bytes (${bytes - HEADER_SIZE - 16}-byte payload), ${POOL} distinct`);
}

// Warm-up: let the JIT settle on every path.
for (const s of sets) for (const m of METHODS) new Runner(s.frames, m.make).run(250);

type Figures = Record<(typeof METHODS)[number]['name'], { wall: number; cpu: number }>;
const results = new Map<string, Figures[]>();
for (let round = 1; round <= ROUNDS; round++) {
  for (const s of sets) {
    const runners = METHODS.map((m) => new Runner(s.frames, m.make));
    for (let k = 0; k < SLICES; k++) for (const r of runners) r.run(RUN_MS / SLICES);
    const fig = Object.fromEntries(METHODS.map((m, i) => [m.name, { wall: runners[i]!.rate, cpu: runners[i]!.cpuRate }])) as Figures;
    (results.get(s.name) ?? results.set(s.name, []).get(s.name)!).push(fig);
    console.log(`round ${round}  ${s.name.padEnd(10)}  ${line(fig)}`);
  }
}

console.log('\nsummary (median of rounds)');
for (const [name, runs] of results) {
  const med = Object.fromEntries(
    METHODS.map((m) => [m.name, { wall: median(runs.map((r) => r[m.name].wall)), cpu: median(runs.map((r) => r[m.name].cpu)) }]),
  ) as Figures;
  console.log(`${name.padEnd(10)}  ${line(med)}`);
}
const one = results.get('1 entry')!;
const ratio = median(one.map((r) => r.decode.cpu / r.hmac.cpu));
const ratioWall = median(one.map((r) => r.decode.wall / r.hmac.wall));
console.log(
  `target: 1-entry decode ≥ 0.50 × bare HMAC: ${ratio >= 0.5 ? 'met' : 'NOT met'} (per CPU second ${ratio.toFixed(2)}, per wall second ${ratioWall.toFixed(2)})`,
);

function line(f: Figures): string {
  return METHODS.map((m) => {
    const r = f[m.name];
    const ratios = m.name === 'hmac' ? '' : ` (×${(r.wall / f.hmac.wall).toFixed(2)} wall, ×${(r.cpu / f.hmac.cpu).toFixed(2)} cpu)`;
    return `${m.name} ${fmt(r.wall)}/s wall ${fmt(r.cpu)}/s cpu${ratios}`;
  }).join('  |  ');
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
