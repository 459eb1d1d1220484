import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import { openService } from './service.js';
import { openSharedService } from './shared-service.js';

/**
 * Every file the service creates is its user's alone (ocean.db holds device secrets): the engines
 * create some on their own, later (DuckDB's WAL after each checkpoint), so the umask says it once.
 */
process.umask(0o077);

/** Wires the process: config, stores, app, workers, listen, shutdown on signals. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  // DATABASE_URL: the shared mode (several instances on one PostgreSQL); else the embedded stores in DATA_DIR.
  const service = config.database ? await openSharedService(config, { logger }) : await openService(config, { logger });
  await service.start();
  await service.app.listen({ port: config.port, host: config.host });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('shutdown took longer than 30 s; exiting');
      process.exit(1);
    }, 30_000);
    service
      .close()
      .then(() => {
        clearTimeout(force);
        logger.info('stopped');
      })
      .catch((err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exitCode = 1;
      });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`ocean-core failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
