/**
 * End to end: Ocean Core as a child process (with a private redis-server), a real Prometheus
 * scraping it every second, and every panel query of every Grafana dashboard evaluated through
 * Prometheus' HTTP API. Needs `prometheus` and `promtool` on PATH (Debian's `prometheus` package,
 * which .ci/run installs when missing).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, pressurePayload } from '../../src/nanogridata/encoder.js';
import { launch, launchTsx, stop, type Child } from '../helpers/child-process.js';
import { PRESSURE_MODEL, pressureFrames, waitFor } from '../helpers/frames.js';
import { parsePromText, sumOf } from '../helpers/prom-text.js';
import { skipWithout } from '../helpers/optional-tools.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { makeTempDir, type TempDir } from '../helpers/temp-dir.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const DASHBOARD_DIR = join(ROOT, 'grafana', 'dashboards');
const ADMIN_TOKEN = `e2e-admin-${randomBytes(12).toString('hex')}`;
const STREAM = `e2e:${randomBytes(4).toString('hex')}:frames`;

const skip = skipWithout('observability e2e (Prometheus scraping Ocean Core)', ['prometheus', 'promtool'], 'apt-get install prometheus');

/** Every Prometheus query of a dashboard: panel targets, panels nested in rows, template variables. */
interface DashboardQuery {
  dashboard: string;
  panel: string;
  expr: string;
}

function dashboardQueries(): { queries: DashboardQuery[]; variables: Array<{ dashboard: string; query: string }> } {
  const queries: DashboardQuery[] = [];
  const variables: Array<{ dashboard: string; query: string }> = [];
  for (const file of readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith('.json'))) {
    const dash = JSON.parse(readFileSync(join(DASHBOARD_DIR, file), 'utf8')) as {
      title: string;
      panels: Array<{ title: string; panels?: unknown[]; targets?: Array<{ expr?: string }> }>;
      templating?: { list: Array<{ type: string; query: string | { query: string } }> };
    };
    const visit = (panels: typeof dash.panels) => {
      for (const p of panels) {
        for (const t of p.targets ?? []) if (t.expr) queries.push({ dashboard: dash.title, panel: p.title, expr: t.expr });
        if (p.panels) visit(p.panels as typeof dash.panels);
      }
    };
    visit(dash.panels);
    for (const v of dash.templating?.list ?? []) {
      if (v.type === 'query') variables.push({ dashboard: dash.title, query: typeof v.query === 'string' ? v.query : v.query.query });
    }
  }
  return { queries, variables };
}

/** Grafana's variable substitution, for one instance and a short test run. */
function substitute(expr: string, instance: string): string {
  const escaped = instance.replace(/[.*+?^${}()|[\]\\]/g, '\\\\$&');
  return expr
    .replace(/\$\{instance(?::[a-z]+)?\}|\$instance\b/g, escaped)
    .replace(/\$\{?__rate_interval\}?/g, '15s')
    .replace(/\$\{?__interval\}?/g, '2s')
    .replace(/\$\{?__range\}?/g, '5m');
}

