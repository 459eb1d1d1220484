import { z } from 'zod';
import { idParam, isoTime } from './common.js';

export const createUserBody = z.object({
  username: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$/, 'must be 3-64 letters, digits, _ . or -, starting with a letter or digit'),
  email: z.email().max(254),
});
export type CreateUserBody = z.infer<typeof createUserBody>;

export const userParams = z.object({ user_id: idParam });

export const userSchema = z
  .object({
    id: z.number().int(),
    username: z.string(),
    email: z.string(),
    created_at: isoTime,
  })
  .describe('User');
