import { hostname } from 'node:os';
import { z } from 'zod';

/**
 * Configuration is parsed once, here, from the environment. Nothing else reads process.env.
 * A bad value throws ConfigError naming the variable; main.ts prints that one line and exits 1.
 */
export class ConfigError extends Error {
  constructor(readonly variable: string, detail: string) {
    super(`invalid configuration: ${variable}: ${detail}`);
    this.name = 'ConfigError';
  }
}

export interface NanogridataConfig {
  /** Per-model secrets from NANOGRIDATA_SECRET_<MODEL hex>. */
  secrets: Map<number, Buffer>;
  acceptUnsigned: boolean;
  maxDriftS: number;
}

export interface IngestConfig {
  stream: string;
  group: string;
  deadLetterStream: string;
  /** Entries per XREADGROUP. */
  batchSize: number;
  /** BLOCK of XREADGROUP in ms. */
  blockMs: number;
  /** Consumer name in the group; stable across restarts so a restarted process reads its own pending entries first. */
  consumerName: string;
  /** Dead-letter stream length bound (approximate, MAXLEN ~). */
  deadLetterMaxLen: number;
  /** Per-sensor stream telemetry:stream:<sensor_id> length bound for HTTP-ingested readings. */
  readingStreamMaxLen: number;
  /** Processed buffer rows older than this are pruned. */
  bufferRetentionS: number;
}

/** The shared mode (DATABASE_URL): several instances on one PostgreSQL. */
export interface DatabaseConfig {
  /** postgres://… (holds a password: never logged). */
  url: string;
  /** Connections this instance may hold. */
  poolMax: number;
}

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  redisUrl: string | undefined;
  /** Set: the shared mode; unset: SQLite + DuckDB in dataDir. */
  database: DatabaseConfig | undefined;
  adminToken: string | undefined;
  sessionTtlS: number;
  /** How long a credit change's Idempotency-Key (and its answer) is remembered. */
  idempotencyKeyTtlS: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  bodyLimitBytes: number;
  /** Bounds on what anonymous callers can hold (see the README's Security section). */
  limits: {
    /** Whole request, body included, must arrive within this. */
    requestTimeoutMs: number;
    /** Frame bodies being received or verified at once; beyond it, 503. */
    framesInFlight: number;
    /** The same from one client address; beyond it, 429. */
    framesInFlightPerAddress: number;
    /** A frame body must arrive at this many bytes/s on average once the grace is over (0: no minimum); else 408. */
    framesMinBodyRate: number;
    framesBodyGraceMs: number;
    /** Frame bodies per client address per minute (0: no limit); beyond it, 429. */
    framesPerMinute: number;
    /** Frames in one body; beyond it the body is refused whole (413) before any is decoded. */
    framesPerBody: number;
  };
  /** Bounds on what one user can hold (see the README's Security section). */
  userLimits: {
    /** Sensors one user may own through claims (JSON ingest, profiles); a claim beyond it answers 409. */
    maxSensors: number;
    /** Analytics queries of one user running at once. */
    analyticsRunning: number;
    /** Analytics queries of one user waiting beyond those; more answer 503 with Retry-After. */
    analyticsWaiting: number;
    /** Analytics queries waiting over all users; more answer 503 with Retry-After. */
    analyticsQueue: number;
    /** Exports running at once over all users, and per user; beyond either, 503 with Retry-After. */
    exportsRunning: number;
    exportsPerUser: number;
    /** An export still running after this long is cut off and its slot freed. */
    exportMaxDurationMs: number;
    /** An export whose client reads slower than this (bytes/s, over 30 s) is cut off; 0: no minimum. */
    exportMinBytesPerS: number;
  };
  /** queryTimeoutMs: an analytics query, or an export's first byte, taking longer is stopped (503). */
  duckdb: { memoryLimit: string; threads: number; queryTimeoutMs: number };
  ingest: IngestConfig;
  nanogridata: NanogridataConfig;
}

