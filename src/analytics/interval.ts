import { BadRequestError } from '../errors.js';

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** The longest bucket we accept; anything larger is almost certainly a typo. */
export const MAX_INTERVAL_S = 366 * 86400;

/** The interval syntax of the API: a positive integer and one unit, `30s`, `5m`, `1h`, `1d`. */
export const INTERVAL_PATTERN = /^([1-9][0-9]{0,7})([smhd])$/;

/**
 * Parses a time-bucket width such as `5m` into seconds. Anything else (spaces, SQL, zero,
 * negatives, other units) is refused, so the only thing that reaches DuckDB is a bound number.
 */
export function parseInterval(text: string): number {
  const match = INTERVAL_PATTERN.exec(text);
  if (!match) {
    throw new BadRequestError(`invalid interval ${JSON.stringify(text.slice(0, 40))}: use a positive integer and s, m, h or d, e.g. 5m`, 'invalid_interval');
  }
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2] as keyof typeof UNIT_SECONDS];
  if (seconds > MAX_INTERVAL_S) {
    throw new BadRequestError(`interval ${text} is longer than ${MAX_INTERVAL_S / 86400} days`, 'invalid_interval');
  }
  return seconds;
}
