import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/frames.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

/** With nothing to flush the flusher sleeps for a minute; work must wake it (waitFor gives up after 5 s). */
describe('the flusher asleep with an empty buffer', () => {
  let t: TestApp;
  let alice: TestUser;

  beforeEach(async () => {
    t = await createTestApp({ start: true, env: { FLUSH_INTERVAL_MS: '10' } });
    alice = await createUserWithSession(t, 'alice');
  });
  afterEach(() => t.close());

  const ingest = async (sensor_id: string) => {
    const res = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: alice.auth, payload: { sensor_id, data: { v: 1 } } });
    expect(res.statusCode).toBe(200);
    return res.json<{ id: number }>().id;
  };
  const stored = async (sensor: string) =>
    (await t.service.analytics.all('test', 'SELECT count(*)::INTEGER AS n FROM measurements WHERE sensor_id = $1', [sensor]))[0]!.n as number;
  /** Ten flush intervals with nothing arriving: the flusher has gone to sleep. */
  const quiet = () => new Promise((r) => setTimeout(r, 100));

  it('is woken by a reading and flushes it', async () => {
    const first = await ingest('WAKE-1');
    await waitFor(() => t.service.flusher.status().high_water === first, { what: 'first reading flushed', timeoutMs: 5000 });
    await quiet();
    const second = await ingest('WAKE-1');
    await waitFor(() => t.service.flusher.status().high_water === second, { what: 'a reading after a quiet spell flushed', timeoutMs: 5000 });
    expect(await stored('WAKE-1')).toBe(2);
  });

  it('is woken by a queued purge and runs it', async () => {
    const bob = await createUserWithSession(t, 'bob');
    const id = await ingest('SQUAT-1');
    await waitFor(() => t.service.flusher.status().high_water === id, { what: 'the claimant reading flushed', timeoutMs: 5000 });
    expect(await stored('SQUAT-1')).toBe(1);
    await quiet();
    const assign = await t.app.inject({ method: 'POST', url: '/api/ocean/devices', headers: t.admin, payload: { device_id: 'SQUAT-1', owner_id: bob.id } });
    expect(assign.statusCode).toBe(200);
    await waitFor(() => t.service.store.devices.pendingPurges().length === 0, { what: 'the purge run', timeoutMs: 5000 });
    expect(await stored('SQUAT-1')).toBe(0);
  });
});
