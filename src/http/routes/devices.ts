import type { RoutePlugin } from '../../app.js';
import { ForbiddenError, NotFoundError } from '../../errors.js';
import type { Device } from '../../operational/devices.js';
import { isoFromS } from '../../operational/time.js';
import { errors } from '../schemas/common.js';
import {
  conflictListSchema,
  deviceListSchema,
  deviceParams,
  deviceSchema,
  eventsQuery,
  eventsSchema,
  listDevicesQuery,
  registerDeviceBody,
} from '../schemas/devices.js';

const toJson = (d: Device) => ({
  device_id: d.device_id,
  owner_id: d.owner_id,
  model_id: d.model_id,
  lab_id: d.lab_id,
  has_secret: d.has_secret,
  created_at: isoFromS(d.created_at),
  last_seen: d.last_seen === null ? null : isoFromS(d.last_seen),
  frames: d.frames,
  records: d.records,
});

/** Devices (= sensors): the admin registers them with an owner and optionally their own frame secret. */
export const devicesRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { devices, deviceEvents, users } = deps.store;

  app.post(
    '/devices',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Register a device or update its owner, model, lab or secret (the secret is never returned)',
        tags: ['devices'],
        body: registerDeviceBody,
        // 200 for a new device too, as every create of the original.
        response: { 200: deviceSchema, ...errors(401, 403, 404, 422) },
      },
    },
    async (request) => {
      const body = request.body;
      if (body.owner_id != null && !(await users.get(body.owner_id))) throw new NotFoundError(`user ${body.owner_id} not found`);
      const existingOwner = await devices.ownerOf(body.device_id);
      const ownerId = body.owner_id !== undefined ? body.owner_id : (existingOwner ?? null);
      const device = await devices.register({
        deviceId: body.device_id,
        ownerId,
        ...(body.model_id !== undefined ? { modelId: body.model_id } : {}),
        ...(body.secret !== undefined ? { secret: Buffer.from(body.secret, 'hex') } : {}),
        ...(body.lab_id !== undefined ? { labId: body.lab_id } : {}),
      });
      return toJson(device);
    },
  );

  app.get(
    '/devices',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: "List devices: the caller's own (admin: all, or one owner's), in device_id order, a page at a time (limit, after)",
        tags: ['devices'],
        querystring: listDevicesQuery,
        response: { 200: deviceListSchema, ...errors(401, 403, 422) },
      },
    },
    async (request) => {
      const p = request.principal!;
      const { owner_id, limit, after } = request.query;
      if (p.kind === 'user' && owner_id !== undefined && owner_id !== p.userId) {
        throw new ForbiddenError(`not allowed to list the devices of user ${owner_id}`);
      }
      // One more than asked tells whether another page follows.
      const page = await devices.page(p.kind === 'user' ? p.userId : owner_id, after ?? '', limit + 1);
      const list = page.slice(0, limit).map(toJson);
      return { count: list.length, devices: list, next_after: page.length > limit ? list[list.length - 1]!.device_id : null };
    },
  );

  app.get(
    '/device-conflicts',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary:
          "Sensors a user claimed by JSON for which frames arrived: the frames are held (claim_conflict) until an admin registers the device (POST /devices); giving it to another party purges the claimant's readings",
        tags: ['devices'],
        response: { 200: conflictListSchema, ...errors(401, 403) },
      },
    },
    async () => {
      const conflicts = (await devices.conflicts()).map((c) => ({ ...c, first_at: isoFromS(c.first_at), last_at: isoFromS(c.last_at) }));
      return { count: conflicts.length, conflicts };
    },
  );

  app.get(
    '/devices/:device_id',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Get a device (its owner or admin)',
        tags: ['devices'],
        params: deviceParams,
        response: { 200: deviceSchema, ...errors(401, 403, 404, 422) },
      },
    },
    async (request) => {
      const { device_id } = request.params;
      await auth.assertSensor(request, device_id);
      const device = await devices.get(device_id);
      if (!device) throw new NotFoundError(`device '${device_id}' not found`);
      return toJson(device);
    },
  );

  app.get(
    '/devices/:device_id/events',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: "A device's non-telemetry frames (event, config, command, calibration), newest first",
        tags: ['devices'],
        params: deviceParams,
        querystring: eventsQuery,
        response: { 200: eventsSchema, ...errors(401, 403, 404, 422) },
      },
    },
    async (request) => {
      const { device_id } = request.params;
      await auth.assertSensor(request, device_id);
      if (!(await devices.get(device_id))) throw new NotFoundError(`device '${device_id}' not found`);
      const { limit, before } = request.query;
      const events = (await deviceEvents.list(device_id, before === undefined ? { limit } : { limit, before })).map(({ device_id: _d, ...e }) => e);
      return { device_id, events, next_before: events.length === limit ? events[events.length - 1]!.id : null };
    },
  );
};
