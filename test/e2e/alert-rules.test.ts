/**
 * The alerting rules (alerts.yml): promtool accepts them and their unit tests
 * (alert-rules.promtool.yml, Prometheus' own test format) pass; every alert is tested firing and
 * silent, carries a severity, a summary and a description; and every metric they name is one the
 * service exports, so that a renamed metric cannot leave an alert that never fires.
 * The promtool part needs Debian's `prometheus` package (.ci/run installs it when missing).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEGRADED_REASONS } from '../../src/health.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { skipWithout } from '../helpers/optional-tools.js';
import { parsePromText } from '../helpers/prom-text.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const RULES = join(ROOT, 'alerts.yml');
const TESTS = join(ROOT, 'test/e2e/alert-rules.promtool.yml');
const rulesText = readFileSync(RULES, 'utf8');
const testsText = readFileSync(TESTS, 'utf8');

/** Each alert's name and the text of its rule, up to the next one. */
const alerts = rulesText
  .split(/^\s*- alert: /m)
  .slice(1)
  .map((block) => ({ name: block.slice(0, block.indexOf('\n')).trim(), block }));

const skip = skipWithout('alert rules (promtool)', ['promtool'], 'apt-get install prometheus');

describe.skipIf(skip)('alert rules under promtool', () => {
  const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8' });

  it('are accepted by promtool check rules', () => {
    const r = promtool('check', 'rules', RULES);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${alerts.length} rules found`);
  });

  it('pass their unit tests (promtool test rules)', () => {
    const r = promtool('test', 'rules', TESTS);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS/);
  });
});

describe('alert rules', () => {
  it('are loaded by prometheus.yml', () => {
    expect(readFileSync(join(ROOT, 'prometheus.yml'), 'utf8')).toMatch(/^rule_files:\n\s+- alerts\.yml$/m);
  });

  it('each have a test where they fire and one where they stay silent', () => {
    expect(alerts.length).toBeGreaterThanOrEqual(10);
    for (const { name } of alerts) {
      expect(testsText, `${name} silent`).toMatch(new RegExp(`alertname: ${name}\\n\\s+exp_alerts: \\[\\]`));
      expect(testsText, `${name} firing`).toMatch(new RegExp(`alertname: ${name}\\n\\s+exp_alerts:\\n\\s+- exp_labels:`));
    }
  });

  it('each carry a severity, a summary and a description', () => {
    for (const { name, block } of alerts) {
      expect(block, name).toMatch(/^\s+severity: (critical|warning)$/m);
      expect(block, name).toMatch(/^\s+summary: \S/m);
      expect(block, name).toMatch(/^\s+description: >-\n\s+\S/m);
    }
  });

  describe('name only what the service exports', () => {
    let t: TestApp;
    let exported: Set<string>;

    beforeAll(async () => {
      // Started, so that the health monitor has set its gauges; one API request for the histogram,
      // one refused frame for the rejection counter (labelled series appear once counted).
      t = await createTestApp({ start: true });
      await t.app.inject({ method: 'GET', url: '/api/ocean/users/1', headers: t.admin });
      const refused = await t.app.inject({
        method: 'POST',
        url: '/api/ocean/telemetry/frames',
        headers: { 'content-type': 'application/octet-stream' },
        payload: Buffer.from('not a frame'),
      });
      expect(refused.json<{ accepted: number }>().accepted).toBe(0);
      const body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
      exported = new Set(parsePromText(body).map((s) => s.name));
    });

    afterAll(async () => {
      await t?.close();
    });

    it('metrics', () => {
      const named = new Set(rulesText.match(/\bocean_[a-z0-9_]+/g));
      expect(named.size).toBeGreaterThan(10);
      expect([...named].filter((m) => !exported.has(m))).toEqual([]);
    });

    it('health reasons and routes', async () => {
      const reasons = [...rulesText.matchAll(/ocean_health_degraded\{reason="(\w+)"\}/g)].map((m) => m[1]!);
      expect(reasons.length).toBeGreaterThan(0);
      for (const reason of reasons) expect(DEGRADED_REASONS, reason).toContain(reason);
      const paths = Object.keys((await t.app.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: object }>().paths);
      for (const [, route] of rulesText.matchAll(/route!="([^"]+)"/g)) expect(paths, route).toContain(route);
    });
  });
});
