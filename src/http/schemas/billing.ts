import { z } from 'zod';
import { idParam, isoTime } from './common.js';

const amount = z.number().int().describe('Credits to add; negative debits');
const reason = z.string().max(200).optional().describe('Why, kept in the ledger');

/** `amount` comes from the query (as the original) or the JSON body. */
export const addCreditsQuery = z.object({
  amount: z.coerce.number().int().optional().describe('Credits to add; negative debits'),
  reason,
});
export const addCreditsBody = z.object({ amount, reason }).nullish();

export const billingParams = z.object({ user_id: idParam });

export const creditChangeSchema = z.object({
  user_id: z.number().int(),
  delta: z.number().int(),
  credits: z.number().int().describe('Balance after the change'),
  ledger_id: z.number().int(),
});

export const billingAccountSchema = z
  .object({
    user_id: z.number().int(),
    plan: z.string(),
    credits: z.number().int(),
    usage: z.number().int().describe('Measurement records ingested'),
    updated_at: isoTime,
  })
  .describe('BillingAccount');

export const ledgerQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  before: idParam.optional().describe('Continue below this ledger id (from next_before)'),
});

export const ledgerSchema = z.object({
  user_id: z.number().int(),
  entries: z.array(
    z.object({
      id: z.number().int(),
      delta: z.number().int(),
      balance_after: z.number().int(),
      reason: z.string().nullable(),
      created_at: isoTime,
    }),
  ),
  next_before: z.number().int().nullable().describe('Pass as `before` for the next page; null at the end'),
});
