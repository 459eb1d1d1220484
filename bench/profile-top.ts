/**
 * The top costs of one steady run of `bench:http --cpu-prof DIR`: reads every thread's profile in
 * DIR and DIR/windows.json, keeps the samples taken inside the run's windows (all rounds of the
 * kind, or one with --round), and prints CPU time by function (self) and by file or package.
 *
 *   npx tsx bench/profile-top.ts DIR steady-lookup [--round N] [--top 25] [--per N (requests, for µs/req)]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}
interface Window {
  kind: string;
  round: number;
  startUs: number;
  endUs: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { round: { type: 'string' }, top: { type: 'string', default: '25' }, per: { type: 'string' } },
});
const [dir, kind] = positionals;
if (!dir || !kind) throw new Error('usage: profile-top.ts DIR KIND [--round N] [--top N] [--per REQUESTS]');
const windows = (JSON.parse(readFileSync(join(dir, 'windows.json'), 'utf8')) as Window[]).filter(
  (w) => w.kind === kind && (values.round === undefined || w.round === Number(values.round)),
);
if (windows.length === 0) throw new Error(`no window of ${kind} in ${dir}/windows.json`);
const windowUs = windows.reduce((n, w) => n + w.endUs - w.startUs, 0);

/** Where a function lives: its package, or its file under the repository. */
function place(url: string): string {
  if (!url) return '(native or V8)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return url;
  const src = url.search(/\/(src|dist|bench|test)\//);
  return src >= 0 ? url.slice(src + 1) : url;
}

const byFunction = new Map<string, number>();
const byPlace = new Map<string, number>();
const byThread = new Map<string, number>();
/** Time with the file or package anywhere on the stack (each counted once per sample). */
const underPlace = new Map<string, number>();
let busyUs = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    // A sample stands for the time until the next one.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (!windows.some((w) => t >= w.startUs && t < w.endUs)) continue;
    const frame = nodes.get(profile.samples[i]!)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    const name = `${frame.functionName || '(anonymous)'} ${place(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + dt);
    byPlace.set(place(frame.url), (byPlace.get(place(frame.url)) ?? 0) + dt);
    byThread.set(file, (byThread.get(file) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = profile.samples[i]!; id !== undefined; id = parent.get(id)) {
      const url = nodes.get(id)!.callFrame.url;
      if (url) seen.add(place(url));
    }
    for (const p of seen) underPlace.set(p, (underPlace.get(p) ?? 0) + dt);
    busyUs += dt;
  }
}

const per = values.per ? Number(values.per) : undefined;
const fmt = (us: number) =>
  `${(us / 1000).toFixed(1).padStart(8)} ms ${((us / windowUs) * 100).toFixed(2).padStart(6)} % of a core` + (per ? ` ${(us / per).toFixed(1).padStart(7)} µs/req` : '');
const top = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
console.log(`${kind}: ${windows.length} window(s), ${(windowUs / 1e6).toFixed(1)} s; sampled CPU (not idle) ${fmt(busyUs)}`);
console.log('\nby thread');
for (const [file, us] of top(byThread, 10)) console.log(`  ${fmt(us)}  ${file}`);
console.log('\nby file or package (self time)');
for (const [name, us] of top(byPlace, Number(values.top))) console.log(`  ${fmt(us)}  ${name}`);
console.log('\nby file or package anywhere on the stack (inclusive)');
for (const [name, us] of top(underPlace, Number(values.top))) console.log(`  ${fmt(us)}  ${name}`);
console.log('\nby function (self time)');
for (const [name, us] of top(byFunction, Number(values.top))) console.log(`  ${fmt(us)}  ${name}`);
