import type { ReplayItem } from '../nanogridata/types.js';

/**
 * Frames are remembered in slices of their header time. A copy of a frame has the same header
 * time, so one slice is all a check looks at, and a slice is forgotten whole once every time in
 * it has left the drift window.
 */
export const SLICE_S = 10;

export const sliceOf = (item: ReplayItem): number => Math.floor(item.timestamp / SLICE_S);

/** When a slice may be forgotten (Unix seconds): its last second plus the drift window. */
export const sliceExpiresAt = (slice: number, maxDriftS: number): number => (slice + 1) * SLICE_S + maxDriftS;

/** Items as they are kept durably until the shared memory has them: u32 timestamp + fingerprint, each. */
export const ITEM_BYTES = 12;

export function packItems(items: readonly ReplayItem[]): Buffer {
  const out = Buffer.allocUnsafe(items.length * ITEM_BYTES);
  items.forEach((item, i) => {
    out.writeUInt32BE(item.timestamp >>> 0, i * ITEM_BYTES);
    item.fingerprint.copy(out, i * ITEM_BYTES + 4, 0, 8);
  });
  return out;
}

export function unpackItems(blob: Buffer): ReplayItem[] {
  const items: ReplayItem[] = [];
  for (let at = 0; at + ITEM_BYTES <= blob.length; at += ITEM_BYTES) {
    items.push({ timestamp: blob.readUInt32BE(at), fingerprint: Buffer.from(blob.subarray(at + 4, at + ITEM_BYTES)) });
  }
  return items;
}

/** A key per remembered frame for in-process sets: slice and fingerprint. */
export const itemKey = (item: ReplayItem): string => `${sliceOf(item)}:${item.fingerprint.toString('latin1')}`;
