/**
 * Time-bucket widths as DuckDB's interval text writes them (`30s`, `5m`, `1h`, `1d`,
 * `5 minutes`, `1 hour`, `1 week`, `1 hour 30 minutes`, `1.5h`), parsed here into a number of
 * seconds that is then bound as a parameter: the text itself never reaches SQL.
 */

/** Seconds per unit, DuckDB's spellings (case-insensitive; `m` is minutes, as in DuckDB). */
const UNIT_SECONDS: Record<string, number> = {};
for (const [seconds, names] of [
  [1, ['s', 'sec', 'secs', 'second', 'seconds']],
  [60, ['m', 'min', 'mins', 'minute', 'minutes']],
  [3600, ['h', 'hr', 'hrs', 'hour', 'hours']],
  [86400, ['d', 'day', 'days']],
  [604800, ['w', 'week', 'weeks']],
] as const) {
  for (const name of names) UNIT_SECONDS[name] = seconds;
}
const VARIABLE_UNITS = new Set(['mon', 'mons', 'month', 'months', 'y', 'yr', 'yrs', 'year', 'years', 'decade', 'decades', 'century', 'centuries']);
const SUB_SECOND_UNITS = new Set(['ms', 'msec', 'msecs', 'millisecond', 'milliseconds', 'us', 'usec', 'usecs', 'microsecond', 'microseconds']);

/** The longest bucket we accept; anything larger is almost certainly a typo. */
export const MAX_INTERVAL_S = 366 * 86400;
export const MAX_INTERVAL_TEXT = 64;

/** One or more `<number> <unit>` parts, blanks allowed around and between. */
const WHOLE = /^\s*(?:\d{1,9}(?:\.\d{1,6})?\s*[a-z]+\s*)+$/i;
const PART = /(\d{1,9}(?:\.\d{1,6})?)\s*([a-z]+)/gi;

export type IntervalResult = { ok: true; seconds: number } | { ok: false; reason: string };

/** Parses a bucket width into whole seconds (1 … MAX_INTERVAL_S); says why when it cannot. */
export function parseInterval(text: string): IntervalResult {
  if (text.length > MAX_INTERVAL_TEXT || !WHOLE.test(text)) {
    return { ok: false, reason: 'must be a number and a unit, e.g. 30s, 5m, 1h, 1d, 5 minutes, 1 hour, 1 week' };
  }
  let seconds = 0;
  for (const [, amount, rawUnit] of text.matchAll(PART)) {
    const unit = rawUnit!.toLowerCase();
    const perUnit = UNIT_SECONDS[unit];
    if (perUnit === undefined) {
      if (VARIABLE_UNITS.has(unit)) return { ok: false, reason: `${unit} has no fixed length: use days or weeks` };
      if (SUB_SECOND_UNITS.has(unit)) return { ok: false, reason: 'buckets are at least one second wide' };
      return { ok: false, reason: `unknown unit ${JSON.stringify(unit)}: use s, m, h, d or w (or seconds, minutes, hours, days, weeks)` };
    }
    seconds += Number(amount) * perUnit;
  }
  // Decimal parts may leave float noise (0.1h): round to the microsecond before asking "whole?".
  seconds = Math.round(seconds * 1e6) / 1e6;
  if (!Number.isInteger(seconds) || seconds < 1) return { ok: false, reason: 'must be a whole number of seconds, at least 1' };
  if (seconds > MAX_INTERVAL_S) return { ok: false, reason: `must not be longer than ${MAX_INTERVAL_S / 86400} days` };
  return { ok: true, seconds };
}

/** Seconds of an interval the request schema has already accepted. */
export function intervalSeconds(text: string): number {
  const result = parseInterval(text);
  if (!result.ok) throw new Error(`interval ${JSON.stringify(text)} was not validated: ${result.reason}`);
  return result.seconds;
}
