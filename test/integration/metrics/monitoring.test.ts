/**
 * The shipped alert rules and dashboard through Prometheus' own promtool: the rule file passes
 * `promtool check rules`; each alert fires in `promtool test rules` on series shaped as the daemon
 * serves them, and stays quiet where it must (an idle peer without keepalive, a node whose runs
 * still succeed, a token far from expiry); every dashboard query parses as PromQL once Grafana's
 * variables are filled in; and what the daemon serves passes `promtool check metrics`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { everyMetric } from '../../support/fakes/metrics.js';
import { ALERTS_FILE, readDashboard } from '../../support/monitoring.js';
import { requireTools, run } from '../../support/process.js';

const PATH = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

/** A series in promtool's notation, with the labels every scraped series carries. */
const series = (name: string, labels: Record<string, string>, values: string): { series: string; values: string } => ({
  series: `${name}{${Object.entries({ job: 'wg-overlay', ...labels })
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')}}`,
  values,
});

/** Which alerts fire at `at`, each as `alertname instance [name]`: a promql_expr_test on ALERTS. */
const firing = (
  at: string,
  alerts: Array<{ alert: string; labels: Record<string, string>; severity: string }>,
  only: string,
): { expr: string; eval_time: string; exp_samples: Array<{ labels: string; value: number }> } => ({
  expr: `ALERTS{alertname="${only}",alertstate="firing"}`,
  eval_time: at,
  exp_samples: alerts.map((a) => ({
    labels: `ALERTS{${Object.entries({
      alertname: a.alert,
      alertstate: 'firing',
      // absent() keeps no labels of the series it misses
      ...(Object.keys(a.labels).length > 0 ? { job: 'wg-overlay' } : {}),
      ...a.labels,
      severity: a.severity,
    })
      .map(([k, v]) => `${k}="${v}"`)
      .join(',')}}`,
    value: 1,
  })),
});

/** A peer sent to that never answers fires; an idle peer that never had a handshake does not. */
function handshakeScenario(): unknown {
  const peerB = { instance: 'node-a', kind: 'node', name: 'node-b' };
  const peerC = { instance: 'node-a', kind: 'node', name: 'node-c' };
  const stale = 'WgOverlayPeerHandshakeStale';
  return {
    interval: '1m',
    input_series: [
      series('wg_overlay_peer_latest_handshake_age_seconds', peerB, '400+60x30'),
      series('wg_overlay_peer_sent_bytes_total', peerB, '0+148x30'),
      series('wg_overlay_peer_latest_handshake_age_seconds', peerC, 'Inf+0x30'),
      series('wg_overlay_peer_sent_bytes_total', peerC, '500+0x30'),
    ],
    promql_expr_test: [
      firing('4m', [], stale),
      firing('12m', [{ alert: stale, labels: peerB, severity: 'warning' }], stale),
    ],
  };
}

