import { z } from 'zod';
import { defaulted, integer, optional, rowId, text, userId } from './common.js';
import { ledgerEntrySchema } from '../../operational/schemas.js';

export { billingAccountSchema, creditChangeSchema } from '../../operational/schemas.js';

const reason = optional(text({ max: 200 })).describe('Why, kept in the ledger');

/** `amount` comes from the query (as the original) or the JSON body. */
export const addCreditsQuery = z.object({
  amount: optional(integer()).describe('Credits to add; negative debits'),
  reason,
});
export const addCreditsBody = optional(
  z.object({ amount: optional(integer()).describe('Credits to add; negative debits'), reason }),
);

/** Idempotency-Key: a retry with the same key gets the first answer instead of a second change. */
export const idempotencyHeaders = z
  .object({
    'idempotency-key': optional(text({ max: 255, controls: false })).describe(
      'Up to 255 characters: a retry with the same key (same user, amount, reason) gets the first answer and changes nothing; kept IDEMPOTENCY_KEY_TTL_S (default a day)',
    ),
  })
  .loose();

export const billingParams = z.object({ user_id: userId });

export const ledgerQuery = z.object({
  limit: defaulted(integer().pipe(z.number().min(1).max(1000)), 100).describe('1 to 1000, default 100'),
  before: optional(rowId).describe('Continue below this ledger id (from next_before)'),
});

export const ledgerSchema = z.object({
  user_id: z.string(),
  entries: z.array(ledgerEntrySchema),
  next_before: z.number().int().nullable().describe('Pass as `before` for the next page; null once a page comes back short (a full last page is followed by an empty one)'),
});
