/** Frame authentication: CRC-16/CCITT-FALSE for level 0, HMAC-SHA256 (16 or 32 bytes) for levels 1–3. */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MAC_SIZES } from './frame.js';

const CRC_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    table[i] = c;
  }
  return table;
})();

/** CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of `buf[start..end)`. */
export function crc16CcittFalse(buf: Uint8Array, start = 0, end = buf.length): number {
  let crc = 0xffff;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ buf[i]!) & 0xff]!;
  return crc;
}

/** The MAC bytes a frame of `level` carries for `signed` (header ‖ payload). */
export function computeMac(level: number, signed: Buffer, secret?: Buffer): Buffer {
  if (level === 0) {
    const out = Buffer.allocUnsafe(2);
    out.writeUInt16BE(crc16CcittFalse(signed), 0);
    return out;
  }
  if (!secret) throw new Error(`security level ${level} needs a secret`);
  const digest = createHmac('sha256', secret).update(signed).digest();
  return level === 1 ? digest.subarray(0, 16) : digest;
}

/**
 * Whether `frame[macStart..)` holds the right MAC for `frame[0..macStart)`. Constant-time for the
 * HMAC levels so a forger cannot learn the MAC byte by byte from response timing.
 */
export function verifyMac(level: number, frame: Buffer, macStart: number, secret?: Buffer): boolean {
  if (level === 0) return crc16CcittFalse(frame, 0, macStart) === frame.readUInt16BE(macStart);
  if (!secret) return false;
  const size = MAC_SIZES[level]!;
  const digest = createHmac('sha256', secret).update(frame.subarray(0, macStart)).digest();
  // Plain Uint8Array views: cheaper to make than Buffer subarrays, and all timingSafeEqual needs.
  return timingSafeEqual(
    new Uint8Array(digest.buffer, digest.byteOffset, size),
    new Uint8Array(frame.buffer, frame.byteOffset + macStart, size),
  );
}
