/**
 * Worker thread entry: the DuckDB analytics store (engine.ts) runs here, so that committing the
 * ingest path's batches (synchronous native work, a few microseconds per record) never occupies
 * the main thread that serves HTTP and Redis. client.ts is the other end.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { AnalyticsEngine, type AnalyticsEngineOptions } from './engine.js';
import { callDeadline } from './reader-pool.js';
import type { Call, Reply } from './client.js';
import { transferablesOf } from './transfer.js';

const options = workerData as Omit<AnalyticsEngineOptions, 'metrics' | 'logger'> & { logLevel: string };
const logger = pino({ level: options.logLevel });

let engine: AnalyticsEngine | undefined;
const opened = AnalyticsEngine.open({ ...options, logger }).then((e) => (engine = e));

/** What each call does with the engine; arguments and results are plain data. */
const handlers: Record<Call['method'], (e: AnalyticsEngine, args: never[]) => Promise<unknown>> = {
  all: (e, [op, sql, values]: never[]) => e.all(op, sql, values),
  exec: (e, [op, sql, values]: never[]) => e.exec(op, sql, values),
  commit: (e, [request]: never[]) => e.commit(request),
  ingestState: (e) => e.ingestState(),
  fingerprints: (e, [sinceS]: never[]) => e.fingerprints(sinceS),
  healthPing: (e) => e.healthPing(),
  sensorStats: (e, [sensorId, filter]: never[]) => e.sensorStats(sensorId, filter),
  timeseries: (e, [sensorId, filter]: never[]) => e.timeseries(sensorId, filter),
  anomalies: (e, [sensorId, filter]: never[]) => e.anomalies(sensorId, filter),
  compare: (e, [sensorIds, filter]: never[]) => e.compare(sensorIds, filter),
  sensors: (e, [filter]: never[]) => e.sensors(filter),
  exportToPipe: (e, [request, path, id]: never[]) => e.exportToPipe(request, path, id),
  cancelExport: async (e, [id]: never[]) => e.cancelExport(id),
  backupTo: (e, [path]: never[]) => e.backupTo(path),
  close: async (e) => {
    await e.close();
    setImmediate(() => process.exit(0));
  },
};

parentPort!.on('message', (call: Call) => {
  void (async () => {
    let reply: Reply;
    let transfer: ArrayBuffer[] = [];
    try {
      const e = engine ?? (await opened);
      const run = () => handlers[call.method](e, call.args as never[]);
      // A user's query brings what is left of its time limit: its deadline in this thread's clock.
      const value = call.timeoutMs === undefined ? await run() : await callDeadline.run(performance.now() + call.timeoutMs, run);
      reply = { id: call.id, ok: true, value };
      // Fingerprint columns go back whole, without a copy.
      if (call.method === 'fingerprints') transfer = transferablesOf(Object.values(value as object) as ArrayBufferView[]);
    } catch (err) {
      const e = err as Error & { code?: unknown; statusCode?: unknown };
      reply = {
        id: call.id,
        ok: false,
        error: { name: e.name, message: e.message, ...(typeof e.code === 'string' ? { code: e.code } : {}), ...(typeof e.statusCode === 'number' ? { statusCode: e.statusCode } : {}) },
      };
    }
    parentPort!.postMessage(reply, transfer);
  })();
});

opened.then(
  () => parentPort!.postMessage({ id: -1, ok: true, value: 'open' } satisfies Reply),
  (err: Error) => parentPort!.postMessage({ id: -1, ok: false, error: { name: err.name, message: err.message } } satisfies Reply),
);
