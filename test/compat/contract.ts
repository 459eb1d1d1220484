/**
 * The route table of shared/design/api-compat.md, as data: for every route, the keys its answer
 * must have and their JSON types. Written from the page, not from the code.
 *
 * Types: 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null', or several
 * joined with '|', e.g. 'number|null'. A nested object or array item is a Shape of its own.
 */
export type JsonType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null';
export type Shape = { [key: string]: string | Shape | [Shape] };

const aggregate: Shape = {
  count: 'integer',
  avg_value: 'number|null',
  min_value: 'number|null',
  max_value: 'number|null',
  stddev_value: 'number|null',
};

export interface ContractRoute {
  method: 'GET' | 'POST';
  path: string;
  /** The keys (and types) of the 200 answer that the original had. */
  answer: Shape;
  /** True where the contract's answer is exact (no additions expected). */
  exact?: boolean;
}

export const CONTRACT: ContractRoute[] = [
  {
    method: 'GET',
    path: '/health',
    answer: { status: 'string', engine: 'string', architecture: 'string', cpu_mode: 'string', telemetry_buffer: 'integer', db_size_mb: 'number', timestamp: 'string' },
  },
  {
    method: 'GET',
    path: '/api/ocean/status',
    answer: { status: 'string', cpu_efficient: 'boolean', engine: 'string', telemetry_buffer_size: 'integer', memory_usage_mb: 'number' },
  },
  {
    method: 'GET',
    path: '/api/ocean/docs',
    answer: { system: 'string', architecture: 'string', layers: 'object', performance: 'object', endpoints: 'object' },
  },
  { method: 'POST', path: '/api/ocean/users', answer: { id: 'string', username: 'string', email: 'string' } },
  {
    method: 'GET',
    path: '/api/ocean/users/{user_id}',
    answer: { id: 'string', username: 'string', email: 'string', created_at: 'string', updated_at: 'string', status: 'string' },
  },
  { method: 'POST', path: '/api/ocean/billing/{user_id}/add-credits', answer: { user_id: 'string', credits: 'integer' } },
  {
    method: 'GET',
    path: '/api/ocean/billing/{user_id}',
    answer: { id: 'string', user_id: 'string', plan: 'string', credits: 'integer', usage: 'integer', created_at: 'string' },
  },
  { method: 'POST', path: '/api/ocean/sessions/create', answer: { session_id: 'string', token: 'string', expires_at: 'string' }, exact: true },
  {
    method: 'POST',
    path: '/api/ocean/sessions/validate',
    answer: { valid: 'boolean', session: { id: 'string', user_id: 'string', created_at: 'string', expires_at: 'string', last_activity: 'string' } },
  },
  { method: 'POST', path: '/api/ocean/metadata/{key}', answer: { key: 'string', set: 'boolean' }, exact: true },
  { method: 'GET', path: '/api/ocean/metadata/{key}', answer: { key: 'string', value: 'string' } },
  { method: 'POST', path: '/api/ocean/profiles/store', answer: { profile_id: 'string', stored: 'boolean' }, exact: true },
  { method: 'GET', path: '/api/ocean/profiles/{profile_id}', answer: { sensor_id: 'string', timestamp: 'string', metadata: 'object' } },
  {
    method: 'GET',
    path: '/api/ocean/analytics/sensor/{sensor_id}/stats',
    answer: { ...aggregate, first_reading: 'string|null', last_reading: 'string|null' },
  },
  {
    method: 'GET',
    path: '/api/ocean/analytics/sensor/{sensor_id}/timeseries',
    answer: {
      sensor_id: 'string',
      interval: 'string',
      data: [{ bucket: 'string', avg_value: 'number', min_value: 'number', max_value: 'number', count: 'integer' }],
    },
  },
  {
    method: 'GET',
    path: '/api/ocean/analytics/sensor/{sensor_id}/anomalies',
    answer: { sensor_id: 'string', threshold: 'number', anomalies: [{ timestamp: 'string', value: 'number', z_score: 'number' }], count: 'integer' },
  },
  { method: 'POST', path: '/api/ocean/analytics/compare', answer: { comparison: 'object' } },
  { method: 'POST', path: '/api/ocean/telemetry/ingest', answer: { id: 'integer', sensor_id: 'string', buffered: 'boolean', timestamp: 'string' } },
  { method: 'POST', path: '/api/ocean/telemetry/batch', answer: { count: 'integer', ids: 'array', timestamp: 'string' } },
  {
    method: 'GET',
    path: '/api/ocean/telemetry/unprocessed',
    answer: { count: 'integer', data: [{ id: 'integer', sensor_id: 'string', timestamp: 'string', data: 'string' }] },
  },
  { method: 'POST', path: '/api/ocean/telemetry/mark-processed', answer: { processed: 'integer', success: 'boolean' } },
];

/** The aggregate every `comparison` entry holds. */
export const COMPARISON_ENTRY = aggregate;

/** The routes the contract says are public (no lock in the OpenAPI document). */
export const PUBLIC_ROUTES = [
  ['GET', '/health'],
  ['GET', '/metrics'],
  ['GET', '/api/ocean/status'],
  ['GET', '/api/ocean/docs'],
  ['POST', '/api/ocean/sessions/validate'],
  ['POST', '/api/ocean/telemetry/frames'],
] as const;

/** Routes only the admin token may call. */
export const ADMIN_ROUTES = [
  ['POST', '/api/ocean/users'],
  ['POST', '/api/ocean/billing/{user_id}/add-credits'],
  ['POST', '/api/ocean/sessions/create'],
  ['POST', '/api/ocean/metadata/{key}'],
  ['POST', '/api/ocean/devices'],
  ['GET', '/api/ocean/telemetry/unprocessed'],
  ['POST', '/api/ocean/telemetry/mark-processed'],
  ['POST', '/api/ocean/admin/backup'],
] as const;
