import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ensureDataDir } from './data-files.js';

/**
 * The admin token in force: ADMIN_TOKEN when set; otherwise the one in DATA_DIR/admin.token,
 * generated (mode 0600) on first start so it survives restarts. Only its path is ever logged.
 */
export function resolveAdminToken(configured: string | undefined, dataDir: string, logger: Logger): string {
  if (configured) return configured;
  const path = join(dataDir, 'admin.token');
  if (existsSync(path)) {
    const token = readFileSync(path, 'utf8').trim();
    if (token.length >= 16) {
      logger.info({ path }, 'admin token read from file (ADMIN_TOKEN unset)');
      return token;
    }
  }
  ensureDataDir(dataDir);
  const token = randomBytes(32).toString('base64url');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  logger.warn({ path }, 'ADMIN_TOKEN unset: generated an admin token into this file');
  return token;
}
