import { z } from 'zod';
import { idParam, isoTime, textId } from './common.js';

export const registerDeviceBody = z.object({
  device_id: textId,
  owner_id: idParam.nullable().optional().describe('Owning user; null clears it; omitted keeps the current owner'),
  model_id: z.number().int().min(0).max(255).optional(),
  secret: z
    .string()
    .regex(/^(?:[0-9a-fA-F]{2}){32,256}$/, 'must be hex, 32 to 256 bytes')
    .optional()
    .describe("The device's own frame secret (hex, at least 32 bytes); never returned"),
  lab_id: z.string().min(1).max(256).optional(),
});
export type RegisterDeviceBody = z.infer<typeof registerDeviceBody>;

export const deviceSchema = z
  .object({
    device_id: z.string(),
    owner_id: z.number().int().nullable(),
    model_id: z.number().int().nullable(),
    lab_id: z.string().nullable(),
    has_secret: z.boolean(),
    created_at: isoTime,
    last_seen: isoTime.nullable(),
    frames: z.number().int(),
    records: z.number().int(),
  })
  .describe('Device');

export const listDevicesQuery = z.object({
  owner_id: idParam.optional().describe('Admin only: devices of this user'),
});
export const deviceListSchema = z.object({ count: z.number().int(), devices: z.array(deviceSchema) });

export const deviceParams = z.object({ device_id: textId });

export const eventsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  before: idParam.optional(),
});

export const eventsSchema = z.object({
  device_id: z.string(),
  events: z.array(
    z.object({
      id: z.number().int(),
      payload_type: z.number().int(),
      type: z.string(),
      ts: isoTime,
      body: z.record(z.string(), z.unknown()),
      created_at: isoTime,
    }),
  ),
  next_before: z.number().int().nullable(),
});
