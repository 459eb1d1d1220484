import { describe, expect, it } from 'vitest';
import { DEAD_LETTER_FIELD_BYTES, deadLettersOf } from '../../src/ingest/dead-letters.js';

const fields = (...pairs: Array<[string, string | Buffer]>) => pairs.flatMap(([k, v]) => [Buffer.from(k), Buffer.isBuffer(v) ? v : Buffer.from(v)]);
const text = (letter: Array<[string, Buffer]>) => letter.map(([name, value]) => [name, value.toString()]);

describe('dead letters of a committed entry', () => {
  it('has one per rejected message with its reason, entry id, position, detail and the original fields', () => {
    const a = deadLettersOf({ id: '5-0', fields: fields(['frame', 'ab'], ['device_id', 'D1']), units: 2 }, [{ ok: true, records: 1 }, { ok: false, reason: 'replay' }]);
    const b = deadLettersOf({ id: '5-1', fields: fields(['sensor_id', 'S'], ['data', '{"v":1e300}']), units: 1 }, [
      { ok: false, reason: 'bad_reading', detail: 'value of "v" is outside ±1e15' },
    ]);
    expect([...a, ...b].map(text)).toEqual([
      [['reason', 'replay'], ['source_id', '5-0'], ['unit', '1'], ['frame', 'ab'], ['device_id', 'D1']],
      [['reason', 'bad_reading'], ['source_id', '5-1'], ['unit', '0'], ['detail', 'value of "v" is outside ±1e15'], ['sensor_id', 'S'], ['data', '{"v":1e300}']],
    ]);
  });

  it('keeps a bounded copy of a huge field and says which fields were cut', () => {
    const huge = Buffer.alloc(DEAD_LETTER_FIELD_BYTES * 3, 1);
    const [letter] = deadLettersOf({ id: '9-0', fields: fields(['frame', huge], ['device_id', 'D']), units: 1 }, [{ ok: false, reason: 'entry_too_large' }]);
    expect(letter!.find(([n]) => n === 'frame')![1].length).toBe(DEAD_LETTER_FIELD_BYTES);
    expect(letter!.find(([n]) => n === 'truncated')![1].toString()).toBe('frame');
  });

  it('has none when everything was stored, or the entry was deleted while pending', () => {
    expect(deadLettersOf({ id: '2-0', fields: fields(['frame', 'x']), units: 1 }, [{ ok: true, records: 1 }])).toEqual([]);
    expect(deadLettersOf({ id: '2-1', fields: null, units: 0 }, [])).toEqual([]);
  });
});
