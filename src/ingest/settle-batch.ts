import type { DeadLetter } from '../operational/stream-outbox.js';
import type { UnitOutcome } from './pipeline.js';
import type { EntryFields } from './stream-entry.js';

/** One stream entry through the consumer: what it held and what became of each of its messages. */
export interface StreamEntry {
  id: string;
  /** null: deleted or trimmed while it was pending; there is nothing to store. */
  fields: EntryFields | null;
  /** One per message the entry held (parseStreamEntry), in order. */
  outcomes: UnitOutcome[];
}

/** A dead letter keeps at most this much of each original field (the entry itself may be up to 1 MiB). */
export const DEAD_LETTER_FIELD_BYTES = 64 * 1024;

/**
 * What a stored batch owes the stream: every entry is acknowledged (stored, rejected or empty,
 * each has been dealt with), and each rejected message becomes one dead letter with its reason,
 * the entry's id, the message's position in it and the entry's original fields.
 */
export function settleBatch(entries: readonly StreamEntry[]): { ack: string[]; deadLetters: DeadLetter[] } {
  const deadLetters: DeadLetter[] = [];
  for (const entry of entries) {
    entry.outcomes.forEach((outcome, unit) => {
      if (outcome.ok) return;
      const letter: DeadLetter = [
        ['reason', Buffer.from(outcome.reason)],
        ['source_id', Buffer.from(entry.id)],
        ['unit', Buffer.from(String(unit))],
      ];
      if (outcome.detail !== undefined) letter.push(['detail', Buffer.from(outcome.detail.slice(0, 1000))]);
      const cut: string[] = [];
      for (const [name, value] of entry.fields ?? []) {
        if (value.length > DEAD_LETTER_FIELD_BYTES) cut.push(name);
        letter.push([name, value.length > DEAD_LETTER_FIELD_BYTES ? value.subarray(0, DEAD_LETTER_FIELD_BYTES) : value]);
      }
      if (cut.length > 0) letter.push(['truncated', Buffer.from(cut.join(','))]);
      deadLetters.push(letter);
    });
  }
  return { ack: entries.map((e) => e.id), deadLetters };
}
