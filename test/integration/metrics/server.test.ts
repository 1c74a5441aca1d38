/**
 * The metrics and health server over real HTTP on loopback: /metrics in Prometheus text format
 * with the daemon's series, /healthz 200 while healthy and 503 with the reason when the watch
 * has been down too long or the last apply failed, and nothing else served.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { DaemonMetrics, evaluateHealth, type HealthResult } from '../../../service/src/metrics/metrics.js';
import { startMetricsServer, type MetricsServer } from '../../../service/src/metrics/server.js';

/** One HTTP request with node:http (no fetch: the runtime target is Node 18). */
function request(url: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      let body = '';
      res
        .setEncoding('utf8')
        .on('data', (d: string) => (body += d))
        .on('end', () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }),
        );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('integration: metrics and health over HTTP', function () {
  this.timeout(10_000);
  let server: MetricsServer;
  let base: string;
  let watchDownMs = 0;
  let lastReport: { ok: boolean; error?: string; at: number } | undefined;
  const metrics = new DaemonMetrics({
    node: 'node-a',
    iface: 'wg0',
    version: '0.0.0-test',
    readHandshakes: async () => [{ kind: 'peer', name: 'laptop', latestHandshake: Math.floor(Date.now() / 1000) - 30 }],
  });
  const health = (): HealthResult =>
    evaluateHealth({ watches: [{ what: 'node watch', downForMs: watchDownMs }], thresholdMs: 60_000, lastReport });

  before(async () => {
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, health });
    base = `http://127.0.0.1:${server.address.port}`;
  });
  after(async () => {
    await server?.close();
  });

  it('listens on loopback only, where it was told', () => {
    assert.equal(server.address.host, '127.0.0.1');
    assert.ok(server.address.port > 0);
  });

  it("/metrics serves the daemon's series in Prometheus text format", async () => {
    metrics.observeReport(
      { ok: true, changes: ['added peer laptop'], durationMs: 7, at: Date.now() },
      undefined,
      Date.now(),
    );
    metrics.setWatch('nodes', true);
    const r = await request(`${base}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    for (const re of [
      /^wg_overlay_reconciles_total\{result="ok"\} 1$/m,
      /^wg_overlay_reconcile_duration_seconds_bucket\{le="0\.01"\} 1$/m,
      /^wg_overlay_last_successful_sync_timestamp_seconds \d{10}$/m,
      /^wg_overlay_watch_up\{resource="nodes"\} 1$/m,
      /^wg_overlay_peers\{kind="peer"\} 0$/m,
      /^wg_overlay_peer_latest_handshake_age_seconds\{kind="peer",name="laptop"\} (29|30|31)$/m,
      /^# TYPE wg_overlay_apply_errors_total counter$/m,
    ])
      assert.match(r.body, re);
  });

  it('/healthz: 200 ok while healthy', async () => {
    const r = await request(`${base}/healthz`);
    assert.deepEqual([r.status, r.body], [200, 'ok\n']);
  });

  it('/healthz: 503 with the reason when the watch is down longer than the threshold', async () => {
    watchDownMs = 30_000;
    assert.equal((await request(`${base}/healthz`)).status, 200, 'within the threshold');
    watchDownMs = 90_000;
    const r = await request(`${base}/healthz`);
    assert.deepEqual([r.status, r.body], [503, 'unhealthy: node watch has been down for 90 s (threshold 60 s)\n']);
    watchDownMs = 0;
  });

  it('/healthz: 503 with the reason when the last apply failed, 200 again once it succeeds', async () => {
    lastReport = { ok: false, error: 'wg set wg0 peer X: exit 1: Operation not permitted', at: Date.now() };
    const r = await request(`${base}/healthz`);
    assert.deepEqual(
      [r.status, r.body],
      [503, 'unhealthy: the last apply failed: wg set wg0 peer X: exit 1: Operation not permitted\n'],
    );
    lastReport = { ok: true, at: Date.now() };
    assert.equal((await request(`${base}/healthz`)).status, 200);
  });

  it('serves nothing else', async () => {
    assert.equal((await request(`${base}/`)).status, 404);
    assert.equal((await request(`${base}/metrics`, 'POST')).status, 405);
    assert.equal((await request(`${base}/healthz`, 'HEAD')).status, 200);
  });
});
