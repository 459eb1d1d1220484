/**
 * The floor under a JSON reading at a steady rate (issue 22): what the simplest durable JSON POST
 * costs on this machine, beside bare Fastify's GET, at 333 requests/s. Three bare Fastify servers,
 * each in its own process: GET of constant JSON; POST of a reading's JSON answered without storing
 * it; the same POST committing one row to SQLite (WAL, synchronous=NORMAL, as the service) in a
 * transaction of its own. 4 rounds of 10 s in turn (the first a warm-up), medians of server CPU
 * per request (`/proc/<pid>/stat`, every thread).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import Database from 'better-sqlite3';
import { processCpuUs, steadyLoad, type Target } from './steady-load.js';

const RATE = 333;
const SECONDS = 10;
const ROUNDS = 4;
const KINDS = ['GET constant JSON', 'POST a reading', 'POST a reading + SQLite commit'] as const;

async function serve(kind: (typeof KINDS)[number]): Promise<void> {
  const app = Fastify();
  app.get('/c', async () => ({ ok: true }));
  let store: ((data: string) => void) | undefined;
  let dir: string | undefined;
  if (kind === 'POST a reading + SQLite commit') {
    dir = mkdtempSync(join(tmpdir(), 'ocean-floor-'));
    const db = new Database(join(dir, 'floor.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE queue (id INTEGER PRIMARY KEY, sensor_id TEXT, ts INTEGER, data TEXT, records BLOB)');
    const insert = db.prepare('INSERT INTO queue (sensor_id, ts, data, records) VALUES (?, ?, ?, ?)');
    const records = Buffer.alloc(40);
    store = db.transaction((data: string) => insert.run('s1', 1, data, records));
  }
  app.post('/p', async (request) => {
    const body = request.body as { sensor_id: string };
    store?.(JSON.stringify(body));
    return { status: 'accepted', sensor_id: body.sensor_id };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  process.send!({ port: (app.server.address() as { port: number }).port });
  process.once('message', () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  });
}

async function drive(): Promise<void> {
  const servers = await Promise.all(
    KINDS.map(
      (kind) =>
        new Promise<{ pid: number; target: Target; stop: () => void }>((resolve) => {
          const child = fork(fileURLToPath(import.meta.url), ['--serve', kind], { execArgv: ['--import', 'tsx'] });
          child.once('message', ({ port }: { port: number }) => {
            const body = JSON.stringify({ sensor_id: 'alice-s1', timestamp: '2026-01-01T00:00:00Z', data: { temperature: 21.5, humidity: 40 } });
            const target: Target = kind.startsWith('GET')
              ? { port, method: 'GET', path: '/c', headers: {} }
              : { port, method: 'POST', path: '/p', headers: { 'content-type': 'application/json' }, body };
            resolve({ pid: child.pid!, target, stop: () => child.send('stop') });
          });
        }),
    ),
  );
  const perRequest = new Map<string, number[]>(KINDS.map((k) => [k, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, kind] of KINDS.entries()) {
      const { pid, target } = servers[i]!;
      const cpu0 = processCpuUs(pid);
      const run = await steadyLoad([target], RATE, SECONDS);
      const us = (processCpuUs(pid) - cpu0) / run.answered;
      if (round > 0) perRequest.get(kind)!.push(us);
      console.log(`round ${round}${round === 0 ? ' (warm-up)' : ''}  ${kind.padEnd(30)} ${us.toFixed(0).padStart(5)} µs/req  non-2xx ${run.non2xx + run.errors}`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const floor = median(perRequest.get(KINDS[0])!);
  console.log(`\nmedians at ${RATE}/s, server CPU per request (× the GET)`);
  for (const kind of KINDS) {
    const us = median(perRequest.get(kind)!);
    console.log(`  ${kind.padEnd(30)} ${us.toFixed(0).padStart(5)} µs  ${(us / floor).toFixed(2)}×`);
  }
  for (const s of servers) s.stop();
}

const at = process.argv.indexOf('--serve');
if (at >= 0) await serve(process.argv[at + 1] as (typeof KINDS)[number]);
else await drive();
