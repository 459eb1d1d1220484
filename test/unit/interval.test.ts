import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/errors.js';
import { MAX_INTERVAL_S, parseInterval } from '../../src/analytics/interval.js';

describe('parseInterval', () => {
  it('turns seconds, minutes, hours and days into seconds', () => {
    expect(parseInterval('30s')).toBe(30);
    expect(parseInterval('5m')).toBe(300);
    expect(parseInterval('1h')).toBe(3600);
    expect(parseInterval('1d')).toBe(86400);
    expect(parseInterval('15m')).toBe(900);
    expect(parseInterval('366d')).toBe(MAX_INTERVAL_S);
  });

  it.each([
    '5 minutes; DROP TABLE measurements',
    '5m; DROP TABLE measurements',
    "5m' OR '1'='1",
    '0s',
    '00s',
    '-1m',
    '+1m',
    '1w',
    '1M',
    '1y',
    '1.5h',
    '5',
    'm',
    '',
    ' 5m',
    '5m ',
    '5 m',
    '05m',
    '1e3s',
    '367d',
    '999999999s',
    'INTERVAL 5 MINUTE',
  ])('refuses %j with a 400', (text) => {
    expect(() => parseInterval(text)).toThrow(BadRequestError);
    try {
      parseInterval(text);
    } catch (err) {
      expect((err as BadRequestError).statusCode).toBe(400);
    }
  });
});
