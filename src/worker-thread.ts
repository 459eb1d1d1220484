import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts a worker thread on `entry` (a module next to the caller, named without extension). The
 * compiled build runs the .js file directly. From the TypeScript sources (tests, tsx) the worker
 * first registers tsx's loader, which a worker does not inherit from its parent.
 */
export function startWorker(callerUrl: string, entry: string, options: Pick<WorkerOptions, 'workerData' | 'resourceLimits'> = {}): Worker {
  // A bounded young generation: frequent small scavenges keep the heap (and RSS) small; what a
  // worker holds is a few batches at a time.
  options = { ...options, resourceLimits: { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 256, ...options.resourceLimits } };
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`./${entry}.js`, callerUrl), options);
  const url = new URL(`./${entry}.ts`, callerUrl).href;
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url)}); })`, { ...options, eval: true });
}
