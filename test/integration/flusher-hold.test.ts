import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/frames.js';
import { createUserWithSession, type TestUser } from '../helpers/sessions.js';

describe('the flusher held for a backup', () => {
  let t: TestApp;
  let user: TestUser;

  beforeEach(async () => {
    t = await createTestApp({ start: true, env: { FLUSH_INTERVAL_MS: '10' } });
    user = await createUserWithSession(t, 'hal');
  });
  afterEach(() => t.close());

  const ingest = async (v: number) => {
    const res = await t.app.inject({ method: 'POST', url: '/api/ocean/telemetry/ingest', headers: user.auth, payload: { sensor_id: 'HOLD-1', data: { v } } });
    expect(res.statusCode).toBe(200);
    return res.json<{ id: number }>().id;
  };

  it('moves nothing into DuckDB while held, ingest goes on, and everything moves once released', async () => {
    const first = await ingest(1);
    await waitFor(() => t.service.flusher.status().high_water === first, { what: 'first reading flushed' });
    const ids = await t.service.flusher.pausedWhile(async () => {
      const ids = [await ingest(2), await ingest(3)];
      // Twenty flush intervals: an unheld flusher would have taken them within one.
      await new Promise((r) => setTimeout(r, 200));
      expect(t.service.flusher.status().high_water).toBe(first);
      expect(t.service.store.buffer.counts().unprocessed).toBe(2);
      return ids;
    });
    await waitFor(() => t.service.flusher.status().high_water === ids[1], { what: 'held readings flushed after release' });
    const rows = await t.service.analytics.all('test', "SELECT count(*)::INTEGER AS n FROM measurements WHERE sensor_id = 'HOLD-1'");
    expect(rows[0]!.n).toBe(3);
  });
});
