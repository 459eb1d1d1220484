import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { NanogridataConfig } from '../config.js';
import { startWorker } from '../worker-thread.js';
import { decodeBatch, type DecodeRequest, type DecodedBatch } from './decode-batch.js';

export type WorkerMessage =
  | { type: 'config'; config: NanogridataConfig }
  | { type: 'device-secrets'; secrets: Map<string, Uint8Array> }
  | { type: 'decode'; id: number; request: DecodeRequest };

type Reply = { id: number; out: DecodedBatch } | { id: number; error: string };

/**
 * The decode worker thread: HMAC, CBOR and record packing of every frame run there, so the main
 * thread keeps to I/O and the stores. Requests are answered in order; a worker that dies is
 * replaced, and what it had been given fails (the caller retries the batch).
 */
export class DecodeWorker {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (out: DecodedBatch) => void; reject: (err: Error) => void }>();
  private deviceSecrets = new Map<string, Uint8Array>();
  private closed = false;

  constructor(
    private readonly config: NanogridataConfig,
    private readonly logger: Logger,
  ) {}

  /** Starts the worker thread now (it takes a moment) rather than with the first batch. */
  async ready(): Promise<void> {
    const worker = this.worker ?? this.spawn();
    // A round trip: resolved once the worker has loaded and handled the configuration.
    await this.decode({ bytes: new Uint8Array(0), ends: new Uint32Array(0), deviceIds: [], nowS: 0 });
    if (this.worker !== worker) throw new Error('decode worker failed to start');
  }

  decode(request: DecodeRequest): Promise<DecodedBatch> {
    if (this.closed) return Promise.reject(new Error('decode worker is closed'));
    const worker = this.worker ?? this.spawn();
    const id = this.nextId++;
    return new Promise<DecodedBatch>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // The frames' bytes move to the worker (their buffer is the caller's to give: see DecodeRequest),
      // and the answer's buffers move back: nothing is copied on the way.
      const transfer = request.bytes.byteLength > 0 && request.bytes.byteOffset === 0 && request.bytes.byteLength === request.bytes.buffer.byteLength ? [request.bytes.buffer as ArrayBuffer] : [];
      worker.postMessage({ type: 'decode', id, request } satisfies WorkerMessage, transfer);
    });
  }

  /** Devices registered with secrets of their own; batches sent after this call use them. */
  setDeviceSecrets(secrets: ReadonlyMap<string, Buffer>): void {
    this.deviceSecrets = new Map(secrets);
    this.worker?.postMessage({ type: 'device-secrets', secrets: this.deviceSecrets } satisfies WorkerMessage);
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private spawn(): Worker {
    const worker = startWorker(import.meta.url, 'decode-worker');
    worker.postMessage({ type: 'config', config: this.config } satisfies WorkerMessage);
    worker.postMessage({ type: 'device-secrets', secrets: this.deviceSecrets } satisfies WorkerMessage);
    worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if ('error' in reply) p.reject(new Error(`decode failed: ${reply.error}`));
      else p.resolve(reply.out);
    });
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', (err) => {
      this.logger.error({ err }, 'decode worker failed; it will be restarted');
      fail(err);
    });
    worker.on('exit', (code) => {
      if (!this.closed) fail(new Error(`decode worker exited with code ${code}`));
    });
    this.worker = worker;
    return worker;
  }
}

/**
 * A batch of at most this many frames is decoded in the calling thread: a few frames cost some
 * tens of microseconds, less than the round trip to a worker, which at ordinary rates (a frame
 * at a time) would be most of a frame's way into analytics.
 */
const INLINE_FRAMES = 8;

/**
 * As many decode workers as the cores allow beside the main thread: each batch goes to the one
 * with the fewest batches in hand, so the reader, the decoders and the store overlap.
 */
export class DecodePool {
  private readonly workers: DecodeWorker[];
  private readonly load: number[];
  private deviceSecrets: ReadonlyMap<string, Buffer> = new Map();

  constructor(
    private readonly config: NanogridataConfig,
    logger: Logger,
    size = defaultPoolSize(),
  ) {
    this.workers = Array.from({ length: size }, () => new DecodeWorker(config, logger));
    this.load = this.workers.map(() => 0);
  }

  async ready(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.ready()));
  }

  async decode(request: DecodeRequest): Promise<DecodedBatch> {
    if (request.ends.length <= INLINE_FRAMES) return decodeBatch(request, this.config, this.deviceSecrets);
    let k = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[k]!) k = i;
    this.load[k]!++;
    try {
      return await this.workers[k]!.decode(request);
    } finally {
      this.load[k]!--;
    }
  }

  setDeviceSecrets(secrets: ReadonlyMap<string, Buffer>): void {
    this.deviceSecrets = new Map(secrets);
    for (const w of this.workers) w.setDeviceSecrets(secrets);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}

/** One decode worker per core beyond the main thread's, at least one, at most four. */
export function defaultPoolSize(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}
