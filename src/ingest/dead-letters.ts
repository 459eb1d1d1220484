import type { UnitOutcome } from './pipeline.js';
import type { EntryFields } from './stream-entry.js';

/** A dead letter's fields, in order. */
export type DeadLetter = Array<[name: string, value: Buffer]>;

/** One stream entry: its id, its fields (null: deleted while pending) and how many units it held. */
export interface Entry {
  id: string;
  fields: EntryFields | null;
  units: number;
}

/** A dead letter keeps at most this much of each original field (the entry itself may be up to 1 MiB). */
export const DEAD_LETTER_FIELD_BYTES = 64 * 1024;

/**
 * A dead letter per rejected unit of an entry: the reason, the entry's id, the unit's position in
 * it and the entry's original fields (each cut at DEAD_LETTER_FIELD_BYTES).
 */
export function deadLettersOf(entry: Entry, outcomes: readonly UnitOutcome[]): DeadLetter[] {
  const letters: DeadLetter[] = [];
  outcomes.forEach((outcome, unit) => {
    if (outcome.ok) return;
    const letter: DeadLetter = [
      ['reason', Buffer.from(outcome.reason)],
      ['source_id', Buffer.from(entry.id)],
      ['unit', Buffer.from(String(unit))],
    ];
    if (outcome.detail !== undefined) letter.push(['detail', Buffer.from(outcome.detail.slice(0, 1000))]);
    const cut: string[] = [];
    const fields = entry.fields ?? [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const name = fields[i]!.toString();
      const value = fields[i + 1]!;
      if (value.length > DEAD_LETTER_FIELD_BYTES) cut.push(name);
      letter.push([name, value.length > DEAD_LETTER_FIELD_BYTES ? value.subarray(0, DEAD_LETTER_FIELD_BYTES) : value]);
    }
    if (cut.length > 0) letter.push(['truncated', Buffer.from(cut.join(','))]);
    letters.push(letter);
  });
  return letters;
}

