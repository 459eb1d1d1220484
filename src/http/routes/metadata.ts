import type { RoutePlugin } from '../../app.js';
import { BadRequestError, NotFoundError } from '../../errors.js';
import { errors } from '../schemas/common.js';
import {
  metadataEntrySchema,
  metadataParams,
  profileParams,
  profileSchema,
  setMetadataBody,
  setMetadataQuery,
  setMetadataResponse,
  storeProfileBody,
  storeProfileResponse,
} from '../schemas/metadata.js';

/** Key-value metadata (admin writes, users read) and sensor profiles (a user's own sensors only). */
export const metadataRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { metadata } = deps.store;

  app.post(
    '/metadata/:key',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Set a metadata value (JSON {value} or ?value=)',
        tags: ['metadata'],
        params: metadataParams,
        querystring: setMetadataQuery,
        body: setMetadataBody,
        response: { 200: setMetadataResponse, ...errors(400, 401, 403) },
      },
    },
    async (request) => {
      const { key } = request.params;
      const fromBody = request.body != null;
      const fromQuery = request.query.value !== undefined;
      if (fromBody && fromQuery) throw new BadRequestError('value given twice (query and body)');
      if (!fromBody && !fromQuery) throw new BadRequestError('value is required (JSON {value} or ?value=)');
      metadata.set(key, fromBody ? request.body!.value : request.query.value);
      return { key, set: true as const };
    },
  );

  app.get(
    '/metadata/:key',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: 'Get a metadata value',
        tags: ['metadata'],
        params: metadataParams,
        response: { 200: metadataEntrySchema, ...errors(400, 401, 404) },
      },
    },
    async (request) => {
      const entry = metadata.get(request.params.key);
      if (!entry) throw new NotFoundError(`metadata key '${request.params.key}' not found`);
      return entry;
    },
  );

  app.post(
    '/profiles/store',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: "Store (or replace) a profile for one of the caller's sensors",
        tags: ['profiles'],
        body: storeProfileBody,
        response: { 200: storeProfileResponse, ...errors(400, 401, 403) },
      },
    },
    async (request) => {
      const { body } = request;
      auth.assertSensor(request, body.sensor_id);
      // Replacing a profile also needs access to the sensor it described.
      const existing = metadata.getProfile(body.profile_id);
      if (existing && existing.sensor_id !== body.sensor_id) auth.assertSensor(request, existing.sensor_id);
      metadata.storeProfile({
        profile_id: body.profile_id,
        sensor_id: body.sensor_id,
        metadata: body.metadata,
        ...(body.timestamp !== undefined ? { timestamp: body.timestamp } : {}),
      });
      return { profile_id: body.profile_id, stored: true as const };
    },
  );

  app.get(
    '/profiles/:profile_id',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: "Get a profile (of one of the caller's sensors)",
        tags: ['profiles'],
        params: profileParams,
        response: { 200: profileSchema, ...errors(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const profile = metadata.getProfile(request.params.profile_id);
      if (!profile) throw new NotFoundError(`profile '${request.params.profile_id}' not found`);
      auth.assertSensor(request, profile.sensor_id);
      return profile;
    },
  );
};
