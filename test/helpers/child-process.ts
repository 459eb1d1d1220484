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

export interface LaunchOptions {
  env?: NodeJS.ProcessEnv;
  /** Working directory; the repository root by default. */
  cwd?: string;
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string;
  /** Characters of output kept per stream (default 20,000). */
  keep?: number;
  /** In its own process group, so that `process.kill(-pid)` reaches what it starts. */
  detached?: boolean;
}

/** Spawns a process, keeping the tail of its output for assertions and failure messages. */
export function launch(command: string, args: string[], opts: LaunchOptions = {}): Child {
  const keep = opts.keep ?? 20_000;
  const proc = spawn(command, args, {
    cwd: opts.cwd ?? REPO_ROOT,
    env: opts.env ?? process.env,
    detached: opts.detached ?? false,
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
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
  opts: Omit<LaunchOptions, 'env'> & { env?: Record<string, string | undefined>; inherit?: boolean; nodeArgs?: string[] } = {},
): Child {
  const { env: extra, inherit, nodeArgs, ...launchOpts } = opts;
  const env: NodeJS.ProcessEnv = {};
  if (inherit !== false) {
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NANOGRIDATA_')) env[k] = v;
  }
  Object.assign(env, extra);
  return launch(process.execPath, [...(nodeArgs ?? []), '--import', 'tsx', script, ...args], { ...launchOpts, env });
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Waits for a launched process to end and its output to be read; SIGKILL after `timeoutMs`. */
export async function finished(child: Child, timeoutMs = 20_000): Promise<Finished> {
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), timeoutMs);
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

/** Resolves with the exit code (null after a signal) once the process has exited, at once if it already has. */
export function exited(proc: ChildProcess): Promise<number | null> {
  return new Promise((resolve) =>
    proc.exitCode !== null || proc.signalCode !== null ? resolve(proc.exitCode) : proc.once('exit', (code) => resolve(code)),
  );
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