describe.skipIf(skip)('observability: dashboards against a real Prometheus scraping Ocean Core', () => {
  let redis: RedisServer | undefined;
  let ocean: Child | undefined;
  let prometheus: Child | undefined;
  let work: TempDir | undefined;
  let baseUrl = '';
  let promUrl = '';
  let instance = '';
  const secret = randomBytes(32);

  const api = async (path: string, init: { method?: string; token?: string; body?: unknown; raw?: Buffer } = {}) => {
    const headers: Record<string, string> = {};
    if (init.token) headers.authorization = `Bearer ${init.token}`;
    let body: string | Buffer | undefined;
    if (init.raw) {
      headers['content-type'] = 'application/octet-stream';
      body = init.raw;
    } else if (init.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.body);
    }
    const res = await fetch(`${baseUrl}${path}`, { method: init.method ?? 'GET', headers, body });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- bodies of many routes; each check reads its own fields, as with inject's res.json()
    return { status: res.status, json: (await res.json().catch(() => null)) as any };
  };

  const metrics = async () => parsePromText(await (await fetch(`${baseUrl}/metrics`)).text());

  const promQuery = async (query: string) => {
    const res = await fetch(`${promUrl}/api/v1/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query }),
    });
    return (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown[] } };
  };

  beforeAll(async () => {
    work = await makeTempDir('ocean-e2e-');
    const workDir = work.path;
    redis = await startRedis();

    // Ocean Core, as main.ts runs it.
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    instance = `127.0.0.1:${port}`;
    ocean = launchTsx('src/main.ts', [], {
      inherit: false,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        HOST: '127.0.0.1',
        PORT: String(port),
        DATA_DIR: join(workDir, 'data'),
        REDIS_URL: redis.url,
        INGEST_STREAM: STREAM,
        DEAD_LETTER_STREAM: `${STREAM}:dead`,
        ADMIN_TOKEN,
        NANOGRIDATA_SECRET_10: secret.toString('hex'),
        LOG_LEVEL: 'warn',
      },
    });
    await waitFor(
      async () => {
        if (ocean!.proc.exitCode !== null) throw new Error(`Ocean Core exited (${ocean!.proc.exitCode}):\n${ocean!.output()}`);
        return (await fetch(`${baseUrl}/health`).catch(() => null))?.status === 200;
      },
      { timeoutMs: 45_000, intervalMs: 200, what: 'Ocean Core /health' },
    );

    // HTTP: a user, a session, JSON readings, a few client errors.
    const user = await api('/api/ocean/users', { method: 'POST', token: ADMIN_TOKEN, body: { username: 'e2e', email: 'e2e@example.com' } });
    expect(user.status).toBe(200);
    const session = await api('/api/ocean/sessions/create', { method: 'POST', token: ADMIN_TOKEN, body: { user_id: user.json.id, username: 'e2e' } });
    expect(session.status).toBe(200);
    const token = session.json.token as string;
    for (let i = 0; i < 5; i++) {
      const r = await api('/api/ocean/telemetry/ingest', { method: 'POST', token, body: { sensor_id: 'e2e-http', data: { temperature: 20 + i } } });
      expect(r.status).toBeLessThan(300);
    }
    expect((await api(`/api/ocean/users/${user.json.id}`, { token })).status).toBe(200);
    expect((await api('/api/ocean/users/999999', { token: ADMIN_TOKEN })).status).toBe(404);
    expect((await api('/api/ocean/telemetry/ingest', { method: 'POST', body: { sensor_id: 'x', data: {} } })).status).toBe(401);

    // HTTP frames: accepted ones and a bad MAC.
    const now = Math.floor(Date.now() / 1000);
    const httpFrames = pressureFrames({ count: 4, devices: 2, secret, now, prefix: 'H' });
    const framesRes = await api('/api/ocean/telemetry/frames', { method: 'POST', raw: Buffer.concat(httpFrames.frames) });
    expect(framesRes.json).toMatchObject({ accepted: 4, rejected: [] });
    const forged = encodeFrame({ modelId: PRESSURE_MODEL, level: 1, timestamp: now, payload: pressurePayload({ deviceId: 'H-forged', entries: [{ value: 1 }] }), secret: randomBytes(32) });
    expect((await api('/api/ocean/telemetry/frames', { method: 'POST', raw: forged })).json.rejected).toEqual([{ index: 0, reason: 'bad_mac' }]);

    // Redis stream: accepted frames, a bad MAC, a replay (an accepted frame in a new entry), bad hex.
    const streamFrames = pressureFrames({ count: 20, devices: 4, secret, now, prefix: 'S' });
    const producer = new Redis(redis.url);
    try {
      for (const frame of streamFrames.frames) await producer.xadd(STREAM, '*', 'frame', frame);
      await producer.xadd(STREAM, '*', 'frame', encodeFrame({ modelId: PRESSURE_MODEL, level: 1, timestamp: now, payload: pressurePayload({ deviceId: 'S-forged', entries: [{ value: 1 }] }), secret: randomBytes(32) }));
      await producer.xadd(STREAM, '*', 'frame', streamFrames.frames[0]!);
      await producer.xadd(STREAM, '*', 'frame_hex', 'not-hex');
    } finally {
      producer.disconnect();
    }

    // Until the service has ingested, rejected and committed all of it.
    await waitFor(
      async () => {
        const s = await metrics();
        return (
          sumOf(s, 'ocean_telemetry_ingested_total', { source: 'stream' }) === 20 &&
          sumOf(s, 'ocean_frames_rejected_total') === 4 &&
          sumOf(s, 'ocean_committed_records_total') === streamFrames.records + httpFrames.records + 5
        );
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'ingest of the HTTP and stream telemetry' },
    );
    // An analytics query, so that DuckDB reads are timed too.
    expect((await api('/api/ocean/analytics/sensor/e2e-http/stats', { token })).status).toBe(200);

    // Prometheus scraping the service every second.
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    const configPath = join(workDir, 'prometheus.yml');
    await writeFile(
      configPath,
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        `rule_files: ['${join(ROOT, 'alerts.yml')}']`,
        'scrape_configs:',
        '  - job_name: ocean-core',
        '    scrape_timeout: 1s',
        `    static_configs: [{ targets: ['${instance}'] }]`,
        '',
      ].join('\n'),
    );
    prometheus = launch(
      'prometheus',
      [
        `--config.file=${configPath}`,
        `--storage.tsdb.path=${join(workDir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME } },
    );
    await waitFor(
      async () => {
        if (prometheus!.proc.exitCode !== null) throw new Error(`prometheus exited (${prometheus!.proc.exitCode}):\n${prometheus!.output()}`);
        const r = await promQuery(`count_over_time(up{job="ocean-core", instance="${instance}"}[1m])`).catch(() => null);
        const v = (r?.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1];
        return Number(v ?? 0) >= 3;
      },
      { timeoutMs: 45_000, intervalMs: 250, what: 'three scrapes of Ocean Core' },
    );
  }, 180_000);

  afterAll(async () => {
    await stop(prometheus?.proc);
    await stop(ocean?.proc, { timeoutMs: 30_000 });
    await redis?.stop();
    await work?.cleanup();
  }, 60_000);

  it('sees Ocean Core up', async () => {
    const r = await promQuery(`up{job="ocean-core", instance="${instance}"}`);
    expect(r.status).toBe('success');
    expect(r.data!.result).toHaveLength(1);
    expect((r.data!.result[0] as { value: [number, string] }).value[1]).toBe('1');
  });

  it('finds the scraped instance with every dashboard variable query', async () => {
    const { variables } = dashboardQueries();
    expect(variables.length).toBeGreaterThan(0);
    for (const v of variables) {
      const m = /^label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)$/.exec(v.query);
      expect(m, `${v.dashboard}: ${v.query}`).not.toBeNull();
      const r = await promQuery(`count by (${m![2]}) (${m![1]})`);
      expect(r.status).toBe('success');
      const values = (r.data!.result as Array<{ metric: Record<string, string> }>).map((s) => s.metric[m![2]!]);
      expect(values, `${v.dashboard}: ${v.query}`).toContain(instance);
    }
  });

  it('evaluates every panel query of every dashboard to at least one series (the firing alerts to none)', async () => {
    const { queries } = dashboardQueries();
    expect(new Set(queries.map((q) => q.dashboard))).toEqual(new Set(['Ocean Core overview', 'Telemetry ingestion', 'Storage']));
    const failures: string[] = [];
    for (const q of queries) {
      const expr = substitute(q.expr, instance);
      expect(expr, `unsubstituted variable in ${q.dashboard} / ${q.panel}`).not.toContain('$');
      const r = await promQuery(expr);
      if (r.status !== 'success') failures.push(`${q.dashboard} / ${q.panel}: ${expr} → ${r.status} ${r.error}`);
      // The list of firing alerts is empty while all is well, as here.
      else if (/^ALERTS\b/.test(expr)) expect(r.data!.result, `${q.dashboard} / ${q.panel}: ${expr}`).toEqual([]);
      else if (r.data!.result.length === 0) failures.push(`${q.dashboard} / ${q.panel}: ${expr} → no series`);
    }
    expect(failures).toEqual([]);
    expect(queries.filter((q) => /^ALERTS\b/.test(q.expr))).toHaveLength(1);
    expect(queries.length).toBeGreaterThanOrEqual(30);
  });

  it('shows the telemetry pushed over HTTP and Redis, and the rejections by reason', async () => {
    const value = async (query: string) => {
      const r = await promQuery(query);
      expect(r.status).toBe('success');
      return Object.fromEntries(
        (r.data!.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((s) => [
          Object.values(s.metric).join(',') || 'value',
          Number(s.value[1]),
        ]),
      );
    };
    const sel = `instance="${instance}"`;
    expect(await value(`sum by (source) (ocean_telemetry_ingested_total{${sel}})`)).toEqual({ http: 5, http_frames: 4, stream: 20 });
    expect(await value(`sum by (reason) (ocean_frames_rejected_total{${sel}})`)).toEqual({ bad_mac: 2, replay: 1, bad_hex: 1 });
    const routes = await value(`sum by (route) (ocean_requests_total{${sel}, method="GET", status_code="200"})`);
    expect(routes['/api/ocean/users/:user_id']).toBe(1);
    expect(Object.keys(routes).filter((r) => /\/\d+(\/|$)/.test(r))).toEqual([]);
  });

  it('exposes metrics promtool finds nothing to warn about', async () => {
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
  });

  it('evaluates every alert rule of alerts.yml against the scraped metrics without error', async () => {
    const res = await fetch(`${promUrl}/api/v1/rules?type=alert`);
    const body = (await res.json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> } };
    const rules = body.data.groups.flatMap((g) => g.rules);
    const defined = [...readFileSync(join(ROOT, 'alerts.yml'), 'utf8').matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1]);
    expect(rules.map((r) => r.name).sort()).toEqual(defined.sort());
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
  });

  it('accepts the repository prometheus.yml with promtool', () => {
    const r = spawnSync('promtool', ['check', 'config', join(ROOT, 'prometheus.yml')], { encoding: 'utf8' });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS/);
  });
});
