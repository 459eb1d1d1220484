import { z } from 'zod';
import { idParam, isoTime } from './common.js';

/** Empty counts as absent (then the request answers 401, not 400). */
const token = z.string().max(512);

export const createSessionBody = z.object({
  user_id: idParam,
  username: z.string().min(1).max(64),
  /** Accepted for compatibility with the original; not used. */
  email: z.string().max(254).optional(),
});

export const createdSessionSchema = z.object({
  session_id: z.string(),
  token: z.string().describe('Shown once; only its SHA-256 is stored'),
  expires_at: isoTime,
});

/** The token may come as `Authorization: Bearer`, JSON `{token}` or `?token=`. */
export const validateBody = z.object({ token }).nullish();
export const validateQuery = z.object({ token: token.optional() });

export const sessionInfoSchema = z.object({
  session_id: z.string(),
  user_id: z.number().int(),
  username: z.string(),
  created_at: isoTime,
  expires_at: isoTime,
});

export const validateResponse = z.object({ valid: z.literal(true), session: sessionInfoSchema });

export const revokeBody = z
  .object({
    session_id: z.string().min(1).max(64).optional(),
    token: token.optional(),
  })
  .nullish();

export const revokeResponse = z.object({ session_id: z.string(), revoked: z.literal(true) });
