/**
 * Steady load for `bench:http`: requests sent at evenly spaced times (not autocannon's `overallRate`,
 * which spends each second's budget in one burst at its start, so that every request would share
 * the wake-ups of its burst), and the CPU time of a process read from /proc/<pid>/stat.
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';

export interface Target {
  port: number;
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

export interface SteadyResult {
  /** Requests answered (any status). */
  answered: number;
  non2xx: number;
  errors: number;
  /** Milliseconds from send to the end of the answer. */
  p50: number;
  p99: number;
}

/** Clock ticks per second in /proc/<pid>/stat (USER_HZ; 100 on Linux). */
const TICKS = 100;

/** CPU time (user + system, every thread, exited ones included) of a process, in microseconds. */
export function processCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces), from field 3 (state): utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) / TICKS) * 1e6;
}

const quantile = (sorted: number[], q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);

/**
 * Sends `rate` requests a second for `durationS` seconds, request i to targets[i % n], each at its
 * own time (start + i / rate) over keep-alive connections; resolves once every answer is in.
 */
export async function steadyLoad(targets: readonly Target[], rate: number, durationS: number): Promise<SteadyResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const total = Math.round(rate * durationS);
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let sent = 0;
  let inFlight = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const settled = () => {
    inFlight--;
    if (sent === total && inFlight === 0) finish();
  };
  const send = (target: Target) => {
    const started = performance.now();
    inFlight++;
    const req = request({ agent, host: '127.0.0.1', port: target.port, method: target.method, path: target.path, headers: target.headers }, (res) => {
      res.resume();
      res.on('end', () => {
        latencies.push(performance.now() - started);
        if (res.statusCode! < 200 || res.statusCode! >= 300) non2xx++;
        settled();
      });
    });
    req.on('error', () => {
      errors++;
      settled();
    });
    req.end(target.body);
  };
  const start = performance.now();
  const tick = () => {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - start) / 1000) * rate) + 1);
    while (sent < due) send(targets[sent++ % targets.length]!);
    if (sent < total) setTimeout(tick, Math.max(0, start + (sent * 1000) / rate - performance.now()));
    else if (inFlight === 0) finish();
  };
  if (total > 0) tick();
  else finish();
  await done;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { answered: latencies.length, non2xx, errors, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) };
}
