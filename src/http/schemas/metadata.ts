import { z } from 'zod';
import { isoTime, textId, timestampInput } from './common.js';

export const metadataParams = z.object({ key: textId });

/** The value as JSON `{value}` (any JSON) or `?value=` (text, as the original). */
export const setMetadataBody = z.object({ value: z.unknown() }).nullish();
export const setMetadataQuery = z.object({ value: z.string().max(65536).optional() });

export const setMetadataResponse = z.object({ key: z.string(), set: z.literal(true) });
export const metadataEntrySchema = z.object({ key: z.string(), value: z.unknown(), updated_at: isoTime });

export const storeProfileBody = z.object({
  profile_id: textId,
  sensor_id: textId,
  timestamp: timestampInput.optional(),
  metadata: z.record(z.string(), z.unknown()),
});
export type StoreProfileBody = z.infer<typeof storeProfileBody>;

export const storeProfileResponse = z.object({ profile_id: z.string(), stored: z.literal(true) });

export const profileParams = z.object({ profile_id: textId });
export const profileSchema = z.object({
  profile_id: z.string(),
  sensor_id: z.string(),
  timestamp: isoTime,
  metadata: z.record(z.string(), z.unknown()),
});
