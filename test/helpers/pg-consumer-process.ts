/**
 * One instance of the shared mode's ingest, as a process of its own, for the kill tests: a stream
 * consumer (claiming idle entries of others) committing through PgIngest. Arguments: a JSON object
 * { redisUrl, pgUrl, name, secretHex, claimIdleMs }. Runs until killed.
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig, loadNanogridataConfig } from '../../src/config.js';
import { StreamConsumer } from '../../src/ingest/consumer.js';
import { DecodePool } from '../../src/ingest/decode-pool.js';
import { createMetrics } from '../../src/metrics.js';
import { openPostgres } from '../../src/postgres/connect.js';
import { PgIngest } from '../../src/postgres/ingest.js';

const args = JSON.parse(process.argv[2]!) as { redisUrl: string; pgUrl: string; name: string; secretHex: string; claimIdleMs: number };
const env = { NANOGRIDATA_SECRET_10: args.secretHex, INGEST_BATCH_SIZE: '50', INGEST_BLOCK_MS: '100' };
const consumer = new StreamConsumer({
  redis: new Redis(args.redisUrl),
  config: loadConfig(env).ingest,
  consumerName: args.name,
  pipeline: new PgIngest({ pool: openPostgres(args.pgUrl, { max: 4 }), decoder: new DecodePool(loadNanogridataConfig(env), pino({ level: 'silent' }), 1) }),
  metrics: createMetrics(),
  logger: pino({ level: 'silent' }),
  claimIdleMs: args.claimIdleMs,
});
await consumer.start();
process.stdout.write('started\n');
