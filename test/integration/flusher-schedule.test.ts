import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/frames.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

/**
 * When the flusher moves buffered readings into DuckDB: held for a backup, asleep with an empty
 * buffer (for a minute; work must wake it, and waitFor gives up after 5 s).
 */
describe('the flusher', () => {
  let t: TestApp;
  let alice: TestUser;

  beforeEach(async () => {
    t = await createTestApp({ start: true, env: { FLUSH_INTERVAL_MS: '10' } });
    alice = await createUserWithSession(t, 'alice');
  });
  afterEach(() => t.close());

  const ingest = async (sensor_id: string, v = 1) => {
    const res = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: alice.auth, payload: { sensor_id, data: { v } } });
    expect(res.statusCode).toBe(200);
    return res.json<{ id: number }>().id;
  };
  const stored = async (sensor: string) =>
    (await t.service.analytics.all('test', 'SELECT count(*)::INTEGER AS n FROM measurements WHERE sensor_id = $1', [sensor]))[0]!.n as number;
  const highWater = () => t.service.flusher.status().high_water;
  /** Ten flush intervals with nothing arriving: the flusher has gone to sleep. */
  const quiet = () => new Promise((r) => setTimeout(r, 100));

  it('moves nothing into DuckDB while held for a backup, ingest goes on, and everything moves once released', async () => {
    const first = await ingest('HOLD-1', 1);
    await waitFor(() => highWater() === first, { what: 'first reading flushed' });
    const ids = await t.service.flusher.pausedWhile(async () => {
      const ids = [await ingest('HOLD-1', 2), await ingest('HOLD-1', 3)];
      // Twenty flush intervals: an unheld flusher would have taken them within one.
      await new Promise((r) => setTimeout(r, 200));
      expect(highWater()).toBe(first);
      expect(t.service.store.buffer.counts().unprocessed).toBe(2);
      return ids;
    });
    await waitFor(() => highWater() === ids[1], { what: 'held readings flushed after release' });
    expect(await stored('HOLD-1')).toBe(3);
  });

  it('is woken from sleep by a reading and flushes it', async () => {
    const first = await ingest('WAKE-1');
    await waitFor(() => highWater() === first, { what: 'first reading flushed', timeoutMs: 5000 });
    await quiet();
    const second = await ingest('WAKE-1');
    await waitFor(() => highWater() === second, { what: 'a reading after a quiet spell flushed', timeoutMs: 5000 });
    expect(await stored('WAKE-1')).toBe(2);
  });

  it('is woken from sleep by a queued purge and runs it', async () => {
    const bob = await createUserWithSession(t, 'bob');
    const id = await ingest('SQUAT-1');
    await waitFor(() => highWater() === id, { what: 'the claimant reading flushed', timeoutMs: 5000 });
    expect(await stored('SQUAT-1')).toBe(1);
    await quiet();
    const assign = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: 'SQUAT-1', owner_id: bob.id } });
    expect(assign.statusCode).toBe(200);
    await waitFor(() => t.service.store.devices.pendingPurges().length === 0, { what: 'the purge run', timeoutMs: 5000 });
    expect(await stored('SQUAT-1')).toBe(0);
  });
});
