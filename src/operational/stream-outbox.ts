import type { Db } from './db.js';
import { nowS } from './db.js';

/** A dead letter as it will be added to the dead-letter stream: field names and values, in order. */
export type DeadLetter = Array<[name: string, value: Buffer]>;

export interface OutboxRow {
  id: number;
  stream: string;
  /** Stream entries stored but not yet acknowledged. */
  entryIds: string[];
  /** Dead letters not yet written. */
  deadLetters: DeadLetter[];
}

/**
 * What the stream consumer owes Redis for batches it has stored: the XACK of their entries and
 * their dead letters. Written in the batch's own transaction, so after a crash the consumer knows
 * which redelivered entries are already stored, and dead letters Redis refused (memory full) are
 * kept until they can be written.
 */
export function createStreamOutbox(db: Db) {
  const insert = db.prepare<[string, string, string, number]>('INSERT INTO stream_outbox(stream, entry_ids, dead_letters, created_at) VALUES (?, ?, ?, ?)');
  const all = db.prepare<[string], { id: number; stream: string; entry_ids: string; dead_letters: string }>(
    'SELECT id, stream, entry_ids, dead_letters FROM stream_outbox WHERE stream = ? ORDER BY id',
  );
  const remove = db.prepare<[number]>('DELETE FROM stream_outbox WHERE id = ?');
  const update = db.prepare<[string, string, number]>('UPDATE stream_outbox SET entry_ids = ?, dead_letters = ? WHERE id = ?');

  const encode = (letters: readonly DeadLetter[]) => JSON.stringify(letters.map((l) => l.map(([name, value]) => [name, value.toString('base64')])));
  const decode = (text: string): DeadLetter[] =>
    (JSON.parse(text) as Array<Array<[string, string]>>).map((l) => l.map(([name, value]): [string, Buffer] => [name, Buffer.from(value, 'base64')]));

  return {
    /** Call inside the batch transaction. */
    add(stream: string, entryIds: readonly string[], deadLetters: readonly DeadLetter[]): number {
      return Number(insert.run(stream, JSON.stringify(entryIds), encode(deadLetters), nowS()).lastInsertRowid);
    },
    rows(stream: string): OutboxRow[] {
      return all.all(stream).map((r) => ({ id: r.id, stream: r.stream, entryIds: JSON.parse(r.entry_ids) as string[], deadLetters: decode(r.dead_letters) }));
    },
    /** What is still owed of a row; nothing left removes it. */
    settle(id: number, left: { entryIds: readonly string[]; deadLetters: readonly DeadLetter[] }): void {
      if (left.entryIds.length === 0 && left.deadLetters.length === 0) remove.run(id);
      else update.run(JSON.stringify(left.entryIds), encode(left.deadLetters), id);
    },
  };
}

export type StreamOutbox = ReturnType<typeof createStreamOutbox>;
