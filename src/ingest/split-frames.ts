import { checkHeader } from '../nanogridata/frame.js';
import type { RejectReason } from '../nanogridata/types.js';

export interface SplitFrames {
  /** The frames, in order; the last may be cut short by the end of the body (the decoder says `truncated`). */
  frames: Buffer[];
  /** Set when a header did not say where its frame ends: that index is rejected and nothing after it is read. */
  unreadable?: { index: number; reason: RejectReason };
  /** Set when bytes remain after `maxFrames` frames: the body is refused whole, and the rest was not read. */
  tooMany?: true;
}

/**
 * Cuts a byte stream of concatenated frames (HTTP body, stream entry) into frames using only their
 * headers, so each frame is fully decoded once, later, in a batch. With `maxFrames`, it stops
 * reading at the first byte past that many frames: a body of 65,536 16-byte frames costs its
 * sender almost nothing, so its refusal must cost the service little too.
 */
export function splitFrames(body: Buffer, maxFrames = Infinity): SplitFrames {
  const frames: Buffer[] = [];
  let offset = 0;
  while (offset < body.length) {
    if (frames.length >= maxFrames) return { frames, tooMany: true };
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
