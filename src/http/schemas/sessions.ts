import { z } from 'zod';
import { optional, text, userId } from './common.js';

export { createdSessionSchema } from '../../operational/schemas.js';
import { sessionSchema } from '../../operational/schemas.js';

/** Empty counts as absent (then the request answers 401, not 422). */
const token = optional(text({ min: 0, max: 512 }));

export const createSessionBody = z.object({
  user_id: userId,
  username: text({ max: 64 }),
  /** Accepted for compatibility with the original; not used. */
  email: optional(text({ min: 0, max: 254 })).describe('Accepted and ignored, as the original'),
});

/** The token may come as `Authorization: Bearer`, JSON `{token}` or `?token=`. */
export const validateBody = optional(z.object({ token }));
export const validateQuery = z.object({ token });

export const validateResponse = z.object({ valid: z.literal(true), session: sessionSchema }).describe('ValidSession');

export const revokeBody = optional(
  z.object({
    session_id: optional(text({ max: 64 })),
    token,
  }),
);

export const revokeResponse = z.object({ session_id: z.string(), revoked: z.literal(true) });
