/**
 * Frame tool.
 *   frames decode            one hex frame per stdin line → one JSON line per frame (the spec's decoded form)
 *   frames encode --model 0x10 --level 1 --device D --value V [...]   → one hex frame
 * Configuration comes from the service's environment (NANOGRIDATA_*), plus NANOGRIDATA_NOW to pin the clock.
 */
import { createInterface } from 'node:readline';
import { isMainModule } from './entry.js';
import { parseArgs } from 'node:util';
import { ConfigError, loadClockOverride, loadNanogridataConfig } from '../config.js';
import { createDecoder } from '../nanogridata/decoder.js';
import { encodeFrame, readingPayload } from '../nanogridata/encoder.js';
import { PROFILES } from '../nanogridata/profiles.js';

type Env = Record<string, string | undefined>;

export const USAGE = `usage:
  frames decode
      Reads one hex frame per line on stdin, prints one JSON line per frame:
      the decoded form, or {"ok":false,"reason":...}. Repeated frames in one run are replays.
  frames encode --model <id> --level <0-3> --device <id> --value <number>
                [--timestamp <unix s>] [--ts <unix s>] [--lab <id>] [--metric <name>] [--unit <unit>]
                [--payload-type <1-5>] [--legacy]
      Prints one hex frame holding one reading in the model's profile.
      --model     0x10 pressure, 0x20 gas, 0x30 / 0x40 / 0xff multi-sensor (0x-hex or decimal)
      --timestamp header timestamp (default: now); --ts the reading's own time (default: omitted)
      --metric    gas type for 0x20 (default CO2), sensor type for multi models (default temperature)
      --unit      unit for multi models (default °C); --legacy: C-firmware layout (0x10, 0x20)
environment:
  NANOGRIDATA_SECRET_<MODEL hex>  per-model secret, hex (levels 1-3)
  NANOGRIDATA_ACCEPT_UNSIGNED     accept level-0 frames when decoding (default false)
  NANOGRIDATA_MAX_DRIFT_S         timestamp window (default 300)
  NANOGRIDATA_NOW                 pins the clock, Unix seconds (default: system clock)
`;

export class UsageError extends Error {}

export interface CliIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Runs the tool; resolves to the process exit code (0 ok, 1 a line was not hex, 2 bad usage or configuration). */
export async function runFramesCli(argv: string[], env: Env, io: CliIo): Promise<number> {
  try {
    const [command, ...rest] = argv;
    if (command === 'decode') return await decodeCommand(rest, env, io);
    if (command === 'encode') return encodeCommand(rest, env, io);
    if (command === '--help' || command === '-h' || command === 'help') {
      io.stdout.write(USAGE);
      return 0;
    }
    throw new UsageError(command === undefined ? 'missing command' : `unknown command: ${command}`);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      io.stderr.write(`frames: ${err.message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}

function clock(env: Env): () => number {
  const pinned = loadClockOverride(env);
  return pinned === undefined ? () => Date.now() / 1000 : () => pinned;
}

async function decodeCommand(args: string[], env: Env, io: CliIo): Promise<number> {
  if (args.length > 0) throw new UsageError(`decode takes no arguments, got: ${args.join(' ')}`);
  const decoder = createDecoder({ config: loadNanogridataConfig(env), now: clock(env) });
  let status = 0;
  for await (const raw of createInterface({ input: io.stdin, crlfDelay: Infinity })) {
    const hex = raw.replace(/\s+/g, '').replace(/^0x/i, '');
    if (hex === '') continue;
    if (!/^([0-9a-fA-F]{2})*$/.test(hex)) {
      // Keeps one output line per input line; not a frame reason, since no frame was read.
      io.stdout.write(`${JSON.stringify({ ok: false, error: 'not hex' })}\n`);
      status = 1;
      continue;
    }
    io.stdout.write(`${JSON.stringify(decoder.decode(Buffer.from(hex, 'hex')))}\n`);
  }
  return status;
}

function parseIntArg(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in ${min}..${max}, got ${text}`);
  return n;
}

function encodeCommand(args: string[], env: Env, io: CliIo): number {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        model: { type: 'string' },
        level: { type: 'string' },
        device: { type: 'string' },
        value: { type: 'string' },
        timestamp: { type: 'string' },
        ts: { type: 'string' },
        lab: { type: 'string' },
        metric: { type: 'string' },
        unit: { type: 'string' },
        'payload-type': { type: 'string' },
        legacy: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const modelId = parseIntArg('model', values.model, 0, 0xff);
  const level = parseIntArg('level', values.level, 0, 3);
  if (modelId === undefined || level === undefined || values.device === undefined || values.value === undefined) {
    throw new UsageError('encode needs --model, --level, --device and --value');
  }
  if (!PROFILES.has(modelId)) throw new UsageError(`no profile for model 0x${modelId.toString(16)}`);
  if (values.device === '') throw new UsageError('--device must not be empty');
  const value = Number(values.value);
  if (values.value.trim() === '' || !Number.isFinite(value)) throw new UsageError(`--value must be a number, got ${values.value}`);
  const timestamp = parseIntArg('timestamp', values.timestamp, 0, 0xffffffff) ?? Math.floor(clock(env)());
  const ts = parseIntArg('ts', values.ts, 0, 0xffffffff);
  const payloadType = parseIntArg('payload-type', values['payload-type'], 1, 5) ?? 1;
  if (values.legacy && modelId !== 0x10 && modelId !== 0x20) throw new UsageError('--legacy is for models 0x10 and 0x20');

  const secret = loadNanogridataConfig(env).secrets.get(modelId);
  if (level > 0 && secret === undefined) {
    const name = `NANOGRIDATA_SECRET_${modelId.toString(16).toUpperCase().padStart(2, '0')}`;
    throw new UsageError(`level ${level} needs a secret: set ${name} (hex, at least 32 bytes), or use --level 0`);
  }
  let frame: Buffer;
  try {
    const payload = readingPayload(modelId, {
      deviceId: values.device,
      labId: values.lab,
      value,
      ts: values.legacy ? (ts ?? timestamp) : ts,
      metric: values.metric,
      unit: values.unit,
      legacy: values.legacy,
    });
    frame = encodeFrame({ modelId, payloadType, level, timestamp, payload, secret });
  } catch (err) {
    throw new UsageError((err as Error).message); // e.g. a device id too long for the legacy layout
  }
  io.stdout.write(`${frame.toString('hex')}\n`);
  return 0;
}

if (isMainModule(import.meta.url)) {
  runFramesCli(process.argv.slice(2), process.env, process).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`frames: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
