import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runTsx } from '../helpers/run-cli.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

/** main's handling of a ConfigError; which values are refused is test/unit/config.test.ts. */
describe('configuration errors at start-up', () => {
  let dir: TempDir;
  beforeEach(async () => {
    dir = await makeTempDir('ocean-config-');
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it('prints one line naming the variable and exits 1', async () => {
    const run = await runTsx('src/main.ts', [], { env: { DATA_DIR: dir.path, PORT: 'abc' } });
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^invalid configuration: PORT: /)]);
  });
});
