import { checkHeader } from '../nanogridata/frame.js';
import type { RejectReason } from '../nanogridata/types.js';

export interface SplitFrames {
  /** The frames, in order; the last may be cut short by the end of the body (the decoder says `truncated`). */
  frames: Buffer[];
  /** Set when a header did not say where its frame ends: that index is rejected and nothing after it is read. */
  unreadable?: { index: number; reason: RejectReason };
}

/**
 * Cuts a byte stream of concatenated frames (HTTP body, stream entry) into frames using only their
 * headers, so each frame is fully decoded once, later, in a batch.
 */
export function splitFrames(body: Buffer): SplitFrames {
  const frames: Buffer[] = [];
  let offset = 0;
  while (offset < body.length) {
    const rest = body.subarray(offset);
    const header = checkHeader(rest);
    if (header.frameLength === undefined) {
      return { frames, unreadable: { index: frames.length, reason: header.ok ? 'truncated' : header.reason } };
    }
    frames.push(rest.subarray(0, header.frameLength));
    offset += header.frameLength;
  }
  return { frames };
}
