import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

/** What loadConfig makes of the environment; the one spawn of main on a bad value is test/e2e/config-exit.test.ts. */
describe('loadConfig', () => {
  it('fills every setting from its default when the environment is empty', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8030);
    expect(config.host).toBe('127.0.0.1');
    expect(config.redisUrl).toBeUndefined();
    expect(config.adminToken).toBeUndefined();
    expect(config.logLevel).toBe('info');
    expect(config.nanogridata).toEqual({ secrets: new Map(), acceptUnsigned: false, maxDriftS: 300 });
  });

  it('reads an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', REDIS_URL: '' })).toMatchObject({ port: 8030, redisUrl: undefined });
  });

  it('parses numbers, booleans and per-model secrets', () => {
    const secret = 'ab'.repeat(32);
    const config = loadConfig({ PORT: '0', SESSION_TTL_S: '60', NANOGRIDATA_ACCEPT_UNSIGNED: 'yes', NANOGRIDATA_SECRET_10: secret });
    expect(config.port).toBe(0);
    expect(config.sessionTtlS).toBe(60);
    expect(config.nanogridata.acceptUnsigned).toBe(true);
    expect(config.nanogridata.secrets).toEqual(new Map([[0x10, Buffer.from(secret, 'hex')]]));
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['NANOGRIDATA_SECRET_10', 'short'],
    ['NANOGRIDATA_SECRET_10', 'ab'.repeat(16)],
    ['NANOGRIDATA_SECRET_XYZ', 'ab'.repeat(32)],
    ['SESSION_TTL_S', '-5'],
    ['REDIS_URL', 'localhost:6379'],
    ['ADMIN_TOKEN', 'tiny'],
    ['LOG_LEVEL', 'loud'],
    ['DATABASE_URL', 'mysql://ocean:pw@db.example:3306/ocean'],
    ['DATABASE_POOL_MAX', '1'],
  ])('refuses %s=%s with a ConfigError naming the variable', (variable, value) => {
    let thrown: unknown;
    try {
      loadConfig({ ADMIN_TOKEN: 'a'.repeat(32), DATABASE_URL: 'postgres://ocean:pw@db.example:5432/ocean', [variable]: value });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    const err = thrown as ConfigError;
    expect(err.variable).toBe(variable);
    expect(err.message).toMatch(new RegExp(`^invalid configuration: ${variable}: \\S`));
    expect(err.message).not.toContain('\n');
    // A rejected secret or token is not echoed.
    if (/SECRET|TOKEN|DATABASE_URL/.test(variable)) expect(err.message).not.toContain(value);
  });

  it('DATABASE_URL switches on the shared mode, and then needs ADMIN_TOKEN (one token for every instance)', () => {
    const url = 'postgres://ocean:s3cret-pw@db.example:5432/ocean';
    expect(loadConfig({}).database).toBeUndefined();
    expect(loadConfig({ DATABASE_URL: url, ADMIN_TOKEN: 'a'.repeat(32) }).database).toEqual({ url, poolMax: 10 });
    let thrown: unknown;
    try {
      loadConfig({ DATABASE_URL: url });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).variable).toBe('ADMIN_TOKEN');
    expect((thrown as ConfigError).message).not.toContain('s3cret');
  });
});
