/** The frames the stream benchmarks (bench:ingest, bench:pg-ingest) drain, and how they are loaded. */
import type { Redis } from 'ioredis';
import { encodeFrame, pressurePayload } from '../src/nanogridata/encoder.js';

/** Frames of 1 to 5 entries (3 on average), levels 1 and 2 alternately, 1,000 devices, all in the drift window. */
export function makeFrames(count: number, secret: Buffer): { frames: Buffer[]; records: number } {
  const now = Math.floor(Date.now() / 1000);
  const frames: Buffer[] = [];
  let records = 0;
  for (let i = 0; i < count; i++) {
    const n = 1 + (i % 5);
    const entries = Array.from({ length: n }, (_, k) => ({ ts: now - 60 + (i % 60) + k / 10, value: 100_000 + i * 3 + k }));
    frames.push(encodeFrame({ modelId: 0x10, level: 1 + (i % 2), timestamp: now, secret, payload: pressurePayload({ deviceId: `P-${i % 1000}`, labId: 'LAB-1', entries }) }));
    records += n;
  }
  return { frames, records };
}

/** XADDs the frames; the id of the last entry. */
export async function load(redis: Redis, stream: string, frames: Buffer[]): Promise<string> {
  let last = '';
  for (let i = 0; i < frames.length; i += 5000) {
    const pipeline = redis.pipeline();
    for (const frame of frames.slice(i, i + 5000)) pipeline.xadd(stream, '*', 'frame', frame);
    const results = (await pipeline.exec()) ?? [];
    last = String(results[results.length - 1]![1]);
  }
  return last;
}

