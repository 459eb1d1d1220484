/**
 * The deployment files. docker-compose-ultralight.yml as docker compose resolves it (with a .env made
 * from .env.example): valid, placeholders refused before anything starts, only Ocean Core published
 * beyond loopback, Redis password-protected (the password on no command line) and unable to drop the
 * stream, each service given only the configuration it needs and one its program accepts, the Prometheus and Grafana files mounted where they are read.
 * No secrets in the committed files or the image, and the Grafana dashboards fit together. What the
 * image does (non-root, healthcheck, production dependencies only) and the running stack are checked
 * by test/container/run.sh (npm run test:container), which needs a Docker engine.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launch, stop } from '../helpers/child-process.js';
import { waitFor } from '../helpers/frames.js';
import { skipWithout } from '../helpers/optional-tools.js';
import { freePort } from '../helpers/redis-server.js';
import { parseSimulateArgs } from '../../src/cli/simulate.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { missingSecrets } from '../../src/nanogridata/simulator.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

/** `docker compose` (v2) if the docker client has it, else docker-compose (v1), else undefined. */
function findCompose(): { command: string; args: string[]; v2: boolean } | undefined {
  if (spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0) return { command: 'docker', args: ['compose'], v2: true };
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return { command: 'docker-compose', args: [], v2: false };
  return undefined;
}
const compose = findCompose();
const skipCompose = compose === undefined && skipWithout('deploy-files: the docker compose checks', ['docker-compose'], 'apt-get install docker-compose');
/** Dockerfile instructions (continuations joined, comments dropped), split into stages. */
function dockerStages(text: string): string[][] {
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const stages: string[][] = [];
  for (const ins of instructions) {
    if (/^FROM\s/i.test(ins)) stages.push([ins]);
    else stages.at(-1)?.push(ins);
  }
  return stages;
}

type Env = Record<string, string>;
/** docker-compose 1 prints an entry without a value (unset in .env) as null. */
type ComposeEnv = Record<string, string | null>;
interface Service {
  image?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: ComposeEnv;
  env_file?: unknown;
  ports?: Array<string | { host_ip?: string; published?: string | number; target: number }>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  deploy?: { resources?: { limits?: { memory?: string } } };
  profiles?: string[];
  volumes?: Array<string | { source?: string; target: string }>;
  stop_signal?: string;
}
interface Resolved {
  services: Record<string, Service>;
}

