import type { RoutePlugin } from '../../app.js';
import { NotFoundError } from '../../errors.js';
import { plainJsonSerializer } from '../plain-serializer.js';
import { errors } from '../schemas/common.js';
import { createUserBody, userParams, userSchema } from '../schemas/users.js';

/** Users: created by the admin (with their billing row); a session reads only its own user. */
export const usersRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { users } = deps.store;

  app.post(
    '/users',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Create a user (and its billing account)',
        tags: ['users'],
        body: createUserBody,
        // 200, as the original (FastAPI's default for a create).
        response: { 200: userSchema, ...errors(401, 403, 409, 422) },
      },
    },
    async (request) => await users.create(request.body),
  );

  app.get(
    '/users/:user_id',
    {
      onRequest: auth.requireUser,
      serializerCompiler: plainJsonSerializer,
      schema: {
        summary: 'Get a user',
        tags: ['users'],
        params: userParams,
        response: { 200: userSchema, ...errors(401, 403, 404, 422) },
      },
    },
    async (request) => {
      const { user_id } = request.params;
      auth.assertUser(request, user_id);
      const user = await users.get(user_id);
      if (!user) throw new NotFoundError(`user ${user_id} not found`);
      return user;
    },
  );
};
