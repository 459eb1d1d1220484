import { resolve } from 'node:path';
import { ConfigError, loadOpsConfig, type OpsConfig } from '../config.js';
import type { CommandIo } from './entry.js';

type Env = Record<string, string | undefined>;

/**
 * The one argument (a directory, made absolute) and the configuration of the backup and restore
 * commands; null after printing the usage or the configuration problem (exit code 2).
 */
export function opsArgs(name: string, usage: string, argv: string[], env: Env, io: CommandIo): { dir: string; config: OpsConfig } | null {
  if (argv.length !== 1 || argv[0]!.startsWith('-')) {
    io.err(usage);
    return null;
  }
  try {
    return { dir: resolve(argv[0]!), config: loadOpsConfig(env) };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`${name}: ${err.message}\n`);
    return null;
  }
}
