import { z } from 'zod';
import { isoTime } from '../fields.js';

/**
 * The shapes the operational store answers, declared once: the stores return z.infer of these,
 * the HTTP layer uses them as response schemas (keys of the original first, ours beside them).
 */

export const userSchema = z
  .object({
    id: z.string().describe('UUID'),
    username: z.string(),
    email: z.string(),
    created_at: isoTime,
    updated_at: isoTime,
    status: z.literal('active'),
  })
  .describe('User');
export type User = z.infer<typeof userSchema>;

export const billingAccountSchema = z
  .object({
    id: z.string().describe("The billing row's own id (UUID)"),
    user_id: z.string(),
    plan: z.string(),
    credits: z.number().int(),
    usage: z.number().int().describe('Measurement records ingested'),
    created_at: isoTime,
    updated_at: isoTime,
  })
  .describe('BillingAccount');
export type BillingAccount = z.infer<typeof billingAccountSchema>;

export const creditChangeSchema = z
  .object({
    user_id: z.string(),
    credits: z.number().int().describe('Balance after the change'),
    delta: z.number().int(),
    ledger_id: z.number().int(),
  })
  .describe('CreditChange');
export type CreditChange = z.infer<typeof creditChangeSchema>;

export const ledgerEntrySchema = z.object({
  id: z.number().int(),
  delta: z.number().int(),
  balance_after: z.number().int(),
  reason: z.string().nullable(),
  created_at: isoTime,
});
export type LedgerEntry = z.infer<typeof ledgerEntrySchema>;

export const createdSessionSchema = z
  .object({
    session_id: z.string(),
    token: z.string().describe('Shown once; only its SHA-256 is stored'),
    expires_at: isoTime,
  })
  .describe('CreatedSession');
export type CreatedSession = z.infer<typeof createdSessionSchema>;

export const sessionSchema = z
  .object({
    id: z.string().describe('Session id (UUID)'),
    user_id: z.string(),
    created_at: isoTime,
    expires_at: isoTime,
    last_activity: isoTime.describe('Last validation or use, to the minute'),
    session_id: z.string().describe('Same as id'),
    username: z.string(),
  })
  .describe('Session');
export type Session = z.infer<typeof sessionSchema>;

export const metadataEntrySchema = z
  .object({
    key: z.string(),
    value: z.unknown().describe('The text stored (from ?value=), or the JSON value stored (from a JSON body)'),
    updated_at: isoTime,
  })
  .describe('MetadataEntry');
export type MetadataEntry = z.infer<typeof metadataEntrySchema>;

export const profileSchema = z
  .object({
    sensor_id: z.string(),
    timestamp: isoTime,
    metadata: z.record(z.string(), z.unknown()),
    profile_id: z.string(),
  })
  .describe('Profile');
export type Profile = z.infer<typeof profileSchema>;
