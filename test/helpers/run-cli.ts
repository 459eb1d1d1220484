import { finished, launchTsx, type Finished } from './child-process.js';

/** Runs a CLI entry point to its end (see launchTsx), feeding `input` on stdin; SIGKILL after `timeoutMs`. */
export function runTsx(script: string, args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<Finished> {
  return finished(launchTsx(script, args, { env: opts.env, input: opts.input ?? '', keep: Infinity }), opts.timeoutMs);
}
