/**
 * Sensor simulator command line:
 *   simulate --target redis://…|http://… --sensors N --rate R --duration S [--profile …] [--level …] [--stream …]
 * Progress (sent, rate, errors) on stderr about once a second; a JSON summary line on stdout at the end.
 * Exit 0 when every frame got there (and, over HTTP, the service accepted every one), 1 when some
 * did not or were refused (the reasons are printed; or the target is unreachable), 2 on bad
 * arguments or configuration.
 */
import { isMainModule } from './entry.js';
import { parseArgs } from 'node:util';
import { ConfigError, loadIngestStream, loadNanogridataConfig } from '../config.js';
import { SIM_PROFILES } from '../nanogridata/simulated-sensors.js';
import type { SimProfile } from '../nanogridata/simulated-sensors.js';
import { SimulationSetupError, maskUrl, runSimulation } from '../nanogridata/simulator.js';
import type { SimulationOptions, SimulationProgress } from '../nanogridata/simulator.js';

type Env = Record<string, string | undefined>;

export const USAGE = `usage: simulate --target <redis://[:password@]host:port | http://host:port> [options]
  --target URL     where frames go (default REDIS_URL: a password there stays out of the process list)
  --sensors N      simulated devices (default 10)
  --rate R         frames per second, all sensors together (default 100)
  --duration S     seconds to run; the simulator stops by itself (default 10)
  --profile P      pressure | gas | multi | mixed (default mixed)
  --level L        security level 0-3 (default 1; 1-3 need NANOGRIDATA_SECRET_<MODEL> for each model)
  --stream NAME    Redis stream (default INGEST_STREAM or ocean:frames)
  --batch N        frames per Redis pipeline / HTTP request (default 50; the service takes at most
                   FRAMES_MAX_PER_BODY, default 1024, per request)
  --seed N         seed of the value generator (default: clock)
A redis:// target gets XADD <stream> * frame <bytes>; an http:// target gets
POST <target>/api/ocean/telemetry/frames with concatenated frames.
`;

class UsageError extends Error {}

function num(name: string, text: string | undefined, fallback: number, opts: { int?: boolean; min: number; max: number }): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || n < opts.min || n > opts.max) {
    throw new UsageError(`--${name} must be ${opts.int ? 'an integer' : 'a number'} in ${opts.min}..${opts.max}, got ${text}`);
  }
  return n;
}

export function parseSimulateArgs(argv: string[], env: Env): SimulationOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        target: { type: 'string' },
        sensors: { type: 'string' },
        rate: { type: 'string' },
        duration: { type: 'string' },
        profile: { type: 'string' },
        level: { type: 'string' },
        stream: { type: 'string' },
        batch: { type: 'string' },
        seed: { type: 'string' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const target = values.target ?? (env.REDIS_URL || undefined);
  if (target === undefined) throw new UsageError('--target is required (or set REDIS_URL)');
  if (!/^(rediss?|https?):\/\/./.test(target)) throw new UsageError(`--target must be redis://… or http://…, got ${maskUrl(target)}`);
  const profile = values.profile ?? 'mixed';
  if (!(SIM_PROFILES as readonly string[]).includes(profile)) {
    throw new UsageError(`--profile must be one of ${SIM_PROFILES.join(', ')}, got ${profile}`);
  }
  if (values.stream === '') throw new UsageError('--stream must not be empty');
  return {
    target,
    sensors: num('sensors', values.sensors, 10, { int: true, min: 1, max: 1_000_000 }),
    rate: num('rate', values.rate, 100, { min: 0.001, max: 10_000_000 }),
    durationS: num('duration', values.duration, 10, { min: 0.001, max: 7 * 86400 }),
    profile: profile as SimProfile,
    level: num('level', values.level, 1, { int: true, min: 0, max: 3 }),
    stream: values.stream ?? loadIngestStream(env),
    batchSize: num('batch', values.batch, 50, { int: true, min: 1, max: 10_000 }),
    seed: values.seed === undefined ? undefined : num('seed', values.seed, 0, { int: true, min: 0, max: 0xffffffff }),
    secrets: loadNanogridataConfig(env).secrets,
  };
}

/** One progress line; redrawn in place on a terminal, one line per report otherwise (logs, CI). */
function progressWriter(stderr: NodeJS.WriteStream): { update(p: SimulationProgress): void; end(): void } {
  let width = 0;
  return {
    update(p) {
      const line = `${p.elapsedS.toFixed(1)}s  sent ${p.sent}  rate ${p.rate.toFixed(1)}/s  errors ${p.errors}`;
      if (stderr.isTTY) {
        stderr.write(`\r${line.padEnd(width)}`);
        width = Math.max(width, line.length);
      } else {
        stderr.write(`${line}\n`);
      }
    },
    end() {
      if (stderr.isTTY && width > 0) stderr.write('\n');
    },
  };
}

async function main(): Promise<number> {
  let options: SimulationOptions;
  try {
    options = parseSimulateArgs(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`simulate: ${err.message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  // Ctrl-C stops early but still prints the summary.
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once('SIGINT', onSigint);
  const progress = progressWriter(process.stderr);
  try {
    const summary = await runSimulation({ ...options, signal: abort.signal, onProgress: progress.update });
    progress.end();
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    const refused = summary.rejected ?? 0;
    if (summary.errors > 0) process.stderr.write(`simulate: ${summary.errors} of ${summary.errors + summary.sent} frames did not get there: ${summary.firstError ?? 'unknown error'}\n`);
    if (refused > 0) {
      const why = Object.entries(summary.rejectedReasons ?? {}).map(([reason, n]) => `${reason} ${n}`).join(', ');
      // bad_mac / no_secret mostly mean the two sides hold different NANOGRIDATA_SECRET_* values.
      process.stderr.write(`simulate: the service refused ${refused} of ${summary.sent} frames (${why})\n`);
    }
    return summary.errors === 0 && refused === 0 ? 0 : 1;
  } catch (err) {
    progress.end();
    // Setup problems (a missing secret) are usage errors; anything else (target unreachable) is a failed run.
    process.stderr.write(`simulate: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof SimulationSetupError ? 2 : 1;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

if (isMainModule(import.meta.url)) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`simulate: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
