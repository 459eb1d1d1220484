import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Whether the module at `moduleUrl` is the script node was started with (run, not imported by a
 * test). Compared by real path: started through a symlink, argv[1] is the link while the module's
 * URL is its target.
 */
export function isMainModule(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === fileURLToPath(moduleUrl);
  } catch {
    return false;
  }
}

/** What a command writes to: stdout, stderr. */
export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

/**
 * Runs `command` as the process's main module (not when a test imports it): its resolved number is
 * the exit code; anything it throws is printed under its name with exit code 1.
 */
export function runAsMain(moduleUrl: string, name: string, command: (argv: string[], env: NodeJS.ProcessEnv, io: CommandIo) => Promise<number>): void {
  if (!isMainModule(moduleUrl)) return;
  // The commands run through here (backup, restore) write copies of ocean.db, which holds device
  // secrets: what they create is the user's alone, as the service's own files are (main.ts).
  process.umask(0o077);
  command(process.argv.slice(2), process.env, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