/** The scenarios: input series shaped as the daemon serves them, and which alerts fire when. */
function scenarios(): unknown[] {
  return [
    handshakeScenario(),
    {
      interval: '1m',
      input_series: [
        series('wg_overlay_watch_up', { instance: 'node-a', resource: 'nodes' }, '1 1 0+0x20'),
        series('wg_overlay_watch_up', { instance: 'node-a', resource: 'peers' }, '1+0x22'),
        series('wg_overlay_reconciles_total', { instance: 'node-a', result: 'error' }, '0+1x30'),
        series('wg_overlay_reconciles_total', { instance: 'node-a', result: 'ok' }, '5+0x30'),
        series('wg_overlay_reconciles_total', { instance: 'node-b', result: 'error' }, '0+1x30'),
        series('wg_overlay_reconciles_total', { instance: 'node-b', result: 'ok' }, '5+1x30'),
        series('wg_overlay_skipped', { instance: 'node-a', kind: 'node', reason: 'no-public-key' }, '1+0x40'),
      ],
      promql_expr_test: [
        firing('4m', [], 'WgOverlayWatchDown'),
        firing(
          '9m',
          [{ alert: 'WgOverlayWatchDown', labels: { instance: 'node-a', resource: 'nodes' }, severity: 'warning' }],
          'WgOverlayWatchDown',
        ),
        firing(
          '25m',
          [{ alert: 'WgOverlayReconcileErrors', labels: { instance: 'node-a', result: 'error' }, severity: 'warning' }],
          'WgOverlayReconcileErrors',
        ),
        firing('20m', [], 'WgOverlayNodesSkipped'),
        firing(
          '35m',
          [
            {
              alert: 'WgOverlayNodesSkipped',
              labels: { instance: 'node-a', kind: 'node', reason: 'no-public-key' },
              severity: 'info',
            },
          ],
          'WgOverlayNodesSkipped',
        ),
      ],
    },
    {
      // promtool's clock starts at the epoch: node-a's token expires after 3 days, node-b's after 30.
      interval: '1m',
      input_series: [
        series('wg_overlay_token_expiry_timestamp_seconds', { instance: 'node-a' }, `${3 * 86400}+0x150`),
        series('wg_overlay_token_expiry_timestamp_seconds', { instance: 'node-b' }, `${30 * 86400}+0x150`),
        series('wg_overlay_info', { instance: 'node-a' }, '1+0x150'),
      ],
      promql_expr_test: [
        firing('30m', [], 'WgOverlayTokenExpiresSoon'),
        firing(
          '2h',
          [{ alert: 'WgOverlayTokenExpiresSoon', labels: { instance: 'node-a' }, severity: 'warning' }],
          'WgOverlayTokenExpiresSoon',
        ),
        firing('2h', [], 'WgOverlayMetricsAbsent'),
      ],
    },
    {
      interval: '1m',
      input_series: [series('up', { instance: 'node-a' }, '0+0x20')],
      promql_expr_test: [
        firing('15m', [{ alert: 'WgOverlayMetricsAbsent', labels: {}, severity: 'warning' }], 'WgOverlayMetricsAbsent'),
      ],
    },
  ];
}

describe('integration: the shipped alert rules and dashboard through promtool', function () {
  this.timeout(60_000);
  let dir: string;

  before(async () => {
    await requireTools(['promtool']);
    dir = await mkdtemp(join(tmpdir(), 'wgo-promtool-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('promtool check rules accepts the alert rules', async () => {
    const r = await run('promtool', ['check', 'rules', ALERTS_FILE], { env: PATH });
    assert.match(r.stdout, /SUCCESS: 8 rules found/);
  });

  it('promtool test rules: each alert fires where it must and only there', async () => {
    const file = join(dir, 'alerts-test.yaml');
    await writeFile(file, stringify({ rule_files: [ALERTS_FILE], evaluation_interval: '1m', tests: scenarios() }));
    const r = await run('promtool', ['test', 'rules', file], { env: PATH, allowFailure: true });
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /SUCCESS/);
  });

  it('every dashboard query is PromQL that Prometheus parses (Grafana variables filled in)', async () => {
    const rules = readDashboard()
      .panels.flatMap((p) => (p.targets ?? []).map((t) => ({ p, t })))
      .map(({ p, t }) => ({
        record: `dashboard:panel${p.id}:${t.refId}`,
        expr: t.expr.replace(/\$__rate_interval/g, '5m').replace(/\$instance/g, '.*'),
      }));
    assert.ok(rules.length >= 20, `${rules.length} queries`);
    const file = join(dir, 'dashboard-queries.yaml');
    await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
    const r = await run('promtool', ['check', 'rules', file], { env: PATH, allowFailure: true });
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
  });

  it('what the daemon serves passes promtool check metrics (names, units, help texts)', async () => {
    const text = (await everyMetric().render()).body;
    const r = await run('promtool', ['check', 'metrics'], { env: PATH, input: text, allowFailure: true });
    assert.equal(r.exitCode, 0, `${r.stdout}${r.stderr}`);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no lint findings');
  });
});
