import { launchTsx } from './child-process.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a CLI entry point to its end (see launchTsx), feeding `input` on stdin; SIGKILL after `timeoutMs`. */
export async function runTsx(script: string, args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  const child = launchTsx(script, args, { env: opts.env, input: opts.input ?? '', keep: Infinity });
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
  try {
    await new Promise<void>((resolve, reject) => {
      child.proc.once('error', reject);
      child.proc.once('close', () => resolve());
    });
    return { code: child.proc.exitCode, stdout: child.stdout(), stderr: child.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

/** The repository root, for tests that name files in it. */
export { REPO_ROOT } from './child-process.js';
