import type { FastifyRequest } from 'fastify';
import type { RoutePlugin } from '../../app.js';
import { BadRequestError, NotFoundError, ValidationError } from '../../errors.js';
import {
  addCreditsBody,
  addCreditsQuery,
  billingAccountSchema,
  billingParams,
  creditChangeSchema,
  idempotencyHeaders,
  ledgerQuery,
  ledgerSchema,
} from '../schemas/billing.js';
import { errors } from '../schemas/common.js';

/** Whose Idempotency-Keys a request uses: the admin's, or a user's own. */
const callerOf = (request: FastifyRequest) => {
  const p = request.principal;
  return p?.kind === 'user' ? `user:${p.userId}` : 'admin';
};

/** Billing: credits (admin changes them, atomically, with a ledger row each) and usage. */
export const billingRoutes: RoutePlugin = async (app, { deps, auth }) => {
  const { billing } = deps.store;

  app.post(
    '/billing/:user_id/add-credits',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Add credits (negative amount debits); the balance never goes below 0',
        tags: ['billing'],
        params: billingParams,
        querystring: addCreditsQuery,
        headers: idempotencyHeaders,
        body: addCreditsBody,
        response: { 200: creditChangeSchema, ...errors(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const { query, body } = request;
      if (query.amount !== undefined && body?.amount !== undefined && query.amount !== body.amount) {
        throw new BadRequestError('amount given twice (query and body) with different values');
      }
      const amount = body?.amount ?? query.amount;
      // Required, as in the original; the schema leaves it optional because it may come from either place.
      if (amount === undefined) throw ValidationError.missing('query', 'amount');
      const reason = body?.reason ?? query.reason;
      const key = request.headers['idempotency-key'];
      if (key === undefined) return await billing.addCredits(request.params.user_id, amount, reason);
      const once = await billing.addCreditsOnce({ scope: `${callerOf(request)}:add-credits`, key }, request.params.user_id, amount, reason);
      if (once.replayed) void reply.header('idempotent-replayed', 'true');
      return once.change;
    },
  );

  app.get(
    '/billing/:user_id',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: "Get a user's billing account",
        tags: ['billing'],
        params: billingParams,
        response: { 200: billingAccountSchema, ...errors(401, 403, 404, 422) },
      },
    },
    async (request) => {
      const { user_id } = request.params;
      auth.assertUser(request, user_id);
      const account = await billing.get(user_id);
      if (!account) throw new NotFoundError(`user ${user_id} not found`);
      return account;
    },
  );

  app.get(
    '/billing/:user_id/ledger',
    {
      onRequest: auth.requireUser,
      schema: {
        summary: "List a user's credit changes, newest first",
        tags: ['billing'],
        params: billingParams,
        querystring: ledgerQuery,
        response: { 200: ledgerSchema, ...errors(401, 403, 404, 422) },
      },
    },
    async (request) => {
      const { user_id } = request.params;
      auth.assertUser(request, user_id);
      if (!(await billing.get(user_id))) throw new NotFoundError(`user ${user_id} not found`);
      const { limit, before } = request.query;
      const entries = await billing.ledger(user_id, before === undefined ? { limit } : { limit, before });
      return { user_id, entries, next_before: entries.length === limit ? entries[entries.length - 1]!.id : null };
    },
  );
};
