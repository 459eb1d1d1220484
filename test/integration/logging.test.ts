import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { openService, type Service } from '../../src/service.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

const ADMIN = 'logging-test-admin-token-0123456789';
const DEVICE_SECRET = 'c0ffee'.repeat(11);

describe.each(['info', 'debug'] as const)('logs at %s level', (level) => {
  const lines: string[] = [];
  let service: Service;
  let temp: TempDir;
  let dataDir: string;

  beforeAll(async () => {
    temp = await makeTempDir('ocean-log-');
    dataDir = temp.path;
    const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: ADMIN, LOG_LEVEL: level });
    service = await openService(config, { logger: createLogger(level, { write: (line: string) => void lines.push(line) }) });
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
      // The router decodes parameter names: these are ?token= to the route, so they must be to the scrubber.
      { url: `/api/ocean/sessions/validate?%74oken=${token}` },
      { url: `/api/ocean/sessions/validate?x=1&%74%6F%6B%65%6E=${token}` },
    ]) {
      expect((await app.inject({ method: 'POST', ...request })).statusCode).toBe(200);
    }
    const device = await app.inject({ method: 'POST', url: '/api/ocean/devices', headers: admin, payload: { device_id: 'D-1', secret: DEVICE_SECRET } });
    expect(device.statusCode).toBe(200);
    // A failure is logged at info: a wrong token in the query string, and the right one revoked.
    const wrong = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    expect((await app.inject({ method: 'POST', url: `/api/ocean/sessions/validate?token=${wrong}` })).statusCode).toBe(401);
    const wrongEncoded = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`;
    expect((await app.inject({ method: 'POST', url: `/api/ocean/sessions/validate?%74oken=${wrongEncoded}` })).statusCode).toBe(401);

    const log = lines.join('');
    expect(log).toContain('/api/ocean/sessions/validate?token=[redacted]');
    expect(log).not.toContain(wrong);
    expect(log).toContain('/api/ocean/sessions/validate?%74oken=[redacted]');
    expect(log).not.toContain(wrongEncoded);
    expect(log).not.toContain(token.slice(0, -2));
    expect(log).not.toContain(token);
    expect(log).not.toContain(ADMIN);
    expect(log).not.toContain(DEVICE_SECRET);
  });
});

describe('request log lines', () => {
  it("keeps a client's X-Request-Id only when it is a short id, and logs its own otherwise", async () => {
    const lines: string[] = [];
    const dir = await makeTempDir('ocean-log-');
    const config = loadConfig({ DATA_DIR: dir.path, ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'info' });
    const service = await openService(config, { logger: createLogger('info', { write: (line: string) => void lines.push(line) }) });
    try {
      const sent = ['trace-0123456789abcdef', 'x'.repeat(8192), 'x'.repeat(65), 'two words', '"},"msg":"forged'];
      for (const id of sent) {
        expect((await service.app.inject({ method: 'GET', url: '/api/ocean/users/nobody', headers: { 'x-request-id': id } })).statusCode).toBe(401);
      }
      const ids = lines.map((l) => JSON.parse(l) as { msg: string; reqId?: string }).filter((r) => r.msg === 'request completed').map((r) => r.reqId);
      expect(ids).toHaveLength(sent.length);
      expect(ids[0]).toBe('trace-0123456789abcdef');
      for (const id of ids.slice(1)) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(lines.join('')).not.toContain('x'.repeat(65));
    } finally {
      await service.close();
      await dir.cleanup();
    }
  });

  it('writes one line per request: failures at info, fast successes only at debug', async () => {
    for (const level of ['info', 'debug'] as const) {
      const lines: string[] = [];
      const dir = await makeTempDir('ocean-log-');
      const config = loadConfig({ DATA_DIR: dir.path, ADMIN_TOKEN: ADMIN, LOG_LEVEL: level });
      const service = await openService(config, { logger: createLogger(level, { write: (line: string) => void lines.push(line) }) });
      try {
        lines.length = 0;
        expect((await service.app.inject({ method: 'GET', url: '/api/ocean/docs' })).statusCode).toBe(200);
        expect((await service.app.inject({ method: 'GET', url: '/api/ocean/users/nobody' })).statusCode).toBe(401);
        const requests = lines.map((l) => JSON.parse(l) as { msg: string; req?: { url: string }; res?: { statusCode: number }; reqId?: string });
        const completed = requests.filter((r) => r.msg === 'request completed');
        expect(completed.map((r) => r.res?.statusCode)).toEqual(level === 'info' ? [401] : [200, 401]);
        expect(completed.every((r) => typeof r.reqId === 'string')).toBe(true);
        expect(requests.some((r) => r.msg === 'incoming request')).toBe(false);
      } finally {
        await service.close();
        await dir.cleanup();
      }
    }
  });
});
