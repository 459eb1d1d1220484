import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { NanogridataConfig } from '../../src/config.js';
import { createDecoder } from '../../src/nanogridata/decoder.js';
import { SHARED_VECTORS_PATH, VECTORS_COPY_PATH, VECTORS_PATH } from '../helpers/vectors.js';

/** The vectors live in the shared folder beside the repository (also in CI's fresh clone). */

interface VectorConfig {
  now: number;
  accept_unsigned: boolean;
  max_drift_s: number;
  secrets: Record<string, string>;
}
interface VectorCase {
  name: string;
  hex: string;
  expect: Record<string, unknown>;
  config_override?: Partial<Pick<VectorConfig, 'accept_unsigned' | 'max_drift_s'>>;
}

const [first, ...rest] = readFileSync(VECTORS_PATH, 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '')
  .map((line) => JSON.parse(line) as unknown);
const vectorConfig = (first as { config: VectorConfig }).config;
const cases = rest as VectorCase[];

// One mutable config object: a case's override is applied to it and undone afterwards, so that the
// one decoder (and its replay memory) sees every case in file order.
const config: NanogridataConfig = {
  secrets: new Map(Object.entries(vectorConfig.secrets).map(([model, hex]) => [parseInt(model, 16), Buffer.from(hex, 'hex')])),
  acceptUnsigned: vectorConfig.accept_unsigned,
  maxDriftS: vectorConfig.max_drift_s,
};
const decoder = createDecoder({ config, now: () => vectorConfig.now });

describe('Nanogridata v1 shared vectors, in file order through one decoder', () => {
  it('has the 89 cases the README describes', () => {
    expect(cases).toHaveLength(89);
  });

  for (const c of cases) {
    it(`${c.name} → ${c.expect.ok ? 'accepted' : String(c.expect.reason)}`, () => {
      const saved = { ...config };
      if (c.config_override?.accept_unsigned !== undefined) config.acceptUnsigned = c.config_override.accept_unsigned;
      if (c.config_override?.max_drift_s !== undefined) config.maxDriftS = c.config_override.max_drift_s;
      try {
        const result = decoder.decode(Buffer.from(c.hex, 'hex'));
        if (result.ok && result.header.payload_type !== 1) {
          // Types 2–5 add the decoded map as `event` (the spec lets a decoder add fields).
          const { event, ...spec } = result;
          expect(event).toMatchObject({ device_id: c.expect.device_id });
          expect(spec).toEqual(c.expect);
        } else {
          expect(result).toEqual(c.expect);
        }
      } finally {
        Object.assign(config, saved);
      }
    });
  }
});

describe('the committed copy of the vectors', () => {
  it.skipIf(SHARED_VECTORS_PATH === undefined)('is identical to shared/vectors (refresh test/fixtures when the contract changes)', () => {
    expect(readFileSync(VECTORS_COPY_PATH, 'utf8')).toBe(readFileSync(SHARED_VECTORS_PATH!, 'utf8'));
  });
});
