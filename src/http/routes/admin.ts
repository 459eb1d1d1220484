import type { RoutePlugin } from '../../app.js';
import { errors } from '../schemas/common.js';
import { backupBody, backupResponse } from '../schemas/admin.js';

/** Operations on the running service: the online backup (README, "Operations"). */
export const adminRoutes: RoutePlugin = async (app, { deps, auth }) => {
  app.post(
    '/admin/backup',
    {
      onRequest: auth.requireAdmin,
      schema: {
        summary: 'Back up SQLite and DuckDB into a new directory on the service host, while the service runs; answers the manifest',
        tags: ['admin'],
        body: backupBody,
        response: { 200: backupResponse, ...errors(400, 401, 403, 409, 422) },
      },
    },
    async (request) => {
      const { dir } = request.body;
      request.log.info({ dir }, 'backup started');
      const manifest = await deps.backup(dir);
      request.log.info({ dir, durationMs: manifest.duration_ms, bytes: manifest.files.reduce((n, f) => n + f.bytes, 0) }, 'backup written');
      return manifest;
    },
  );
};
