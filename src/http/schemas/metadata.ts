import { z } from 'zod';
import { optional, sensorId, shallowJson, text, textId, timestampInput } from './common.js';

export { metadataEntrySchema, profileSchema } from '../../operational/schemas.js';

export const metadataParams = z.object({ key: textId });

/** The value as `?value=` (text, as the original) or JSON `{value}` (any JSON but null). */
export const setMetadataBody = optional(z.object({ value: shallowJson(z.unknown(), 'value').optional().describe('Any JSON value; null counts as absent') }));
export const setMetadataQuery = z.object({ value: optional(text({ min: 0, max: 65536 })).describe('The text to store') });

export const setMetadataResponse = z.object({ key: z.string(), set: z.literal(true) });

export const storeProfileBody = z.object({
  profile_id: textId,
  sensor_id: sensorId,
  timestamp: optional(timestampInput).describe('Unix seconds or ISO 8601; default now'),
  metadata: shallowJson(z.record(z.string(), z.unknown()), 'metadata'),
});
export type StoreProfileBody = z.infer<typeof storeProfileBody>;

export const storeProfileResponse = z.object({ profile_id: z.string(), stored: z.literal(true) });

export const profileParams = z.object({ profile_id: textId });
