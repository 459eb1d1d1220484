import type { IngestUnit } from './pipeline.js';
import { parseReadingFields } from './reading.js';
import { splitFrames } from './split-frames.js';

export type EntryFields = Map<string, Buffer>;

const HEX = /^(?:[0-9a-fA-F]{2})+$/;
/** An entry bigger than this is dead-lettered unread (a frame body is at most 1 MiB over HTTP, too). */
export const MAX_ENTRY_BYTES = 1024 * 1024;

/**
 * Turns one stream entry into pipeline units. An entry carries either frame bytes (`frame`, binary,
 * or `frame_hex`), optionally with the sending `device_id`, or a JSON reading (`sensor_id`, `data`,
 * `timestamp`). Several concatenated frames in one entry are allowed; each is its own unit.
 */
export function parseStreamEntry(fields: EntryFields): IngestUnit[] {
  let size = 0;
  for (const [name, value] of fields) size += name.length + value.length;
  if (size > MAX_ENTRY_BYTES) return [{ kind: 'invalid', reason: 'entry_too_large' }];
  const frame = fields.get('frame');
  const frameHex = fields.get('frame_hex')?.toString('latin1').trim();
  if (frame !== undefined || frameHex !== undefined) {
    let bytes: Buffer;
    if (frame !== undefined) bytes = frame;
    else if (HEX.test(frameHex!)) bytes = Buffer.from(frameHex!, 'hex');
    else return [{ kind: 'invalid', reason: 'bad_hex' }];
    if (bytes.length === 0) return [{ kind: 'invalid', reason: 'truncated' }];
    const deviceId = fields.get('device_id')?.toString('utf8');
    const { frames, unreadable } = splitFrames(bytes);
    const units: IngestUnit[] = frames.map((bytes) => ({ kind: 'frame', bytes, ...(deviceId !== undefined ? { deviceId } : {}) }));
    if (unreadable) units.push({ kind: 'invalid', reason: unreadable.reason });
    return units;
  }
  if (fields.has('sensor_id')) {
    const parsed = parseReadingFields({
      sensor_id: fields.get('sensor_id')?.toString('utf8'),
      data: fields.get('data')?.toString('utf8'),
      timestamp: fields.get('timestamp')?.toString('utf8'),
    });
    return parsed.ok ? [{ kind: 'reading', reading: parsed.reading }] : [{ kind: 'invalid', reason: 'bad_reading', detail: parsed.message }];
  }
  return [{ kind: 'invalid', reason: 'bad_entry' }];
}
