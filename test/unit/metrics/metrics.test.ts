/**
 * Metrics and health (pure parts): the health verdict (watch down longer than the threshold,
 * last apply failed, a run stuck longer than the threshold), and the exposition of every metric
 * from reconcile reports (apply errors by the failing step the report names) and device handshakes,
 * and the mesh series (per-peer traffic, routes by family, failover, NAT, location) with bounded labels.
 */
import assert from 'node:assert/strict';
import { DaemonMetrics, evaluateHealth, type HealthInput } from '../../../service/src/metrics/metrics.js';
import type { DesiredState } from '../../../service/src/mesh/types.js';
import { KEYS } from '../../support/fakes/fixtures.js';
import { desiredOfA, meshMetrics, type FakeReading } from '../../support/fakes/metrics.js';

describe('unit: health verdict', () => {
  const ok = { ok: true, at: 1 };
  const cases: Array<[string, HealthInput, boolean, RegExp[]]> = [
    [
      'all up, last apply ok',
      { watches: [{ what: 'node watch', downForMs: 0 }], thresholdMs: 300_000, lastReport: ok },
      true,
      [],
    ],
    [
      'no run yet',
      { watches: [{ what: 'node watch', downForMs: 0 }], thresholdMs: 300_000, lastReport: undefined },
      true,
      [],
    ],
    [
      'watch down, within the threshold',
      { watches: [{ what: 'node watch', downForMs: 299_000 }], thresholdMs: 300_000, lastReport: ok },
      true,
      [],
    ],
    [
      'watch down longer than the threshold',
      { watches: [{ what: 'node watch', downForMs: 301_000 }], thresholdMs: 300_000, lastReport: ok },
      false,
      [/^node watch has been down for 301 s \(threshold 300 s\)$/],
    ],
    [
      'last apply failed',
      { watches: [], thresholdMs: 300_000, lastReport: { ok: false, error: 'wg set wg0: exit 1', at: 1 } },
      false,
      [/^the last apply failed: wg set wg0: exit 1$/],
    ],
    [
      'a run going, within the threshold',
      { watches: [], thresholdMs: 300_000, lastReport: ok, busyForMs: 299_000 },
      true,
      [],
    ],
    [
      'a run stuck longer than the threshold',
      { watches: [], thresholdMs: 300_000, lastReport: ok, busyForMs: 301_000 },
      false,
      [/^a reconcile run has been stuck for 301 s \(threshold 300 s\)$/],
    ],
    [
      'both, every reason listed',
      {
        watches: [
          { what: 'node watch', downForMs: 0 },
          { what: 'peer watch', downForMs: 9_000 },
        ],
        thresholdMs: 5_000,
        lastReport: { ok: false, error: 'x', at: 1 },
      },
      false,
      [/^peer watch has been down for 9 s/, /^the last apply failed: x$/],
    ],
  ];
  for (const [name, input, want, reasons] of cases) {
    it(name, () => {
      const h = evaluateHealth(input);
      assert.equal(h.ok, want);
      assert.equal(h.reasons.length, reasons.length, h.reasons.join('; '));
      reasons.forEach((re, i) => assert.match(h.reasons[i]!, re));
    });
  }
});

