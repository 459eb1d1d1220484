import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runTsx } from '../helpers/run-cli.js';
import { VECTORS_PATH } from '../helpers/vectors.js';

const [first, ...cases] = readFileSync(VECTORS_PATH, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Record<string, unknown>);
const config = first!.config as { now: number; secrets: Record<string, string> };
const byName = (name: string) => {
  const c = cases.find((v) => v.name === name);
  if (!c) throw new Error(`no vector ${name}`);
  return c as { hex: string; expect: Record<string, unknown> };
};

/** The vectors' configuration as the tool reads it: environment variables. */
const vectorEnv: Record<string, string> = {
  NANOGRIDATA_NOW: String(config.now),
  NANOGRIDATA_ACCEPT_UNSIGNED: 'true',
  NANOGRIDATA_MAX_DRIFT_S: '3600',
  ...Object.fromEntries(Object.entries(config.secrets).map(([m, hex]) => [`NANOGRIDATA_SECRET_${m}`, hex])),
};

describe('frames tool (npm run frames)', () => {
  it('decodes one hex frame per stdin line into one JSON line each, with the clock pinned by NANOGRIDATA_NOW', async () => {
    const names = ['ok/pressure/level1', 'ok/legacy-gas/level2', 'reject/bad_mac/wrong-secret', 'reject/timestamp_drift/plus-3601'];
    const vectors = names.map(byName);
    // The first frame again at the end: within one run that is a replay.
    const input = [...vectors.map((v) => v.hex), '', vectors[0]!.hex].join('\n') + '\n';
    const run = await runTsx('src/cli/frames.ts', ['decode'], { env: vectorEnv, input });
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(lines).toEqual([...vectors.map((v) => v.expect), { ok: false, reason: 'replay' }]);
  });

  it('encodes a frame that the decoder accepts with the reading it was given', async () => {
    const env = { ...vectorEnv, NANOGRIDATA_ACCEPT_UNSIGNED: 'false' };
    const enc = await runTsx(
      'src/cli/frames.ts',
      ['encode', '--model', '0x10', '--level', '1', '--device', 'ESP32-CLI', '--value', '101325', '--lab', 'LAB-9', '--timestamp', String(config.now - 5)],
      { env },
    );
    expect(enc.code, enc.stderr).toBe(0);
    expect(enc.stdout).toMatch(/^c15301100101[0-9a-f]+\n$/);
    const dec = await runTsx('src/cli/frames.ts', ['decode'], { env, input: enc.stdout });
    expect(JSON.parse(dec.stdout)).toEqual({
      ok: true,
      header: { model_id: 16, payload_type: 1, security_level: 1, timestamp: config.now - 5, length: expect.any(Number) },
      device_id: 'ESP32-CLI',
      lab_id: 'LAB-9',
      records: [{ sensor_id: 'ESP32-CLI', metric: 'pressure', unit: 'Pa', ts: config.now - 5, value: 101325 }],
    });
  });

  it('refuses bad arguments with a usage message and exit code 2', async () => {
    const run = await runTsx('src/cli/frames.ts', ['encode', '--model', '0x10', '--level', '7', '--device', 'D', '--value', '1'], { env: vectorEnv });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--level must be an integer in 0\.\.3/);
    expect(run.stderr).toMatch(/usage:/);
    expect(run.stdout).toBe('');
  });
});
