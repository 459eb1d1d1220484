import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { openService, type Service } from '../../src/service.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

const ADMIN = 'logging-test-admin-token-0123456789';
const DEVICE_SECRET = 'c0ffee'.repeat(11);

describe('logs at info level', () => {
  const lines: string[] = [];
  let service: Service;
  let temp: TempDir;
  let dataDir: string;

  beforeAll(async () => {
    temp = await makeTempDir('ocean-log-');
    dataDir = temp.path;
    const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'info' });
    service = await openService(config, { logger: createLogger('info', { write: (line: string) => void lines.push(line) }) });
  });

  afterAll(async () => {
    await service.close();
    await temp.cleanup();
  });

  it('never contain the admin token, a session token or a device secret', async () => {
    const { app } = service;
    const admin = { authorization: `Bearer ${ADMIN}` };
    const user = (await app.inject({ method: 'POST', url: '/api/ocean/users', headers: admin, payload: { username: 'carol', email: 'carol@example.com' } })).json();
    const { token } = (await app.inject({ method: 'POST', url: '/api/ocean/sessions/create', headers: admin, payload: { user_id: user.id, username: 'carol' } })).json();
    expect(token).toBeTruthy();
    for (const request of [
      { url: '/api/ocean/sessions/validate', headers: { authorization: `Bearer ${token}` } },
      { url: '/api/ocean/sessions/validate', payload: { token } },
      { url: `/api/ocean/sessions/validate?token=${token}` },
    ]) {
      expect((await app.inject({ method: 'POST', ...request })).statusCode).toBe(200);
    }
    const device = await app.inject({ method: 'POST', url: '/api/ocean/devices', headers: admin, payload: { device_id: 'D-1', secret: DEVICE_SECRET } });
    expect(device.statusCode).toBe(200);

    const log = lines.join('');
    expect(log).toContain('/api/ocean/sessions/validate?token=[redacted]');
    expect(log).not.toContain(token);
    expect(log).not.toContain(ADMIN);
    expect(log).not.toContain(DEVICE_SECRET);
  });
});
