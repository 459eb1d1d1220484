import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_REJECTED_LISTED } from '../../src/ingest/frames-result.js';
import { MAX_BAD_MACS_PER_BODY } from '../../src/ingest/pipeline.js';
import { encodeFrame } from '../../src/nanogridata/encoder.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { pressureFrames, pressureSecret, waitFor } from '../helpers/frames.js';

/**
 * What an anonymous caller of POST /telemetry/frames can hold: bodies in flight, body time, bodies
 * per minute, MACs verified per body. Over real sockets on loopback (inject() has no slow client).
 */
describe('frames endpoint limits', () => {
  let t: TestApp | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await t?.close();
    t = undefined;
  });

  const { secret, env } = pressureSecret();
  const start = async (extra: Record<string, string>) => {
    t = await createTestApp({ env: { ...env, ...extra } });
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    return { base, port: Number(new URL(base).port) };
  };
  const postFrames = (base: string, body: Buffer) =>
    fetch(`${base}/api/ocean/telemetry/frames`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });

  /**
   * A client that announces a large body, sends a few bytes and stalls (or, with `trickle`, sends
   * that many bytes every 100 ms). Resolves with what the server answered, if anything, once the
   * socket closes. `from` is the client's own loopback address (Linux routes all of 127/8).
   */
  const slowBody = (port: number, options: { from?: string; trickle?: number } = {}) =>
    new Promise<{ socket: Socket; answer: Promise<string> }>((resolve) => {
      const socket = connect({ port, host: '127.0.0.1', localAddress: options.from ?? '127.0.0.1' }, () => {
        socket.write(
          'POST /api/ocean/telemetry/frames HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n' +
            `content-length: ${900 * 1024}\r\n\r\nNGD`,
        );
        let text = '';
        const trickle = options.trickle ? setInterval(() => socket.write(Buffer.alloc(options.trickle!, 0x20)), 100) : undefined;
        socket.on('data', (d) => (text += d.toString('latin1')));
        socket.on('error', () => {});
        resolve({ socket, answer: new Promise((done) => socket.on('close', () => (clearInterval(trickle), done(text)))) });
      });
      sockets.push(socket);
    });

  /** ocean_frames_rejected_total by reason, as /metrics shows it. */
  const rejectedMetric = async (base: string) => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const byReason: Record<string, number> = {};
    for (const m of text.matchAll(/^ocean_frames_rejected_total\{reason="([^"]+)"\} (\d+)$/gm)) byReason[m[1]!] = Number(m[2]);
    return byReason;
  };

  const timeHealth = async (base: string) => {
    const t0 = performance.now();
    const res = await fetch(`${base}/health`);
    expect(res.status).toBe(200);
    await res.text();
    return performance.now() - t0;
  };

  it('holds only so many bodies at once, answers 503 beyond, cuts a stalled body off, and stays responsive', async () => {
    // One address may take every slot here: this is the bound over all addresses.
    const { base, port } = await start({ FRAMES_MAX_IN_FLIGHT: '4', FRAMES_MAX_IN_FLIGHT_PER_ADDRESS: '100', REQUEST_TIMEOUT_MS: '1500', FRAMES_RATE_LIMIT: '0' });
    const held = await Promise.all(Array.from({ length: 4 }, () => slowBody(port)));
    // The server has seen the four requests once it refuses the fifth.
    const refused = await waitFor(async () => {
      const res = await postFrames(base, pressureFrames({ count: 1, devices: 1, secret }).frames[0]!);
      return res.status === 503 ? res : undefined;
    }, { timeoutMs: 5000, what: 'a 503 while four bodies are in flight' });
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toMatchObject({ statusCode: 503, error: 'unavailable', detail: expect.stringMatching(/in flight/) });
    const extra = await Promise.all(Array.from({ length: 20 }, () => slowBody(port)));
    for (let i = 0; i < 5; i++) expect(await timeHealth(base)).toBeLessThan(1000);

    // Every stalled client is answered (408 for the admitted, 503 for the rest) or dropped within the time limit and Node's 1 s check.
    const answers = await Promise.all([...held, ...extra].map((c) => c.answer));
    expect(answers.slice(0, 4).every((a) => a === '' || a.startsWith('HTTP/1.1 408'))).toBe(true);
    expect(answers.slice(4).every((a) => a.startsWith('HTTP/1.1 503'))).toBe(true);

    // Slots are free again.
    const ok = await postFrames(base, pressureFrames({ count: 3, devices: 1, secret }).frames.reduce((a, b) => Buffer.concat([a, b])));
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ accepted: 3, rejected: [] });
  }, 20_000);

  it('gives each address a share of the bodies in flight: slow bodies from one address do not turn another away', async () => {
    // No minimum rate and a long time limit: the stalled bodies stay held for the whole test.
    const { base, port } = await start({ FRAMES_MIN_BODY_RATE: '0', REQUEST_TIMEOUT_MS: '600000', FRAMES_RATE_LIMIT: '0' });
    const hog = await Promise.all(Array.from({ length: 16 }, () => slowBody(port, { from: '127.0.0.2' })));
    // All but its share (4) are answered at once, before their bodies are read.
    const answered = await waitFor(
      async () => {
        const texts = await Promise.all(hog.map((c) => Promise.race([c.answer, new Promise<null>((r) => setTimeout(() => r(null), 10))])));
        return texts.filter((a) => a !== null).length === 12 ? texts.filter((a): a is string => a !== null) : undefined;
      },
      { timeoutMs: 15_000, what: '12 of 16 bodies from one address refused' },
    );
    for (const a of answered) {
      expect(a).toMatch(/^HTTP\/1.1 429 /);
      expect(a).toMatch(/retry-after: 1/i);
      expect(a).toContain('"error":"too_many_in_flight"');
    }
    // Another address is served (16 slots in all, 4 taken).
    const res = await postFrames(base, pressureFrames({ count: 2, devices: 1, secret }).frames.reduce((a, b) => Buffer.concat([a, b])));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ accepted: 2, rejected: [] });
  }, 30_000);

  it('cuts a body that arrives slower than FRAMES_MIN_BODY_RATE after the grace with 408, and frees its slot', async () => {
    // One slot in all, a time limit far beyond the test: only the minimum rate can free it.
    const { base, port } = await start({ FRAMES_MAX_IN_FLIGHT: '1', FRAMES_MIN_BODY_RATE: '2048', FRAMES_BODY_GRACE_MS: '500', REQUEST_TIMEOUT_MS: '600000', FRAMES_RATE_LIMIT: '0' });
    // 100 bytes every 100 ms: 1,000 bytes/s, half the minimum.
    const slow = await slowBody(port, { trickle: 100 });
    const answer = await slow.answer;
    expect(answer).toMatch(/^HTTP\/1.1 408 /);
    expect(answer).toContain('"error":"body_too_slow"');
    expect(answer).toMatch(/slower than 2048 bytes\/s/);
    // The slot is free again (the cut body's request is over).
    const ok = await waitFor(async () => {
      const res = await postFrames(base, pressureFrames({ count: 1, devices: 1, secret }).frames[0]!);
      return res.status === 200 ? res : undefined;
    }, { timeoutMs: 10_000, what: 'the slot freed' });
    expect(await ok.json()).toMatchObject({ accepted: 1, rejected: [] });
  }, 30_000);

  it('stops verifying a body after a few bad MACs, and answers a few rejections plus counts by reason', async () => {
    const { base } = await start({ FRAMES_RATE_LIMIT: '0' });
    const metricsBefore = await rejectedMetric(base);
    const forged = pressureFrames({ count: 1000, devices: 50, secret: Buffer.alloc(32, 7) }).frames;
    const body = Buffer.concat(forged);

    const res = await postFrames(base, body);
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { accepted: number; rejected: Array<{ index: number; reason: string }> };
    expect(answer).toEqual({
      accepted: 0,
      // The first few, in body order; the rest only counted.
      rejected: Array.from({ length: MAX_REJECTED_LISTED }, (_, index) => ({ index, reason: 'bad_mac' })),
      rejected_count: 1000,
      rejected_by_reason: { bad_mac: MAX_BAD_MACS_PER_BODY, not_verified: 1000 - MAX_BAD_MACS_PER_BODY },
    });
    // The metric counts every frame, by the reasons answered.
    const metricsAfter = await rejectedMetric(base);
    expect(metricsAfter.bad_mac! - (metricsBefore.bad_mac ?? 0)).toBe(MAX_BAD_MACS_PER_BODY);
    expect(metricsAfter.not_verified! - (metricsBefore.not_verified ?? 0)).toBe(1000 - MAX_BAD_MACS_PER_BODY);

    // Eight clients flooding; /health keeps answering.
    let flooding = true;
    const flood = Array.from({ length: 8 }, async () => {
      let sent = 0;
      while (flooding && sent < 40) {
        await (await postFrames(base, body)).arrayBuffer();
        sent++;
      }
    });
    await new Promise((r) => setTimeout(r, 200));
    const times: number[] = [];
    for (let i = 0; i < 10; i++) times.push(await timeHealth(base));
    flooding = false;
    await Promise.all(flood);
    times.sort((a, b) => a - b);
    // Without the early stop the median was ~2.2 s; the margin leaves room for a loaded machine.
    expect(times[5]!).toBeLessThan(500);

    // A genuine body beside the flood is still stored.
    const genuine = await postFrames(base, pressureFrames({ count: 2, devices: 1, secret, prefix: 'G' }).frames.reduce((a, b) => Buffer.concat([a, b])));
    expect(await genuine.json()).toEqual({ accepted: 2, rejected: [], rejected_count: 0, rejected_by_reason: {} });
  }, 30_000);

  it('refuses a body of more frames than FRAMES_MAX_PER_BODY whole (413, nothing stored)', async () => {
    const { base } = await start({ FRAMES_RATE_LIMIT: '0', FRAMES_MAX_PER_BODY: '8' });
    const frames = pressureFrames({ count: 9, devices: 3, secret }).frames;
    const tooMany = await postFrames(base, Buffer.concat(frames));
    expect(tooMany.status).toBe(413);
    expect(await tooMany.json()).toMatchObject({ statusCode: 413, error: 'too_many_frames', detail: expect.stringMatching(/more than 8 frames/) });
    expect((await t!.store.buffer.counts()).rows).toBe(0);
    expect(await t!.count()).toBe(0);
    // At the limit the body is taken (its frames are new: the refused body stored nothing).
    expect(await (await postFrames(base, Buffer.concat(frames.slice(0, 8)))).json()).toMatchObject({ accepted: 8, rejected: [] });
  });

  it('refuses the 1 MiB body of 65,536 minimal frames at the default limit, with a small answer', async () => {
    const { base } = await start({ FRAMES_RATE_LIMIT: '0' });
    const minimal = encodeFrame({ modelId: 0x10, level: 0, timestamp: Math.floor(Date.now() / 1000), payload: new Uint8Array(0) });
    expect(minimal.length).toBe(16);
    const res = await postFrames(base, Buffer.concat(Array.from({ length: 65_536 }, () => minimal)));
    expect(res.status).toBe(413);
    const text = await res.text();
    expect(text.length).toBeLessThan(1000);
    expect(JSON.parse(text)).toMatchObject({ error: 'too_many_frames', detail: expect.stringMatching(/more than 1024 frames/) });
    expect(await rejectedMetric(base)).toEqual({});
  });

  it('answers 415 before reading a body that is not application/octet-stream', async () => {
    const { base } = await start({});
    const frame = pressureFrames({ count: 1, devices: 1, secret }).frames[0]!;
    for (const headers of [{}, { 'content-type': 'application/json' }, { 'content-type': 'text/plain' }] as Array<Record<string, string>>) {
      const res = await fetch(`${base}/api/ocean/telemetry/frames`, { method: 'POST', headers, body: frame });
      expect(res.status).toBe(415);
      expect(await res.json()).toMatchObject({ statusCode: 415, error: 'unsupported_media_type', detail: expect.stringMatching(/octet-stream/) });
    }
    const ok = await postFrames(base, frame);
    expect(await ok.json()).toMatchObject({ accepted: 1, rejected: [] });
  });

  it('answers 429 with the error shape past the per-client rate', async () => {
    const { base } = await start({ FRAMES_RATE_LIMIT: '3' });
    const frames = pressureFrames({ count: 4, devices: 1, secret }).frames;
    for (const f of frames.slice(0, 3)) expect((await postFrames(base, f)).status).toBe(200);
    const limited = await postFrames(base, frames[3]!);
    expect(limited.status).toBe(429);
    expect(await limited.json()).toMatchObject({ statusCode: 429, error: 'rate_limited', detail: expect.stringMatching(/retry in/) });
    // Other routes are not limited.
    expect(await timeHealth(base)).toBeGreaterThan(0);
  });
});
