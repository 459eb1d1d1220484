import { z } from 'zod';
import { text, userId } from './common.js';

export { userSchema } from '../../operational/schemas.js';

/** Any non-empty text, as the original took it; uniqueness is the only other rule (409). */
export const createUserBody = z.object({
  username: text({ max: 64 }).describe('Any non-empty text up to 64 characters'),
  email: text({ max: 254 }).describe('Any non-empty text up to 254 characters (unique whatever its case)'),
});
export type CreateUserBody = z.infer<typeof createUserBody>;

export const userParams = z.object({ user_id: userId });
