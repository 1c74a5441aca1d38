/**
 * The Grafana dashboard and the Prometheus alert rules the packages ship, checked without
 * Grafana or Prometheus: the dashboard is importable JSON (unique panel ids, panels on a 24-column
 * grid without overlaps, every query on the data-source variable and filtered by the node
 * variable) and has a panel for each question an operator asks; the rule file has every alert
 * with a severity, a summary and a description; every metric either uses is in docs/metrics.md (the
 * token-expiry gauge of another branch is the one pending name). promtool's own checks and an
 * alert that fires: test/integration/metrics/monitoring.test.ts; against a running daemon: e2e.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { documentedMetrics, metricsIn, metricsUsed, readAlerts, readDashboard } from '../../support/monitoring.js';

describe('unit: packaging: the Grafana dashboard', () => {
  const dash = readDashboard();
  const panels = dash.panels.filter((p) => p.type !== 'row');

  it('is a dashboard Grafana imports: title, uid, schema, variables, unique ids, a 24-column grid without overlaps', () => {
    assert.equal(dash.title, 'wg-overlay');
    assert.match(dash.uid, /^[a-z0-9-]{1,40}$/);
    assert.ok(dash.schemaVersion >= 36);
    assert.deepEqual(
      dash.templating.list.map((v) => [v.name, v.type]),
      [
        ['datasource', 'datasource'],
        ['instance', 'query'],
      ],
    );
    const ids = dash.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const cells = new Map<string, string>();
    for (const p of dash.panels) {
      const g = p.gridPos;
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0, `${p.title}: ${JSON.stringify(g)}`);
      for (let y = g.y; y < g.y + g.h; y += 1)
        for (let x = g.x; x < g.x + g.w; x += 1) {
          const other = cells.get(`${x},${y}`);
          assert.equal(other, undefined, `"${p.title}" overlaps "${other}"`);
          cells.set(`${x},${y}`, p.title);
        }
    }
  });

  it('every query is PromQL on the data-source variable, filtered by the node variable, naming wg-overlay metrics', () => {
    for (const p of panels) {
      assert.ok(p.targets && p.targets.length > 0, `${p.title} has queries`);
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      for (const t of p.targets) {
        assert.equal(t.datasource?.uid, '${datasource}', `${p.title} ${t.refId}`);
        assert.ok(metricsIn(t.expr).length > 0, `${p.title} ${t.refId}: ${t.expr}`);
        for (const selector of t.expr.match(/wg_overlay_[a-z0-9_]+(\{[^}]*\})?/g) ?? [])
          assert.match(selector, /instance=~"\$instance"/, `${p.title} ${t.refId}: ${selector} is filtered by node`);
        assert.equal(t.expr.split('(').length, t.expr.split(')').length, `${p.title} ${t.refId}: balanced parentheses`);
      }
    }
  });

  it('answers what an operator asks: mesh size, stale handshakes, traffic per peer, errors, watches, skips, leaders', () => {
    const uses = (re: RegExp, metric: string): void => {
      const p = panels.find((x) => re.test(x.title));
      assert.ok(p, `a panel titled ${String(re)}: ${panels.map((x) => x.title).join(' | ')}`);
      assert.ok(
        p.targets!.some((t) => metricsIn(t.expr).includes(metric)),
        `"${p.title}" uses ${metric}`,
      );
    };
    uses(/^Nodes in the mesh$/, 'wg_overlay_peers');
    uses(/without a recent handshake/, 'wg_overlay_peer_latest_handshake_age_seconds');
    uses(/^Received per peer$/, 'wg_overlay_peer_received_bytes_total');
    uses(/^Sent per peer$/, 'wg_overlay_peer_sent_bytes_total');
    uses(/^Reconcile errors by step$/, 'wg_overlay_apply_errors_total');
    uses(/^API watches$/, 'wg_overlay_watch_up');
    uses(/^Skipped Nodes and Peers by reason$/, 'wg_overlay_skipped');
    uses(/^Leader per location$/, 'wg_overlay_location_info');
    uses(/^Routes by family$/, 'wg_overlay_routes');
    uses(/^Endpoint switches$/, 'wg_overlay_endpoint_switches_total');
  });
});

describe('unit: packaging: the Prometheus alert rules', () => {
  const rules = readAlerts().groups.flatMap((g) => g.rules);

  it('has each alert, with a severity, a summary and a description', () => {
    assert.deepEqual(
      rules.map((r) => r.alert),
      [
        'WgOverlayWatchDown',
        'WgOverlayPeerHandshakeStale',
        'WgOverlayReconcileErrors',
        'WgOverlayApplyErrors',
        'WgOverlayNodesSkipped',
        'WgOverlayEndpointFlapping',
        'WgOverlayTokenExpiresSoon',
        'WgOverlayMetricsAbsent',
      ],
    );
    for (const r of rules) {
      assert.match(r.labels?.severity ?? '', /^(critical|warning|info)$/, r.alert);
      assert.ok((r.annotations?.summary ?? '').length > 10, `${r.alert} has a summary`);
      assert.ok((r.annotations?.description ?? '').length > 40, `${r.alert} has a description`);
      if (r.for) assert.match(r.for, /^\d+[smh]$/, r.alert);
    }
    const stale = rules.find((r) => r.alert === 'WgOverlayPeerHandshakeStale')!;
    assert.deepEqual(metricsIn(stale.expr), [
      'wg_overlay_peer_latest_handshake_age_seconds',
      'wg_overlay_peer_sent_bytes_total',
    ]);
    assert.match(stale.expr, /> 300/, 'no handshake for 5 minutes');
    assert.match(
      rules.find((r) => r.alert === 'WgOverlayTokenExpiresSoon')!.expr,
      /wg_overlay_token_expiry_timestamp_seconds/,
    );
  });

  it('the table in docs/metrics.md lists the alerts of the file', () => {
    const doc = readFileSync('docs/metrics.md', 'utf8');
    const listed = [...doc.matchAll(/^\| `(WgOverlay\w+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual(
      listed,
      rules.map((r) => r.alert),
    );
  });
});

describe('unit: packaging: monitoring uses only documented metrics', () => {
  it('every metric of a panel or an alert is in docs/metrics.md', () => {
    const documented = documentedMetrics();
    const missing = [...metricsUsed()].filter(([name]) => !documented.has(name));
    assert.deepEqual(missing, [], 'used by the dashboard or the alerts, but not in docs/metrics.md');
  });

  it('both files ship in both packages under /usr/share/wg-overlay/monitoring/, with metrics.md beside install.md', () => {
    const nfpm = parseYaml(readFileSync('nfpm.yaml', 'utf8')) as {
      contents: Array<{ src?: string; dst: string; type?: string; packager?: string }>;
    };
    const byDst = new Map(nfpm.contents.map((c) => [c.dst, c]));
    for (const f of ['wg-overlay-dashboard.json', 'wg-overlay-alerts.yaml']) {
      const c = byDst.get(`/usr/share/wg-overlay/monitoring/${f}`);
      assert.equal(c?.src, `packaging/monitoring/${f}`);
      assert.equal(c.packager, undefined, 'the same file in the deb and the rpm');
    }
    assert.equal(byDst.get('/usr/share/wg-overlay/monitoring')?.type, 'dir');
    assert.equal(byDst.get('/usr/share/doc/wg-overlay/metrics.md')?.src, 'docs/metrics.md');
  });
});
