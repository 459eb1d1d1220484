import { describe, expect, it } from 'vitest';
import { DEAD_LETTER_FIELD_BYTES, settleBatch, type StreamEntry } from '../../src/ingest/settle-batch.js';

const fields = (...pairs: Array<[string, string | Buffer]>) => new Map(pairs.map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(v)]));
const text = (letter: Array<[string, Buffer]>) => letter.map(([name, value]) => [name, value.toString()]);

describe('what a stored batch owes the stream', () => {
  it('acknowledges every entry of the batch, stored, rejected or empty', () => {
    const entries: StreamEntry[] = [
      { id: '1-0', fields: fields(['frame', 'x']), outcomes: [{ ok: true, records: 2 }] },
      { id: '1-1', fields: fields(['frame', 'y']), outcomes: [{ ok: false, reason: 'bad_mac' }] },
      { id: '1-2', fields: null, outcomes: [] },
      { id: '1-3', fields: fields(['frame', 'z']), outcomes: [] },
    ];
    expect(settleBatch(entries).ack).toEqual(['1-0', '1-1', '1-2', '1-3']);
  });

  it('dead-letters each rejected message with its reason, entry id, position, detail and the original fields', () => {
    const { deadLetters } = settleBatch([
      { id: '5-0', fields: fields(['frame', 'ab'], ['device_id', 'D1']), outcomes: [{ ok: true, records: 1 }, { ok: false, reason: 'replay' }] },
      { id: '5-1', fields: fields(['sensor_id', 'S'], ['data', '{"v":1e300}']), outcomes: [{ ok: false, reason: 'bad_reading', detail: 'value of "v" is outside ±1e15' }] },
    ]);
    expect(deadLetters.map(text)).toEqual([
      [['reason', 'replay'], ['source_id', '5-0'], ['unit', '1'], ['frame', 'ab'], ['device_id', 'D1']],
      [['reason', 'bad_reading'], ['source_id', '5-1'], ['unit', '0'], ['detail', 'value of "v" is outside ±1e15'], ['sensor_id', 'S'], ['data', '{"v":1e300}']],
    ]);
  });

  it('keeps a bounded copy of a huge field and says which fields were cut', () => {
    const huge = Buffer.alloc(DEAD_LETTER_FIELD_BYTES * 3, 1);
    const [letter] = settleBatch([{ id: '9-0', fields: fields(['frame', huge], ['device_id', 'D']), outcomes: [{ ok: false, reason: 'entry_too_large' }] }]).deadLetters;
    expect(letter!.find(([n]) => n === 'frame')![1].length).toBe(DEAD_LETTER_FIELD_BYTES);
    expect(letter!.find(([n]) => n === 'truncated')![1].toString()).toBe('frame');
  });

  it('owes no dead letter when everything was stored', () => {
    expect(settleBatch([{ id: '2-0', fields: fields(['frame', 'x']), outcomes: [{ ok: true, records: 1 }] }]).deadLetters).toEqual([]);
  });
});
