import type { IngestUnit } from './pipeline.js';
import { parseReadingFields } from './reading.js';
import { splitFrames } from './split-frames.js';

/** An entry's fields as Redis gives them: name, value, name, value, … (no Map or string per entry). */
export type EntryFields = readonly Buffer[];

const FRAME = Buffer.from('frame');
const FRAME_HEX = Buffer.from('frame_hex');
const DEVICE_ID = Buffer.from('device_id');
const SENSOR_ID = Buffer.from('sensor_id');
const DATA = Buffer.from('data');
const TIMESTAMP = Buffer.from('timestamp');

/** The value of the field `name` (the last one, should an entry repeat a name), or undefined. */
function fieldOf(fields: EntryFields, name: Buffer): Buffer | undefined {
  let value: Buffer | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.equals(name)) value = fields[i + 1];
  return value;
}

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
  for (const part of fields) size += part.length;
  if (size > MAX_ENTRY_BYTES) return [{ kind: 'invalid', reason: 'entry_too_large' }];
  const frame = fieldOf(fields, FRAME);
  const frameHex = fieldOf(fields, FRAME_HEX)?.toString('latin1').trim();
  if (frame !== undefined || frameHex !== undefined) {
    let bytes: Buffer;
    if (frame !== undefined) bytes = frame;
    else if (HEX.test(frameHex!)) bytes = Buffer.from(frameHex!, 'hex');
    else return [{ kind: 'invalid', reason: 'bad_hex' }];
    if (bytes.length === 0) return [{ kind: 'invalid', reason: 'truncated' }];
    const deviceId = fieldOf(fields, DEVICE_ID)?.toString('utf8');
    const { frames, unreadable } = splitFrames(bytes);
    const units: IngestUnit[] = frames.map((bytes) => ({ kind: 'frame', bytes, ...(deviceId !== undefined ? { deviceId } : {}) }));
    if (unreadable) units.push({ kind: 'invalid', reason: unreadable.reason });
    return units;
  }
  const sensorId = fieldOf(fields, SENSOR_ID);
  if (sensorId !== undefined) {
    const parsed = parseReadingFields({
      sensor_id: sensorId.toString('utf8'),
      data: fieldOf(fields, DATA)?.toString('utf8'),
      timestamp: fieldOf(fields, TIMESTAMP)?.toString('utf8'),
    });
    return parsed.ok ? [{ kind: 'reading', reading: parsed.reading }] : [{ kind: 'invalid', reason: 'bad_reading', detail: parsed.message }];
  }
  return [{ kind: 'invalid', reason: 'bad_entry' }];
}
