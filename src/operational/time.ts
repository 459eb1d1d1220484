/** ISO 8601 (UTC) text of a Unix time in seconds; the API shows times this way, the database stores numbers. */
export const isoFromS = (s: number): string => new Date(s * 1000).toISOString();
