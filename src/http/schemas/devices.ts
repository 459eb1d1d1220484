import { z } from 'zod';
import { defaulted, integer, isoTime, optional, rowId, sensorId, text, userId } from './common.js';

export const registerDeviceBody = z.object({
  device_id: sensorId,
  // The one field where null means something: it clears the owner.
  owner_id: userId.nullable().optional().describe('Owning user; null clears it; omitted keeps the current owner'),
  model_id: optional(integer().pipe(z.number().min(0).max(255))),
  secret: optional(z.string().regex(/^(?:[0-9a-fA-F]{2}){32,256}$/, 'must be hex, 32 to 256 bytes')).describe("The device's own frame secret (hex, at least 32 bytes); never returned"),
  lab_id: optional(text({ max: 256 })),
});
export type RegisterDeviceBody = z.infer<typeof registerDeviceBody>;

export const deviceSchema = z
  .object({
    device_id: z.string(),
    owner_id: z.string().nullable(),
    model_id: z.number().int().nullable(),
    lab_id: z.string().nullable(),
    has_secret: z.boolean(),
    created_at: isoTime,
    last_seen: isoTime.nullable(),
    frames: z.number().int(),
    records: z.number().int(),
  })
  .describe('Device');

/** Most devices per page of GET /devices (and its default). */
export const DEVICES_PAGE_MAX = 1000;

export const listDevicesQuery = z.object({
  owner_id: optional(userId).describe('Admin only: devices of this user'),
  limit: defaulted(integer().pipe(z.number().min(1).max(DEVICES_PAGE_MAX)), DEVICES_PAGE_MAX).describe(`1 to ${DEVICES_PAGE_MAX}, default ${DEVICES_PAGE_MAX}`),
  after: optional(sensorId).describe('Continue after this device id (from next_after)'),
});
export const deviceListSchema = z.object({
  count: z.number().int().describe('Devices in this page'),
  devices: z.array(deviceSchema).describe('In device_id order'),
  next_after: z.string().nullable().describe('Pass as `after` for the next page; null at the end'),
});

export const deviceParams = z.object({ device_id: sensorId });

export const conflictListSchema = z
  .object({
    count: z.number().int(),
    conflicts: z.array(
      z.object({
        device_id: z.string(),
        claimed_by: z.string().describe('The user whose JSON ingest (or profile) claimed the sensor, and who keeps it until an admin decides'),
        frames: z.number().int().describe('Frames held (refused claim_conflict) so far'),
        first_at: isoTime,
        last_at: isoTime,
      }),
    ),
  })
  .describe('DeviceConflicts');

export const eventsQuery = z.object({
  limit: defaulted(integer().pipe(z.number().min(1).max(1000)), 100),
  before: optional(rowId),
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
