import { spawnSync } from 'node:child_process';

/**
 * System tools some tests need but `npm test` on a fresh machine may lack (Debian's prometheus,
 * docker-compose). Outside CI a missing tool skips those tests with one line naming the tool and the
 * install command; with CI=true (.ci/run installs them) a missing tool fails the file instead.
 * Returns true when the tests should be skipped.
 */
export function skipWithout(what: string, tools: readonly string[], install: string): boolean {
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return false;
  const line = `${what}: needs ${missing.join(', ')} on PATH (${install})`;
  if (process.env.CI === 'true') throw new Error(`${line}; CI requires it (.ci/run installs it)`);
  console.warn(`skipping ${line}`);
  return true;
}
