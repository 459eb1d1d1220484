import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Child {
  proc: ChildProcess;
  /** The last `keep` characters of each stream (both streams in arrival order for `output`). */
  stdout(): string;
  stderr(): string;
  output(): string;
}

/** Spawns a process in the repo root, keeping the tail of its output for assertions and failure messages. */
export function launch(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; keep?: number } = {}): Child {
  const keep = opts.keep ?? 20_000;
  const proc = spawn(command, args, { cwd: REPO_ROOT, env: opts.env ?? process.env, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  const text = { stdout: '', stderr: '', output: '' };
  const collect = (stream: 'stdout' | 'stderr') => (chunk: string) => {
    text[stream] = (text[stream] + chunk).slice(-keep);
    text.output = (text.output + chunk).slice(-keep);
  };
  proc.stdout!.setEncoding('utf8').on('data', collect('stdout'));
  proc.stderr!.setEncoding('utf8').on('data', collect('stderr'));
  if (opts.input !== undefined) proc.stdin!.end(opts.input);
  return { proc, stdout: () => text.stdout, stderr: () => text.stderr, output: () => text.output };
}

/**
 * Runs a TypeScript entry point of the repo (e.g. `src/main.ts`) in a child Node through the tsx loader,
 * as `npm run …` would. The parent's environment is passed on except NANOGRIDATA_* (so a test's frame
 * configuration is exactly what it states), or not at all with `inherit: false`.
 */
export function launchTsx(
  script: string,
  args: string[],
  opts: { env?: Record<string, string | undefined>; inherit?: boolean; nodeArgs?: string[]; input?: string; keep?: number } = {},
): Child {
  const env: NodeJS.ProcessEnv = {};
  if (opts.inherit !== false) {
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NANOGRIDATA_')) env[k] = v;
  }
  Object.assign(env, opts.env);
  return launch(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', script, ...args], { env, input: opts.input, keep: opts.keep });
}

/** Resolves once the process has exited (at once if it already has). */
export function exited(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => (proc.exitCode !== null || proc.signalCode !== null ? resolve() : proc.once('exit', () => resolve())));
}

/** Sends `signal` (SIGTERM by default), then SIGKILL after `timeoutMs`, and waits for the exit. */
export async function stop(proc: ChildProcess | undefined, opts: { signal?: NodeJS.Signals; timeoutMs?: number } = {}): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const done = exited(proc);
  proc.kill(opts.signal ?? 'SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
  await done;
  clearTimeout(timer);
}
