import { parseReadingFields } from './reading.js';
import type { IngestUnit } from './pipeline.js';
import { splitFrames } from './split-frames.js';

export type EntryFields = Map<string, Buffer>;

const HEX = /^(?:[0-9a-fA-F]{2})+$/;

/**
 * Turns one stream entry into pipeline units. An entry carries either frame bytes (`frame`, binary,
 * or `frame_hex`), optionally with the sending `device_id`, or a JSON reading (`sensor_id`, `data`,
 * `timestamp`). Several concatenated frames in one entry are allowed; each gets its own unit whose
 * message id (entry id + position) is the same on every redelivery.
 */
export function parseStreamEntry(entryId: string, fields: EntryFields): IngestUnit[] {
  const sourceId = `stream:${entryId}`;
  const frame = fields.get('frame');
  const frameHex = fields.get('frame_hex')?.toString('latin1').trim();
  if (frame !== undefined || frameHex !== undefined) {
    let bytes: Buffer;
    if (frame !== undefined) bytes = frame;
    else if (HEX.test(frameHex!)) bytes = Buffer.from(frameHex!, 'hex');
    else return [{ kind: 'invalid', sourceId, reason: 'bad_hex' }];
    if (bytes.length === 0) return [{ kind: 'invalid', sourceId, reason: 'truncated' }];
    const deviceId = fields.get('device_id')?.toString('utf8');
    const { frames, unreadable } = splitFrames(bytes);
    const units: IngestUnit[] = frames.map((bytes, i) => ({
      kind: 'frame',
      sourceId: `${sourceId}/${i}`,
      messageId: `${entryId}/${i}`,
      bytes,
      ...(deviceId !== undefined ? { deviceId } : {}),
    }));
    if (unreadable) units.push({ kind: 'invalid', sourceId: `${sourceId}/${unreadable.index}`, reason: unreadable.reason });
    return units;
  }
  if (fields.has('sensor_id')) {
    const parsed = parseReadingFields({
      sensor_id: fields.get('sensor_id')?.toString('utf8'),
      data: fields.get('data')?.toString('utf8'),
      timestamp: fields.get('timestamp')?.toString('utf8'),
    });
    return parsed.ok
      ? [{ kind: 'reading', sourceId, reading: parsed.reading }]
      : [{ kind: 'invalid', sourceId, reason: 'bad_reading' }];
  }
  return [{ kind: 'invalid', sourceId, reason: 'bad_entry' }];
}
