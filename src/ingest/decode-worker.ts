/** Worker thread entry: decodes batches of frames (decode-batch.ts) off the main thread. */
import { parentPort } from 'node:worker_threads';
import type { NanogridataConfig } from '../config.js';
import { buffersOf, decodeBatch, type DecodeRequest } from './decode-batch.js';
import type { WorkerMessage } from './decode-pool.js';

let config: NanogridataConfig | undefined;
let deviceSecrets = new Map<string, Buffer>();

// Buffers arrive as plain Uint8Arrays; the decoder wants Buffers (views, no copy).
const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

parentPort!.on('message', (message: WorkerMessage) => {
  if (message.type === 'config') {
    config = { ...message.config, secrets: new Map([...message.config.secrets].map(([model, s]) => [model, asBuffer(s)])) };
    return;
  }
  if (message.type === 'device-secrets') {
    deviceSecrets = new Map([...message.secrets].map(([id, s]) => [id, asBuffer(s)]));
    return;
  }
  const request: DecodeRequest = message.request;
  try {
    const out = decodeBatch(request, config!, deviceSecrets);
    parentPort!.postMessage({ id: message.id, out }, buffersOf(out));
  } catch (err) {
    parentPort!.postMessage({ id: message.id, error: err instanceof Error ? err.message : String(err) });
  }
});
