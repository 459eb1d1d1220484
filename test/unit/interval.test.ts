import { describe, expect, it } from 'vitest';
import { MAX_INTERVAL_S, intervalSeconds, parseInterval } from '../../src/analytics/interval.js';

const seconds = (text: string) => {
  const result = parseInterval(text);
  return result.ok ? result.seconds : result.reason;
};

describe('parseInterval', () => {
  it('reads the short forms: s, m (minutes, as DuckDB), h, d, w', () => {
    expect(seconds('30s')).toBe(30);
    expect(seconds('5m')).toBe(300);
    expect(seconds('1h')).toBe(3600);
    expect(seconds('1d')).toBe(86400);
    expect(seconds('1w')).toBe(604800);
    expect(seconds('15m')).toBe(900);
    expect(seconds('05m')).toBe(300);
    expect(seconds('366d')).toBe(MAX_INTERVAL_S);
  });

  it('reads DuckDB interval words, several parts, decimals and blanks', () => {
    expect(seconds('5 minutes')).toBe(300);
    expect(seconds('1 minute')).toBe(60);
    expect(seconds('1 hour')).toBe(3600);
    expect(seconds('2 hours')).toBe(7200);
    expect(seconds('1 day')).toBe(86400);
    expect(seconds('1 week')).toBe(604800);
    expect(seconds('30 seconds')).toBe(30);
    expect(seconds('10 sec')).toBe(10);
    expect(seconds('5 min')).toBe(300);
    expect(seconds('1 hr')).toBe(3600);
    expect(seconds('1 HOUR')).toBe(3600);
    expect(seconds('1M')).toBe(60);
    expect(seconds('1 hour 30 minutes')).toBe(5400);
    expect(seconds('1h30m')).toBe(5400);
    expect(seconds('1.5h')).toBe(5400);
    expect(seconds('0.5 minutes')).toBe(30);
    expect(seconds(' 5m ')).toBe(300);
    expect(seconds('5 m')).toBe(300);
  });

  it.each([
    '5 minutes; DROP TABLE measurements',
    '5m; DROP TABLE measurements',
    "5m' OR '1'='1",
    '0s',
    '00s',
    '-1m',
    '+1m',
    '1.5s',
    '500ms',
    '1 month',
    '1y',
    '5',
    'm',
    '',
    '1e3s',
    '367d',
    '999999999s',
    'INTERVAL 5 MINUTE',
    '5 fortnights',
    'x'.repeat(65),
  ])('refuses %j with a reason', (text) => {
    const result = parseInterval(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toEqual(expect.any(String));
  });

  it('says why for the units it knows but cannot bucket by', () => {
    expect(seconds('1 month')).toMatch(/no fixed length/);
    expect(seconds('100 ms')).toMatch(/at least one second/);
    expect(seconds('3 parsecs')).toMatch(/unknown unit/);
  });

  it('gives the seconds of validated text and throws for text that skipped validation', () => {
    expect(intervalSeconds('5 minutes')).toBe(300);
    expect(() => intervalSeconds('5 minutes; DROP TABLE measurements')).toThrow(/not validated/);
  });
});