/** A project directory with the committed files and a .env: .env.example as it is, or filled in as a user would. */
async function projectDir(fill: boolean): Promise<{ dir: string; env: Env; cleanup(): Promise<void> }> {
  const { path: dir, cleanup } = await makeTempDir('ocean-compose-');
  for (const f of ['docker-compose-ultralight.yml', 'docker-compose-shared.yml', 'Dockerfile.ocean', 'prometheus.yml', 'prometheus-shared.yml', 'alerts.yml', 'grafana']) {
    cpSync(join(ROOT, f), join(dir, f), { recursive: true });
  }
  let text = read('.env.example');
  if (fill) {
    text = text.replace(/^(ADMIN_TOKEN=|[A-Z0-9_]+=replace-.*)$/gm, (line) => `${line.split('=')[0]}=${randomBytes(32).toString('hex')}`);
  }
  writeFileSync(join(dir, '.env'), text);
  const env = Object.fromEntries(
    text
      .split('\n')
      .filter((l) => /^[A-Z0-9_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return { dir, env, cleanup };
}

function runCompose(dir: string, args: string[], files = ['docker-compose-ultralight.yml']): string {
  const r = spawnSync(compose!.command, [...compose!.args, ...files.flatMap((f) => ['-f', f]), ...args], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${compose!.command} ${[...compose!.args, ...args].join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** The configuration as compose resolves it (.env interpolated, env_file merged), as JSON. */
function resolve(dir: string, files?: string[]): Resolved {
  if (compose!.v2) return JSON.parse(runCompose(dir, ['--profile', 'demo', 'config', '--format', 'json'], files)) as Resolved;
  // docker-compose 1 prints YAML only; it runs on python3-yaml, so that is there to read it.
  const yaml = runCompose(dir, ['--profile', 'demo', 'config'], files);
  const r = spawnSync('python3', ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], { input: yaml, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot read docker-compose config output: ${r.stderr}`);
  return JSON.parse(r.stdout) as Resolved;
}

/** Host address and port of each published port, from either syntax compose prints. */
function published(service: Service): Array<{ hostIp: string; port: number }> {
  return (service.ports ?? []).map((p) => {
    if (typeof p === 'string') {
      const parts = p.replace(/\/\w+$/, '').split(':');
      return parts.length === 3 ? { hostIp: parts[0]!, port: Number(parts[1]) } : { hostIp: '0.0.0.0', port: Number(parts[0]) };
    }
    return { hostIp: p.host_ip || '0.0.0.0', port: Number(p.published) };
  });
}

/** Where a service mounts the host path ending in `hostSuffix`, from either syntax compose prints. */
function mountTarget(service: Service, hostSuffix: string): string | undefined {
  for (const v of service.volumes ?? []) {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source, v.target];
    if (source?.endsWith(hostSuffix)) return target;
  }
  return undefined;
}

/** A service's environment as its container gets it: an entry without a value in .env stays unset. */
function containerEnv(service: Service): Env {
  return Object.fromEntries(Object.entries(service.environment ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/** Runs check-secrets' script (entrypoint sh -c + command) with the given passwords, as its container would. */
function runCheckSecrets(service: Service, env: Env) {
  expect(service.entrypoint).toEqual(['sh', '-c']);
  // compose prints the script with `$` escaped as `$$`, as it is written in the file.
  const script = service.command![0]!.replace(/\$\$/g, '$');
  return spawnSync('sh', ['-c', script], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' });
}

describe.skipIf(skipCompose)('docker-compose-ultralight.yml, as docker compose resolves it', () => {
  type Project = Awaited<ReturnType<typeof projectDir>> & { config: Resolved };
  let filled: Project;
  let example: Project;

  beforeAll(async () => {
    if (!compose) throw new Error('docker-compose is not installed: apt-get install docker-compose (.ci/run does)');
    const f = await projectDir(true);
    filled = { ...f, config: resolve(f.dir) };
    const e = await projectDir(false);
    example = { ...e, config: resolve(e.dir) };
  }, 120_000);

  afterAll(async () => {
    for (const p of [filled, example]) await p?.cleanup();
  });

  it('is valid with a .env made from .env.example, and runs the simulator only under the demo profile', () => {
    runCompose(example.dir, ['config', '-q']);
    const services = runCompose(example.dir, ['--profile', 'demo', 'config', '--services']).split('\n').filter(Boolean).sort();
    expect(services).toEqual(['check-secrets', 'grafana', 'ocean-core-8030', 'prometheus', 'redis', 'simulator']);
    // (docker-compose 1 lists profiled services without --profile too, so the profiles are read from the config.)
    const profiled = Object.entries(example.config.services).filter(([, s]) => s.profiles?.length);
    expect(profiled.map(([name, s]) => [name, s.profiles])).toEqual([['simulator', ['demo']]]);
  }, 60_000);

  it('starts nothing while REDIS_PASSWORD or GRAFANA_ADMIN_PASSWORD is still the placeholder, and says which', () => {
    const { services } = example.config;
    // check-secrets must complete before Redis (which Ocean Core and the simulator wait for) and Grafana.
    for (const name of ['redis', 'grafana']) expect(services[name]!.depends_on?.['check-secrets']?.condition, name).toBe('service_completed_successfully');
    expect(services['ocean-core-8030']!.depends_on?.redis?.condition).toBe('service_healthy');
    expect(services.prometheus!.depends_on?.['ocean-core-8030']).toBeDefined();

    const asExample = runCheckSecrets(services['check-secrets']!, containerEnv(services['check-secrets']!));
    expect(asExample.status).toBe(1);
    expect(asExample.stderr).toMatch(/REDIS_PASSWORD in \.env is still the placeholder/);
    const grafanaLeft = runCheckSecrets(services['check-secrets']!, { REDIS_PASSWORD: filled.env.REDIS_PASSWORD!, GRAFANA_ADMIN_PASSWORD: 'replace-me' });
    expect(grafanaLeft.status).toBe(1);
    expect(grafanaLeft.stderr).toMatch(/GRAFANA_ADMIN_PASSWORD in \.env is still the placeholder/);
    // A password that would break REDIS_URL is refused too.
    const notUrlSafe = runCheckSecrets(services['check-secrets']!, { REDIS_PASSWORD: 'a@b/c', GRAFANA_ADMIN_PASSWORD: 'x'.repeat(20) });
    expect(notUrlSafe.status).toBe(1);
    expect(notUrlSafe.stderr).toMatch(/REDIS_PASSWORD in \.env may hold only/);

    const ok = runCheckSecrets(filled.config.services['check-secrets']!, containerEnv(filled.config.services['check-secrets']!));
    expect(ok.status, ok.stderr).toBe(0);
  });

  it('publishes only Ocean Core beyond the loopback interface', () => {
    const { services } = filled.config;
    for (const name of ['redis', 'prometheus', 'grafana']) {
      const ports = published(services[name]!);
      expect(ports.length, name).toBeGreaterThan(0);
      for (const p of ports) expect(p.hostIp, `${name} port ${p.port}`).toBe('127.0.0.1');
    }
    expect(published(services['ocean-core-8030']!).map((p) => p.port)).toEqual([8030]);
    expect(published(services.simulator!)).toEqual([]);
  });

  it('gives Redis the password from .env, and Ocean Core and the simulator a REDIS_URL that carries it', () => {
    const { services } = filled.config;
    const password = filled.env.REDIS_PASSWORD!;
    const redis = services.redis!;
    // redis-server reads it from REDISCLI_AUTH (see the next test), as the healthcheck's redis-cli does.
    expect(redis.environment?.REDISCLI_AUTH).toBe(password);
    for (const name of ['ocean-core-8030', 'simulator']) {
      const url = new URL(services[name]!.environment!.REDIS_URL!);
      expect([url.protocol, url.hostname, url.port, url.username, decodeURIComponent(url.password)], name).toEqual(['redis:', 'redis', '6379', '', password]);
    }
  });

  it('puts no password on any command line: Redis reads its own from the environment, through its standard input', async () => {
    const { services } = filled.config;
    const secrets = [filled.env.REDIS_PASSWORD!, filled.env.GRAFANA_ADMIN_PASSWORD!];
    for (const [name, service] of Object.entries(services)) {
      const args = JSON.stringify([service.entrypoint ?? [], service.command ?? []]);
      for (const secret of secrets) expect(args.includes(secret), `${name}: a password in its command or entrypoint`).toBe(false);
    }
    // The redis entrypoint, run as its container runs it, with the local redis-server on a free port
    // (the compose command's persistence options left out: a throwaway server).
    const redis = services.redis!;
    const [sh, dashC, script, name] = redis.entrypoint!;
    expect([sh, dashC]).toEqual(['sh', '-c']);
    const port = await freePort();
    const dir = await makeTempDir('ocean-compose-redis-');
    const password = filled.env.REDIS_PASSWORD!;
    const server = launch('sh', [dashC!, script!.replace(/\$\$/g, '$'), name!, 'redis-server', '--port', String(port), '--dir', dir.path, '--save', ''], {
      env: { PATH: process.env.PATH!, ...containerEnv(redis) },
    });
    const client = (auth?: string) => new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...(auth ? { password: auth } : {}) });
    try {
      await waitFor(async () => {
        const c = client(password);
        c.on('error', () => undefined);
        try {
          return (await c.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          c.disconnect();
        }
      }, { what: 'redis-server started by the compose entrypoint' });
      const anonymous = client();
      anonymous.on('error', () => undefined);
      await expect(anonymous.ping()).rejects.toThrow(/NOAUTH/);
      anonymous.disconnect();
      // The entrypoint execs redis-server: the process it started is Redis, and its arguments hold no password.
      expect(readFileSync(`/proc/${server.proc.pid}/cmdline`, 'utf8')).not.toContain(password);
    } finally {
      await stop(server.proc);
      await dir.cleanup();
    }
  });

  it('runs Redis as a buffer that must not forget: AOF fsynced every second, noeviction, maxmemory below its memory limit', () => {
    const [program, ...args] = filled.config.services.redis!.command!;
    expect(program).toBe('redis-server');
    const option = (name: string) => args[args.indexOf(`--${name}`) + 1];
    expect(option('appendonly')).toBe('yes');
    expect(option('appendfsync')).toBe('everysec');
    expect(option('maxmemory-policy')).toBe('noeviction');
    const mb = (v: string) => Number(/^(\d+)([mg])b?$/i.exec(v)![1]) * (/g/i.test(v) ? 1024 : 1);
    expect(mb(option('maxmemory')!)).toBeLessThan(mb(filled.config.services.redis!.deploy!.resources!.limits!.memory!));
  });

  it('gives Ocean Core an environment it accepts once .env is filled, and one it refuses while the frame secrets are placeholders', () => {
    const env = containerEnv(filled.config.services['ocean-core-8030']!);
    const config = loadConfig(env);
    expect(config).toMatchObject({ host: '0.0.0.0', port: 8030, dataDir: '/data', redisUrl: env.REDIS_URL, adminToken: filled.env.ADMIN_TOKEN });
    expect(config.nanogridata.secrets.size).toBe(5);
    expect(() => loadConfig(containerEnv(example.config.services['ocean-core-8030']!))).toThrow(ConfigError);
    expect(() => loadConfig(containerEnv(example.config.services['ocean-core-8030']!))).toThrow(/NANOGRIDATA_SECRET_/);
  });

  it("gives Ocean Core its own settings only: no env_file, no GF_* or other service's password, every variable of src/config.ts", () => {
    const ocean = filled.config.services['ocean-core-8030']!;
    expect(ocean.env_file).toBeUndefined();
    const names = Object.keys(ocean.environment!);
    expect(names.filter((n) => /^GF_|PASSWORD|REDISCLI_AUTH/.test(n))).toEqual([]);
    expect(JSON.stringify(ocean.environment)).not.toContain(filled.env.GRAFANA_ADMIN_PASSWORD!);
    // A setting added to config.ts reaches the container only if it is listed: none may be forgotten.
    const scalars = read('src/config.ts').slice(read('src/config.ts').indexOf('const scalars = {'));
    const settings = [...scalars.slice(0, scalars.indexOf('\n};')).matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
    expect(settings.length).toBeGreaterThan(20);
    expect(settings.filter((n) => !names.includes(n))).toEqual([]);
  });

  it('mounts the committed Prometheus files (configuration, alert rules) and Grafana files where they are read, and Prometheus scrapes Ocean Core by service name and port', () => {
    const { services } = filled.config;
    expect(mountTarget(services.prometheus!, '/prometheus.yml')).toBe('/etc/prometheus/prometheus.yml');
    // prometheus.yml names its rule files relative to itself.
    const ruleFiles = /^rule_files:\n((?:[ \t]+- .+\n)+)/m.exec(read('prometheus.yml'))?.[1]?.match(/(?<=- ).+/g);
    expect(ruleFiles).toEqual(['alerts.yml']);
    for (const rules of ruleFiles!) expect(mountTarget(services.prometheus!, `/${rules}`), rules).toBe(`/etc/prometheus/${rules}`);
    const grafana = services.grafana!;
    expect(mountTarget(grafana, '/grafana/provisioning')).toBe('/etc/grafana/provisioning');
    const dashboards = mountTarget(grafana, '/grafana/dashboards');
    expect(dashboards).toBeDefined();
    expect(read('grafana/provisioning/dashboards/dashboards.yml')).toContain(`path: ${dashboards}`);
    const home = grafana.environment!.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH!;
    expect(home.startsWith(`${dashboards}/`)).toBe(true);
    expect(existsSync(join(ROOT, 'grafana/dashboards', home.slice(dashboards!.length + 1)))).toBe(true);
    expect(grafana.environment!.GF_SECURITY_ADMIN_PASSWORD).toBe(filled.env.GRAFANA_ADMIN_PASSWORD);

    const target = /job_name: ocean-core[\s\S]*?targets: \['([^']+)'\]/.exec(read('prometheus.yml'))?.[1];
    const [host, port] = target!.split(':');
    expect(loadConfig(containerEnv(services[host!]!)).port).toBe(Number(port));
  });

  it("gives the simulator only what it needs — Ocean Core's frame secrets, the stream, REDIS_URL — and that is enough for its command line", () => {
    const { services } = filled.config;
    const sim = services.simulator!;
    const env = containerEnv(sim);
    expect(sim.env_file).toBeUndefined();
    for (const name of Object.keys(env)) expect(name).toMatch(/^(REDIS_URL|INGEST_STREAM|NANOGRIDATA_SECRET_[0-9A-F]{2})$/);
    const ocean = containerEnv(services['ocean-core-8030']!);
    for (const [name, value] of Object.entries(env)) if (name.startsWith('NANOGRIDATA_SECRET_')) expect(value, name).toBe(ocean[name]);

    const [node, script, ...argv] = sim.command!;
    expect([node, script]).toEqual(['node', 'dist/cli/simulate.js']);
    expect(existsSync(join(ROOT, 'src/cli/simulate.ts'))).toBe(true); // the image has dist/ only, built from here
    const options = parseSimulateArgs(argv, env);
    // No --target: the URL (and its password) comes from REDIS_URL, off the process list.
    expect(argv).not.toContain('--target');
    expect(options.target).toBe(env.REDIS_URL);
    expect(options.stream).toBe(ocean.INGEST_STREAM ?? 'ocean:frames');
    expect(missingSecrets(options.profile!, options.level!, options.secrets)).toEqual([]);
    // The CLI stops early on SIGINT (as PID 1 it would ignore SIGTERM until killed).
    expect(sim.stop_signal).toBe('SIGINT');
  });
});

describe('docker-compose-ultralight.yml, as committed', () => {
  const text = read('docker-compose-ultralight.yml');

  it('holds no secret values', () => {
    // A name, then on the same line a literal value (not ${…} from .env).
    expect(text).not.toMatch(/(ADMIN_TOKEN|NANOGRIDATA_SECRET_\w+|PASSWORD|REDISCLI_AUTH)[ \t]*[:=][ \t]*["']?[0-9a-zA-Z]/);
  });
});

describe('Dockerfile.ocean', () => {
  const text = read('Dockerfile.ocean');
  const stages = dockerStages(text);

  it('bakes in no secrets', () => {
    // No instruction of any stage names a secret (comments may explain where they come from).
    for (const ins of stages.flat()) expect(ins).not.toMatch(/ADMIN_TOKEN|NANOGRIDATA_SECRET|PASSWORD|\s\.env(\s|$)/);
    const ignore = read('.dockerignore').split('\n');
    for (const entry of ['.env', 'node_modules', 'dist', 'data', '.git']) expect(ignore).toContain(entry);
  });
});

describe.skipIf(skipCompose)('docker-compose-shared.yml on top of it (the shared mode)', () => {
  const SHARED_FILES = ['docker-compose-ultralight.yml', 'docker-compose-shared.yml'];

  it('runs two instances on one PostgreSQL that is not published, with one admin token, both scraped by Prometheus', async () => {
    const p = await projectDir(true);
    try {
      const { services } = resolve(p.dir, SHARED_FILES);
      const [a, b] = [services['ocean-core-8030']!, services['ocean-core-8031']!];
      for (const [name, s] of [['ocean-core-8030', a], ['ocean-core-8031', b]] as const) {
        const env = containerEnv(s);
        expect(env.DATABASE_URL).toBe(`postgres://ocean:${p.env.POSTGRES_PASSWORD}@postgres:5432/ocean`);
        expect(env.ADMIN_TOKEN).toBe(p.env.ADMIN_TOKEN);
        expect(env.INGEST_CONSUMER).toBe(name);
        expect(Object.keys(s.depends_on ?? {})).toEqual(expect.arrayContaining(['postgres', 'redis']));
      }
      // The second instance is the first with its own name, port and volume: the same settings reach both.
      expect(Object.keys(b.environment ?? {}).sort()).toEqual(Object.keys(a.environment ?? {}).sort());
      expect(published(b)).toEqual([{ hostIp: '0.0.0.0', port: 8031 }]);
      expect(published(services.postgres!)).toEqual([]);
      expect(mountTarget(services.prometheus!, 'prometheus-shared.yml')).toBe('/etc/prometheus/prometheus.yml');
      expect(read('prometheus-shared.yml')).toContain("targets: ['ocean-core-8030:8030', 'ocean-core-8031:8031']");
      // Everything else of prometheus.yml is the same (alerts, intervals).
      const strip = (text: string) => text.split('\n').filter((l) => !l.startsWith('#') && !/targets:|deployment:/.test(l)).join('\n');
      expect(strip(read('prometheus-shared.yml'))).toBe(strip(read('prometheus.yml')));
    } finally {
      await p.cleanup();
    }
  });

  it("refuses to start PostgreSQL while POSTGRES_PASSWORD is still .env.example's placeholder", async () => {
    const p = await projectDir(true);
    try {
      const pgService = resolve(p.dir, SHARED_FILES).services.postgres!;
      const script = pgService.command![0]!.replace(/\$\$/g, '$').replace('exec docker-entrypoint.sh postgres', 'echo started');
      const run = (password: string) => spawnSync('sh', ['-c', script], { env: { PATH: process.env.PATH, POSTGRES_PASSWORD: password }, encoding: 'utf8' });
      const refused = run('replace-me');
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain('POSTGRES_PASSWORD');
      expect(run('0123abcd').stdout).toContain('started');
    } finally {
      await p.cleanup();
    }
  });
});

describe('secrets and configuration files', () => {
  it('keeps .env out of git and documents it in .env.example', () => {
    const ignored = spawnSync('git', ['check-ignore', '-q', '.env'], { cwd: ROOT });
    if (ignored.error) expect(read('.gitignore').split('\n')).toContain('.env');
    else expect(ignored.status).toBe(0);
    const example = read('.env.example');
    for (const name of ['ADMIN_TOKEN', 'NANOGRIDATA_SECRET_10', 'NANOGRIDATA_SECRET_20', 'NANOGRIDATA_SECRET_30', 'NANOGRIDATA_SECRET_40', 'NANOGRIDATA_SECRET_FF', 'REDIS_PASSWORD', 'GRAFANA_ADMIN_PASSWORD', 'POSTGRES_PASSWORD']) {
      expect(example).toMatch(new RegExp(`^${name}=`, 'm'));
    }
    expect(example).not.toMatch(/=[0-9a-fA-F]{32,}\s*$/m);
  });
});

describe('Grafana dashboards', () => {
  const datasourceUid = /^\s*uid: (\S+)/m.exec(read('grafana/provisioning/datasources/prometheus.yml'))?.[1];
  const files = readdirSync(join(ROOT, 'grafana/dashboards')).filter((f) => f.endsWith('.json'));
  type Panel = {
    type: string;
    title: string;
    datasource?: { uid: string };
    fieldConfig?: { defaults?: { unit?: string } };
    targets?: Array<{ expr: string; datasource?: { uid: string } }>;
    panels?: Panel[];
  };
  const dashboards = files.map((f) => ({
    file: f,
    ...(JSON.parse(read(`grafana/dashboards/${f}`)) as {
      uid: string;
      title: string;
      schemaVersion: number;
      panels: Panel[];
      templating: { list: Array<{ name: string; query: string }> };
    }),
  }));
  const panelsOf = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...panelsOf(p.panels ?? [])]).filter((p) => p.type !== 'row');

  it('are the three dashboards, with fixed unique uids and a Grafana 10/11 schema', () => {
    expect(dashboards.map((d) => d.title).sort()).toEqual(['Ocean Core overview', 'Storage', 'Telemetry ingestion']);
    expect(new Set(dashboards.map((d) => d.uid)).size).toBe(dashboards.length);
    for (const d of dashboards) {
      expect(d.uid).toMatch(/^ocean-[a-z-]+$/);
      expect(d.schemaVersion).toBeGreaterThanOrEqual(36);
    }
  });

  it('set a unit on every panel and filter every query by the instance variable of the provisioned datasource', () => {
    expect(datasourceUid).toBe('prometheus');
    for (const d of dashboards) {
      expect(d.templating.list.map((v) => v.name)).toContain('instance');
      for (const p of panelsOf(d.panels)) {
        expect(p.fieldConfig?.defaults?.unit, `${d.title} / ${p.title}`).toBeTruthy();
        expect(p.datasource?.uid, `${d.title} / ${p.title}`).toBe(datasourceUid);
        expect(p.targets?.length, `${d.title} / ${p.title}`).toBeGreaterThan(0);
        for (const t of p.targets ?? []) {
          expect(t.datasource?.uid).toBe(datasourceUid);
          // Every selector of an ocean_ metric carries the instance filter.
          for (const m of t.expr.matchAll(/\bocean_\w+(\{[^}]*\})?/g)) {
            expect(m[1] ?? '', `${d.title} / ${p.title}: ${t.expr}`).toContain('instance=~"$instance"');
          }
        }
      }
    }
  });
});
