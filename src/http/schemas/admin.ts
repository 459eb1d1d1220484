import { z } from 'zod';
import { manifestSchema } from '../../backup/manifest.js';

export const backupBody = z.object({
  dir: z.string().min(1).max(4096).describe('Absolute path on the service host of a new or empty directory to write the backup into'),
});

export const backupResponse = manifestSchema.describe('BackupManifest');