type Env = Record<string, string | undefined>;

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const scalars = {
  PORT: int(0, 65535).default(8030),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATA_DIR: z.string().min(1).default('./data'),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\/.+/, 'must look like redis://host:port')
    .optional(),
  // The value is never quoted back in an error: it may hold a password.
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\/\S+$/, 'must look like postgres://user:password@host:5432/database')
    .optional(),
  DATABASE_POOL_MAX: int(2, 1000).default(10),
  INGEST_STREAM: z.string().min(1).default('ocean:frames'),
  INGEST_GROUP: z.string().min(1).default('ocean-core'),
  DEAD_LETTER_STREAM: z.string().min(1).default('ocean:frames:dead'),
  DEAD_LETTER_MAXLEN: int(100, 100_000_000).default(100_000),
  READING_STREAM_MAXLEN: int(1, 10_000_000).default(1000),
  INGEST_BATCH_SIZE: int(1, 10_000).default(1000),
  INGEST_BLOCK_MS: int(1, 60_000).default(1000),
  INGEST_CONSUMER: z.string().regex(/^[\w.:-]{1,64}$/, 'letters, digits, _ . : - only').optional(),
  BUFFER_RETENTION_S: int(0, 365 * 86400).default(86400),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  NANOGRIDATA_ACCEPT_UNSIGNED: bool.default(false),
  NANOGRIDATA_MAX_DRIFT_S: int(1, 10 * 365 * 86400).default(300),
  SESSION_TTL_S: int(60, 365 * 86400).default(86400),
  IDEMPOTENCY_KEY_TTL_S: int(60, 365 * 86400).default(86400),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  BODY_LIMIT_BYTES: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  REQUEST_TIMEOUT_MS: int(1000, 3_600_000).default(30_000),
  FRAMES_MAX_IN_FLIGHT: int(1, 10_000).default(16),
  FRAMES_MAX_IN_FLIGHT_PER_ADDRESS: int(1, 10_000).default(4),
  FRAMES_MIN_BODY_RATE: int(0, 1_000_000_000).default(8192),
  FRAMES_BODY_GRACE_MS: int(100, 3_600_000).default(2000),
  FRAMES_RATE_LIMIT: int(0, 1_000_000).default(600),
  FRAMES_MAX_PER_BODY: int(1, 65_536).default(1024),
  DUCKDB_MEMORY_LIMIT: z
    .string()
    .regex(/^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$/i, 'must be like 512MB or 1GB')
    .default('512MB'),
  DUCKDB_THREADS: int(1, 64).default(2),
  QUERY_TIMEOUT_MS: int(100, 3_600_000).default(30_000),
  MAX_SENSORS_PER_USER: int(1, 10_000_000).default(10_000),
  ANALYTICS_USER_CONCURRENCY: int(1, 64).default(1),
  ANALYTICS_USER_QUEUE: int(0, 10_000).default(4),
  ANALYTICS_QUEUE: int(0, 100_000).default(32),
  EXPORTS_MAX: int(1, 64).default(2),
  EXPORTS_PER_USER: int(1, 64).default(1),
  EXPORT_MAX_DURATION_MS: int(100, 24 * 3_600_000).default(1_800_000),
  EXPORT_MIN_BYTES_PER_S: int(0, 1_000_000_000).default(16_384),
};

function parseVar<T extends z.ZodType>(env: Env, name: string, schema: T): z.output<T> {
  const raw = env[name];
  const result = schema.safeParse(raw === '' ? undefined : raw);
  if (!result.success) {
    throw new ConfigError(name, result.error.issues.map((i) => i.message).join('; '));
  }
  return result.data;
}

const SECRET_PREFIX = 'NANOGRIDATA_SECRET_';

/** NANOGRIDATA_* settings alone; the frame tool uses this without the rest of the service. */
export function loadNanogridataConfig(env: Env): NanogridataConfig {
  const secrets = new Map<number, Buffer>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(SECRET_PREFIX) || value === undefined) continue;
    const modelHex = name.slice(SECRET_PREFIX.length);
    if (!/^[0-9a-fA-F]{1,2}$/.test(modelHex)) {
      throw new ConfigError(name, 'the model must be one or two hex digits, e.g. NANOGRIDATA_SECRET_10');
    }
    // The value is never quoted back: it is (or was meant to be) a secret.
    const howTo = `make one with: openssl rand -hex 32 (or delete ${name} to refuse that model's signed frames)`;
    if (value.trim() === '') throw new ConfigError(name, `is empty; ${howTo}`);
    if (/^replace/i.test(value)) throw new ConfigError(name, `is still the placeholder from .env.example; ${howTo}`);
    if (!/^([0-9a-fA-F]{2})+$/.test(value)) throw new ConfigError(name, `must be hex digits, 64 or more; ${howTo}`);
    const secret = Buffer.from(value, 'hex');
    if (secret.length < 32) throw new ConfigError(name, `is ${secret.length} bytes, at least 32 are needed (64 hex digits); ${howTo}`);
    secrets.set(parseInt(modelHex, 16), secret);
  }
  return {
    secrets,
    acceptUnsigned: parseVar(env, 'NANOGRIDATA_ACCEPT_UNSIGNED', scalars.NANOGRIDATA_ACCEPT_UNSIGNED),
    maxDriftS: parseVar(env, 'NANOGRIDATA_MAX_DRIFT_S', scalars.NANOGRIDATA_MAX_DRIFT_S),
  };
}

/** NANOGRIDATA_NOW (Unix seconds) pins the frame tool's clock, for reproducible decoding; unset → system clock. */
export function loadClockOverride(env: Env): number | undefined {
  return parseVar(env, 'NANOGRIDATA_NOW', z.coerce.number().int().min(0).max(0xffffffff).optional());
}