describe('unit: metrics exposition', () => {
  const desired = desiredOfA();

  it('peers by kind, skipped by reason, reconciles, durations, apply errors, last sync, handshake ages', async () => {
    const m = new DaemonMetrics({
      node: 'a',
      iface: 'wg0',
      version: '9.9.9',
      now: () => 1_800_000_100_000,
      readHandshakes: async () => [
        { kind: 'node', name: 'b', latestHandshake: 1_800_000_088 },
        { kind: 'peer', name: 'laptop', latestHandshake: 0 },
      ],
    });
    m.observeReport({ ok: true, changes: [], durationMs: 4, at: 0 }, desired, 1_800_000_000_000);
    m.observeReport(
      { ok: false, error: 'wg set wg0 peer x: exit 1', errorStep: 'peers', changes: [], durationMs: 30, at: 0 },
      desired,
      1_800_000_000_000,
    );
    m.observeReport(
      { ok: false, error: 'something unexpected', changes: [], durationMs: 1, at: 0 },
      desired,
      1_800_000_000_000,
    );
    m.observeReport(
      { ok: true, changes: [], durationMs: 2, at: 0, configFileError: 'writing /etc/wireguard/wg0.conf' },
      desired,
      1_800_000_050_000,
    );
    m.setWatch('nodes', true);
    m.setWatch('peers', false);
    const { contentType, body } = await m.render();
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    const want = [
      `wg_overlay_info{version="9.9.9",node="a",interface="wg0",address="${desired.iface.address.split('/')[0]!}",address6=""} 1`,
      'wg_overlay_peers{kind="node"} 1',
      'wg_overlay_peers{kind="peer"} 1',
      'wg_overlay_skipped{kind="node",reason="no-public-key"} 1',
      'wg_overlay_skipped{kind="peer",reason="invalid-public-key"} 2',
      'wg_overlay_reconciles_total{result="ok"} 2',
      'wg_overlay_reconciles_total{result="error"} 2',
      'wg_overlay_reconcile_duration_seconds_count 4',
      'wg_overlay_reconcile_duration_seconds_bucket{le="0.005"} 3',
      'wg_overlay_apply_errors_total{kind="peers"} 1',
      'wg_overlay_apply_errors_total{kind="other"} 1',
      'wg_overlay_apply_errors_total{kind="config-file"} 1',
      'wg_overlay_last_successful_sync_timestamp_seconds 1800000050',
      'wg_overlay_watch_up{resource="nodes"} 1',
      'wg_overlay_watch_up{resource="peers"} 0',
      'wg_overlay_peer_latest_handshake_age_seconds{kind="node",name="b"} 12',
      'wg_overlay_peer_latest_handshake_age_seconds{kind="peer",name="laptop"} +Inf',
    ];
    const lines = body.split('\n');
    for (const line of want) assert.ok(lines.includes(line), `missing "${line}" in:\n${body}`);
    assert.match(body, /# HELP wg_overlay_peer_latest_handshake_age_seconds /);
  });

  it('with locations: whether this node leads, and how often the leader of its location changed; peers counted from a delta', async () => {
    const m = new DaemonMetrics({ node: 'a', iface: 'wg0', version: '1', readHandshakes: async () => [] });
    const located = (leader: string, leads: boolean): DesiredState => ({
      ...desired,
      topology: {
        granularity: 'location',
        location: 'aws',
        locationId: 'location:aws',
        leader,
        why: '',
        leads,
        locations: [],
      },
    });
    m.observeReport({ ok: true, changes: [], durationMs: 1, at: 0 }, located('a', true), undefined);
    m.observeReport({ ok: true, changes: [], durationMs: 1, at: 0 }, located('a', true), undefined);
    m.observeReport({ ok: true, changes: [], durationMs: 1, at: 0 }, located('b', false), undefined);
    const derived: DesiredState = {
      ...desired,
      peers: desired.peers.slice(0, 1),
      peersDelta: { from: desired.peers, removed: desired.peers.slice(1), added: [] },
    };
    m.observeReport({ ok: true, changes: [], durationMs: 1, at: 0 }, derived, undefined);
    const lines = (await m.render()).body.split('\n');
    for (const line of [
      'wg_overlay_location_leader 0',
      'wg_overlay_leader_changes_total 1',
      'wg_overlay_peers{kind="node"} 1',
      'wg_overlay_peers{kind="peer"} 0',
    ]) {
      assert.ok(lines.includes(line), `missing "${line}"`);
    }
  });

  it("this node's credential: whether node-policy.yaml is in force (-1 until known) and when the token expires", async () => {
    const m = new DaemonMetrics({ node: 'a', iface: 'wg0', version: '1', readHandshakes: async () => [] });
    const value = async (name: string): Promise<string | undefined> =>
      (await m.render()).body
        .split('\n')
        .find((l) => l.startsWith(`${name} `))
        ?.split(' ')[1];
    assert.equal(await value('wg_overlay_node_policy_enforced'), '-1');
    assert.equal(await value('wg_overlay_token_expiry_timestamp_seconds'), '0');
    m.setNodePolicy('not-enforced');
    assert.equal(await value('wg_overlay_node_policy_enforced'), '0');
    m.setNodePolicy('enforced');
    assert.equal(await value('wg_overlay_node_policy_enforced'), '1');
    m.setNodePolicy('unknown');
    assert.equal(await value('wg_overlay_node_policy_enforced'), '-1');
    m.setTokenExpiry(1_800_000_000);
    assert.equal(await value('wg_overlay_token_expiry_timestamp_seconds'), '1800000000');
    m.setTokenExpiry(undefined);
    assert.equal(await value('wg_overlay_token_expiry_timestamp_seconds'), '0');
  });

  it('mesh series: bytes, handshake time, endpoint family (configured peers only), routes by family, failover, NAT, location, switches', async () => {
    let reading: FakeReading[] = [
      { publicKey: KEYS[1], rx: 5000, tx: 7000, endpoint: '[2001:db8::12]:51820', handshake: 1_800_000_000 },
      { publicKey: KEYS[3], rx: 10, tx: 20, endpoint: undefined, handshake: 0 },
      { publicKey: KEYS[5], rx: 1, tx: 1, endpoint: '198.51.100.9:1', handshake: 0 },
    ];
    const { metrics: m, desired: dual } = meshMetrics(() => reading);
    const first = (await m.render()).body;
    assert.match(
      first,
      /^wg_overlay_endpoint_switches_total\{reason="roamed"\} 0$/m,
      'every reason at 0 from the start',
    );
    m.observeReport({ ok: true, changes: [], durationMs: 1, at: 0 }, dual, undefined);
    m.countSwitch('no-answer');
    // node b's interface was recreated (its counters start again) and it arrived from a NAT router
    reading = [{ ...reading[0]!, rx: 100, tx: 200, endpoint: '198.51.100.1:4000' }, reading[1]!];
    const lines = (await m.render()).body.split('\n');
    for (const line of [
      'wg_overlay_info{version="1",node="a",interface="wg0",address="100.64.0.1",address6="fd64::1"} 1',
      'wg_overlay_peer_received_bytes_total{kind="node",name="b"} 5100',
      'wg_overlay_peer_sent_bytes_total{kind="node",name="b"} 7200',
      'wg_overlay_peer_received_bytes_total{kind="peer",name="laptop"} 10',
      'wg_overlay_peer_last_handshake_timestamp_seconds{kind="node",name="b"} 1800000000',
      'wg_overlay_peer_last_handshake_timestamp_seconds{kind="peer",name="laptop"} 0',
      'wg_overlay_peer_endpoint_family{kind="node",name="b",family="4"} 1',
      'wg_overlay_routes{family="4"} 2', // b's PodCIDR and the laptop's range
      'wg_overlay_routes{family="6"} 1',
      'wg_overlay_failover_peers{state="best"} 2',
      'wg_overlay_failover_peers{state="fallback"} 1',
      'wg_overlay_nat_observed_peers 2',
      'wg_overlay_nat_discovered_peers 1',
      'wg_overlay_nat_behind 1',
      'wg_overlay_location_info{location="aws",leader="b"} 1',
      'wg_overlay_endpoint_switches_total{reason="no-answer"} 1',
      'wg_overlay_endpoint_switches_total{reason="roamed"} 1',
      'wg_overlay_endpoint_switches_total{reason="probe"} 0',
    ])
      assert.ok(lines.includes(line), `missing "${line}" in:\n${lines.join('\n')}`);
    const body = lines.join('\n');
    assert.doesNotMatch(body, new RegExp(KEYS[5].replace(/[+/]/g, '.')), 'an unknown key names no series');
    assert.doesNotMatch(body, /198\.51\.100|2001:db8/, 'no endpoint is a label value');
    assert.ok(
      !lines.some((l) => l.startsWith('wg_overlay_peer_endpoint_family{kind="peer"')),
      'a peer without an endpoint has no family',
    );
  });

  it('without a device there are no per-peer handshake series, and scraping still works', async () => {
    const m = new DaemonMetrics({
      node: 'a',
      iface: 'wg0',
      version: '1',
      readHandshakes: async () => {
        throw new Error('wg0 is missing');
      },
    });
    const { body } = await m.render();
    assert.doesNotMatch(body, /wg_overlay_peer_latest_handshake_age_seconds\{/);
    assert.match(body, /wg_overlay_last_successful_sync_timestamp_seconds 0/);
  });
});
