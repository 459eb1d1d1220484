import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openService } from '../../src/service.js';
import { TEST_ADMIN_TOKEN } from '../helpers/app.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

describe('service.close()', () => {
  let temp: TempDir | undefined;
  afterEach(async () => {
    await temp?.cleanup();
  });

  it('runs every shutdown step when one fails, logs that failure, and rejects with it', async () => {
    temp = await makeTempDir('ocean-close-');
    const dataDir = temp.path;
    const lines: Array<{ level: number; msg: string; step?: string }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as (typeof lines)[number]);
        done();
      },
    });
    const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: TEST_ADMIN_TOKEN });
    const service = await openService(config, { logger: pino({ level: 'info' }, sink) });
    await service.start();
    // A step in the middle fails (as a DuckDB file on a vanished disk would).
    const closeAnalytics = service.analytics.close.bind(service.analytics);
    service.analytics.close = async () => {
      await closeAnalytics();
      throw new Error('analytics close failed');
    };

    await expect(service.close()).rejects.toThrow('analytics close failed');
    // The steps after it still ran: the SQLite store is closed.
    expect(service.store.db.open).toBe(false);
    expect(lines.filter((l) => l.msg === 'shutdown step failed').map((l) => l.step)).toEqual(['analytics']);
    // A second call answers the same outcome rather than closing twice.
    await expect(service.close()).rejects.toThrow('analytics close failed');
  });
});
