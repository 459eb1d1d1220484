import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { READING_LIMITS } from '../../src/ingest/reading.js';
import { launchTsx, stop } from '../helpers/child-process.js';
import { waitFor } from '../helpers/frames.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

const ADMIN = 'heap-test-admin-token-0123';

describe('a backlog of the biggest readings under a small heap', () => {
  let redisServer: RedisServer;
  let dir: TempDir;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    redisServer = await startRedis();
    dir = await makeTempDir('ocean-heap-');
  });
  afterAll(async () => {
    await stop(child, { signal: 'SIGKILL' });
    await redisServer.stop();
    await dir.cleanup();
  });

  it('commits 400 readings of 1,000 records each to DuckDB without running out of memory, and refuses a bigger one', { timeout: 120_000 }, async () => {
    const redis = new Redis(redisServer.url);
    const reading = (i: number, fields: number = READING_LIMITS.records) =>
      JSON.stringify(Object.fromEntries(Array.from({ length: fields }, (_, k) => [`metric_${k}`, i + k / 1000])));
    const p = redis.pipeline();
    for (let i = 0; i < 400; i++) p.xadd('heap:frames', '*', 'sensor_id', `BIG-${i % 4}`, 'data', reading(i));
    p.xadd('heap:frames', '*', 'sensor_id', 'TOO-BIG', 'data', reading(0, READING_LIMITS.records + 1));
    await p.exec();

    const port = await freePort();
    const service = launchTsx('src/main.ts', [], {
      nodeArgs: ['--max-old-space-size=96'],
      env: { PORT: String(port), DATA_DIR: dir.path, REDIS_URL: redisServer.url, INGEST_STREAM: 'heap:frames', ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'warn' },
    });
    child = service.proc;
    const status = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/api/ocean/status`, { headers: { authorization: `Bearer ${ADMIN}` } }).catch(() => undefined);
      return res?.ok ? ((await res.json()) as { telemetry_buffer: { rows: number; unprocessed: number } }) : undefined;
    };
    await waitFor(async () => {
      if (child!.exitCode !== null) throw new Error(`the service died: ${service.stderr().slice(-2000)}`);
      const s = await status();
      return s && s.telemetry_buffer.rows === 400 && s.telemetry_buffer.unprocessed === 0;
    }, { what: 'every reading committed', timeoutMs: 100_000, intervalMs: 250 });
    const peakMb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
    expect(await redis.xlen('ocean:frames:dead')).toBe(1);
    const [, fields] = (await redis.xrange('ocean:frames:dead', '-', '+'))[0]!;
    expect(fields[fields.indexOf('reason') + 1]).toBe('bad_reading');
    expect(child.exitCode).toBeNull();
    console.log(`peak RSS ${peakMb.toFixed(0)} MB for 400,000 records under a 96 MB heap`);
    redis.disconnect();
  });
});
