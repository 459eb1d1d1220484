import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDecoder } from '../../src/nanogridata/decoder.js';
import { startRedis } from '../helpers/redis-server.js';
import type { RedisServer } from '../helpers/redis-server.js';
import { runTsx } from '../helpers/run-cli.js';

const MODELS = [0x10, 0x20, 0x30, 0x40];

describe('sensor simulator against a spawned redis-server', () => {
  let server: RedisServer;
  let redis: Redis;

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url, { lazyConnect: true });
    await redis.connect();
  });

  afterAll(async () => {
    await redis?.quit();
    await server?.stop();
  });

  it('XADDs signed frames of every model that all decode, as many as its summary says', async () => {
    const secrets = new Map(MODELS.map((m) => [m, randomBytes(32)]));
    const env = Object.fromEntries(
      [...secrets].map(([m, s]) => [`NANOGRIDATA_SECRET_${m.toString(16).toUpperCase()}`, s.toString('hex')]),
    );
    const stream = `test:sim:${randomUUID()}`;
    const run = await runTsx(
      'src/cli/simulate.ts',
      ['--target', server.url, '--sensors', '8', '--rate', '150', '--duration', '2', '--profile', 'mixed', '--level', '1', '--stream', stream],
      { env },
    );
    expect(run.stderr).toMatch(/sent \d+/); // the progress line, plain since stderr is not a TTY
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { sent: number; errors: number; stream: string };
    expect(summary).toMatchObject({ errors: 0, stream });
    expect(summary.sent).toBeGreaterThan(200); // ~300 expected at 150/s for 2 s

    const entries = await redis.xrangeBuffer(stream, '-', '+');
    expect(entries).toHaveLength(summary.sent);
    const decoder = createDecoder({ config: { secrets, acceptUnsigned: false, maxDriftS: 3600 } });
    const models = new Set<number>();
    const devices = new Set<string>();
    for (const [, fields] of entries) {
      expect(fields[0]!.toString()).toBe('frame');
      const result = decoder.decode(fields[1]!);
      expect(result).toMatchObject({ ok: true });
      if (!result.ok) continue;
      models.add(result.header.model_id);
      devices.add(result.device_id);
      expect(result.records.length).toBeGreaterThan(0);
    }
    expect([...models].sort((a, b) => a - b)).toEqual(MODELS);
    expect(devices.size).toBe(8);
  });
});
