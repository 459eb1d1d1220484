/**
 * CPU cost of hostile frame bodies (`npm run bench:frames`): what one POST /telemetry/frames of
 * the cheapest frames costs the service, in CPU seconds of the whole process (process.cpuUsage:
 * the decode worker and GC threads included) around app.inject, with the default configuration.
 *
 * Bodies: `minimal-1MiB` = 65,536 level-0 frames of 16 bytes (header + CRC, no payload), refused
 * `unsigned`; `…-unsigned-on` = the same with NANOGRIDATA_ACCEPT_UNSIGNED=true, so each is
 * CRC-checked, its (empty) payload decoded and looked up in the replay memory; `at-cap` = as many
 * minimal frames as one body may hold (FRAMES_MAX_PER_BODY, from the environment or the default):
 * the costliest body per byte that the service still decodes.
 * Each body is sent ROUNDS times after five to warm up; the report gives medians and the answer's size.
 */
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { encodeFrame } from '../src/nanogridata/encoder.js';
import { openService } from '../src/service.js';
import { makeTempDir } from '../test/helpers/temp-dir.js';

const ROUNDS = 31;
const MIB = 1024 * 1024;
const now = Math.floor(Date.now() / 1000);
const minimal = encodeFrame({ modelId: 0x10, level: 0, timestamp: now, payload: new Uint8Array(0) });

async function measure(name: string, env: Record<string, string>, frames: (config: ReturnType<typeof loadConfig>) => number) {
  const { path: dataDir, cleanup } = await makeTempDir('ocean-bench-frames-');
  const config = loadConfig({ DATA_DIR: dataDir, ADMIN_TOKEN: 'bench-admin-token-0123456789', FRAMES_RATE_LIMIT: '0', ...env });
  const service = await openService(config, { logger: pino({ level: 'silent' }) });
  try {
    await service.pipeline.ready();
    const count = frames(config);
    const body = Buffer.concat(Array.from({ length: count }, () => minimal));
    const post = () =>
      service.app.inject({ method: 'POST', url: '/api/ocean/telemetry/frames', headers: { 'content-type': 'application/octet-stream' }, payload: body });
    for (let i = 0; i < 5; i++) await post();
    const cpu: number[] = [];
    let status = 0;
    let answerBytes = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const before = process.cpuUsage();
      const res = await post();
      const used = process.cpuUsage(before);
      cpu.push((used.user + used.system) / 1e6);
      status = res.statusCode;
      answerBytes = res.rawPayload.length;
    }
    cpu.sort((a, b) => a - b);
    const median = cpu[Math.floor(ROUNDS / 2)]!;
    const row = { body: name, frames: count, bytes: body.length, status, answer_bytes: answerBytes, cpu_s: +median.toFixed(4), cpu_s_per_mib: +((median * MIB) / body.length).toFixed(4) };
    console.log(JSON.stringify(row));
  } finally {
    await service.close();
    await cleanup();
  }
}

// FRAMES_MAX_PER_BODY from the environment, to compare caps; else the default.
const cap: Record<string, string> = process.env.FRAMES_MAX_PER_BODY ? { FRAMES_MAX_PER_BODY: process.env.FRAMES_MAX_PER_BODY } : {};
const whole = () => MIB / minimal.length;
const atCap = (config: ReturnType<typeof loadConfig>) => Math.min(config.limits.framesPerBody, whole());
await measure('minimal-1MiB', cap, whole);
await measure('minimal-1MiB-unsigned-on', { ...cap, NANOGRIDATA_ACCEPT_UNSIGNED: 'true' }, whole);
await measure('at-cap', cap, atCap);
await measure('at-cap-unsigned-on', { ...cap, NANOGRIDATA_ACCEPT_UNSIGNED: 'true' }, atCap);