/** INGEST_STREAM alone, for tools (the simulator) that push frames without the rest of the service. */
export function loadIngestStream(env: Env): string {
  return parseVar(env, 'INGEST_STREAM', scalars.INGEST_STREAM);
}

/** What the backup and restore commands need: where the data is and where the running service answers. */
export interface OpsConfig {
  dataDir: string;
  /** The service's base URL: OCEAN_URL, else http://HOST:PORT (a wildcard HOST is reached on loopback). */
  serviceUrl: string;
  adminToken: string | undefined;
  /** Whether DATABASE_URL is set (its value, which may hold a password, is never kept). */
  databaseUrlSet: boolean;
}

export function loadOpsConfig(env: Env): OpsConfig {
  const host = parseVar(env, 'HOST', scalars.HOST);
  const port = parseVar(env, 'PORT', scalars.PORT);
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = parseVar(env, 'OCEAN_URL', z.string().regex(/^https?:\/\/[^/]+\/?$/, 'must look like http://host:port').optional());
  return {
    dataDir: parseVar(env, 'DATA_DIR', scalars.DATA_DIR),
    serviceUrl: (url ?? `http://${reachable}:${port}`).replace(/\/$/, ''),
    adminToken: parseVar(env, 'ADMIN_TOKEN', scalars.ADMIN_TOKEN),
    databaseUrlSet: (env.DATABASE_URL ?? '') !== '',
  };
}

export function loadConfig(env: Env): Config {
  const v = <K extends keyof typeof scalars>(name: K) =>
    parseVar(env, name, scalars[name]) as z.output<(typeof scalars)[K]>;
  const databaseUrl = v('DATABASE_URL');
  const adminToken = v('ADMIN_TOKEN');
  // Each instance would otherwise generate a token of its own into its own DATA_DIR: one service, one token.
  if (databaseUrl !== undefined && adminToken === undefined) {
    throw new ConfigError('ADMIN_TOKEN', 'is required with DATABASE_URL (every instance of the shared mode must accept the same token); make one with: openssl rand -hex 32');
  }
  return {
    port: v('PORT'),
    host: v('HOST'),
    dataDir: v('DATA_DIR'),
    redisUrl: v('REDIS_URL'),
    database: databaseUrl === undefined ? undefined : { url: databaseUrl, poolMax: v('DATABASE_POOL_MAX') },
    adminToken,
    sessionTtlS: v('SESSION_TTL_S'),
    idempotencyKeyTtlS: v('IDEMPOTENCY_KEY_TTL_S'),
    logLevel: v('LOG_LEVEL'),
    bodyLimitBytes: v('BODY_LIMIT_BYTES'),
    limits: {
      requestTimeoutMs: v('REQUEST_TIMEOUT_MS'),
      framesInFlight: v('FRAMES_MAX_IN_FLIGHT'),
      framesInFlightPerAddress: v('FRAMES_MAX_IN_FLIGHT_PER_ADDRESS'),
      framesMinBodyRate: v('FRAMES_MIN_BODY_RATE'),
      framesBodyGraceMs: v('FRAMES_BODY_GRACE_MS'),
      framesPerMinute: v('FRAMES_RATE_LIMIT'),
      framesPerBody: v('FRAMES_MAX_PER_BODY'),
    },
    userLimits: {
      maxSensors: v('MAX_SENSORS_PER_USER'),
      analyticsRunning: v('ANALYTICS_USER_CONCURRENCY'),
      analyticsWaiting: v('ANALYTICS_USER_QUEUE'),
      analyticsQueue: v('ANALYTICS_QUEUE'),
      exportsRunning: v('EXPORTS_MAX'),
      exportsPerUser: v('EXPORTS_PER_USER'),
      exportMaxDurationMs: v('EXPORT_MAX_DURATION_MS'),
      exportMinBytesPerS: v('EXPORT_MIN_BYTES_PER_S'),
    },
    duckdb: { memoryLimit: v('DUCKDB_MEMORY_LIMIT'), threads: v('DUCKDB_THREADS'), queryTimeoutMs: v('QUERY_TIMEOUT_MS') },
    ingest: {
      stream: v('INGEST_STREAM'),
      group: v('INGEST_GROUP'),
      deadLetterStream: v('DEAD_LETTER_STREAM'),
      batchSize: v('INGEST_BATCH_SIZE'),
      blockMs: v('INGEST_BLOCK_MS'),
      consumerName: v('INGEST_CONSUMER') ?? hostname(),
      deadLetterMaxLen: v('DEAD_LETTER_MAXLEN'),
      readingStreamMaxLen: v('READING_STREAM_MAXLEN'),
      bufferRetentionS: v('BUFFER_RETENTION_S'),
    },
    nanogridata: loadNanogridataConfig(env),
  };
}
