import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const failure = (value: string) => {
  try {
    loadConfig({ NANOGRIDATA_SECRET_10: value });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('loadConfig accepted the secret');
};

describe('frame secret errors say what is wrong and how to make one, never the value', () => {
  it.each([
    ['empty', '', /is empty/],
    ['the .env.example placeholder', 'replace-with-64-hex-digits', /still the placeholder/],
    ['not hex', 'zz'.repeat(32), /must be hex digits/],
    ['short', 'ab'.repeat(16), /is 16 bytes, at least 32/],
  ])('%s', (_what, value, reason) => {
    const message = failure(value);
    expect(message).toMatch(/^invalid configuration: NANOGRIDATA_SECRET_10: /);
    expect(message).toMatch(reason);
    expect(message).toContain('openssl rand -hex 32');
    if (value.length > 0) expect(message).not.toContain(value);
  });

  it('takes a 32-byte secret', () => {
    expect(loadConfig({ NANOGRIDATA_SECRET_10: 'ab'.repeat(32) }).nanogridata.secrets.get(0x10)).toHaveLength(32);
  });
});
