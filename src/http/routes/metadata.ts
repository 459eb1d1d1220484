import type { RoutePlugin } from '../../app.js';
import { BadRequestError, ForbiddenError, NotFoundError, ValidationError } from '../../errors.js';
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

/** A profile of a sensor the caller may not reach: the 403 names only the profile the caller asked for, never that sensor. */
const profileRefused = (profileId: string) => new ForbiddenError(`not allowed to access profile ${profileId}`);

/** Key-value metadata (admin writes, users read) and sensor profiles (a user's own sensors only). */
export const metadataRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { metadata } = deps.store;

  app.post(
    '/metadata/:key',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Set a metadata value (?value= text, or JSON {value})',
        tags: ['metadata'],
        params: metadataParams,
        querystring: setMetadataQuery,
        body: setMetadataBody,
        response: { 200: setMetadataResponse, ...errors(400, 401, 403, 422) },
      },
    },
    async (request) => {
      const { key } = request.params;
      const bodyValue = request.body?.value ?? undefined; // null is absent, as everywhere
      const queryValue = request.query.value;
      if (bodyValue !== undefined && queryValue !== undefined) throw new BadRequestError('value given twice (query and body)');
      // Required, as in the original; the schema leaves it optional because it may come from either place.
      if (bodyValue === undefined && queryValue === undefined) throw ValidationError.missing('query', 'value');
      await metadata.set(key, bodyValue !== undefined ? bodyValue : queryValue);
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
        response: { 200: metadataEntrySchema, ...errors(401, 404, 422) },
      },
    },
    async (request) => {
      const entry = await metadata.get(request.params.key);
      if (!entry) throw new NotFoundError(`metadata key '${request.params.key}' not found`);
      return entry;
    },
  );

  app.post(
    '/profiles/store',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: "Store (or replace) a profile for one of the caller's sensors; a sensor nobody owns yet becomes the caller's",
        tags: ['profiles'],
        body: storeProfileBody,
        response: { 200: storeProfileResponse, ...errors(401, 403, 422) },
      },
    },
    async (request) => {
      const { body } = request;
      const p = request.principal;
      const outcome = await deps.store.storeProfileAs(p?.kind === 'user' ? p.userId : null, {
        profile_id: body.profile_id,
        sensor_id: body.sensor_id,
        metadata: body.metadata,
        ...(body.timestamp !== undefined ? { timestamp: body.timestamp } : {}),
      });
      if (outcome === 'profile') throw profileRefused(body.profile_id);
      if (outcome === 'sensor') throw new ForbiddenError(`not allowed to access sensor ${body.sensor_id}`);
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
        response: { 200: profileSchema, ...errors(401, 403, 404, 422) },
      },
    },
    async (request) => {
      const profile = await metadata.getProfile(request.params.profile_id);
      if (!profile) throw new NotFoundError(`profile '${request.params.profile_id}' not found`);
      if (!(await auth.maySensor(request, profile.sensor_id))) throw profileRefused(profile.profile_id);
      return profile;
    },
  );
};
