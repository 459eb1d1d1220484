import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runTsx } from '../helpers/run-cli.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

/** Start-up with a bad configuration stops at once: exit code 1 and one line naming the variable. */
describe('configuration errors at start-up', () => {
  let dir: TempDir;
  beforeEach(async () => {
    dir = await makeTempDir('ocean-config-');
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['NANOGRIDATA_SECRET_10', 'short'],
    ['NANOGRIDATA_SECRET_10', 'ab'.repeat(16)],
    ['SESSION_TTL_S', '-5'],
    ['REDIS_URL', 'localhost:6379'],
    ['ADMIN_TOKEN', 'tiny'],
    ['LOG_LEVEL', 'loud'],
  ])('exits 1 naming %s when it is %s', async (variable, value) => {
    const run = await runTsx('src/main.ts', [], { env: { DATA_DIR: dir.path, PORT: '0', [variable]: value } });
    expect(run.code).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^invalid configuration: ${variable}: `));
    // A rejected secret or token is not echoed.
    if (/SECRET|TOKEN/.test(variable)) expect(run.stderr).not.toContain(value);
  });
});
