/**
 * `graph` and `status` rendering (pure): DOT with boxes for nodes, dashed links to Peers, grey
 * skipped objects and stale-handshake marking; the status view merging the daemon's status file
 * with the live device and routes (handshake ages, rx/tx, routes present, unknown peers, skipped
 * reasons) and its text form, including a missing interface.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { formatAge, renderGraph } from '../../../service/src/cli/graph.js';
import { buildStatusView, formatBytes, renderStatusText, type StatusInput } from '../../../service/src/cli/status.js';
import type { MeshSettings } from '../../../service/src/mesh/desired/desired.js';
import { computeDesired, desiredFor } from '../../../service/src/mesh/desired/desired.js';
import type { ExternalPeer } from '../../../service/src/mesh/types.js';
import { decideMembership } from '../../../service/src/mesh/membership/membership.js';
import { clusterTopology } from '../../../service/src/mesh/desired/topology.js';
import { buildSnapshot } from '../../../service/src/status/snapshot.js';
import { KEYS, meshNode } from '../../support/fakes/fixtures.js';

const SETTINGS: MeshSettings = {
  interfaceName: 'wg0',
  listenPort: 51820,
  mtu: undefined,
  persistentKeepalive: 0,
  overlayCidr: '100.64.0.0/10',
  endpoint: { mode: 'internal' },
};
const NODES = [
  meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] }),
  meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] }),
  meshNode('c', { ip: '192.0.2.13', created: 3, pods: ['10.244.3.0/24'], key: KEYS[2] }),
  meshNode('joining', { ip: '192.0.2.14', created: 4 }),
];
const peer = (name: string, o: Partial<ExternalPeer> = {}): ExternalPeer => ({
  name,
  createdAt: 0,
  allowedIPs: ['10.5.0.2/32'],
  publicKey: KEYS[3],
  presharedKey: undefined,
  persistentKeepalive: 25,
  endpoint: undefined,
  ...o,
});
const PEERS = [peer('laptop'), peer('my-device', { publicKey: 'YOUR_PUBLIC_KEY_HERE', allowedIPs: ['10.5.0.9/32'] })];
const NOW = 1_800_000_000;

describe('unit: graph rendering', () => {
  const view = decideMembership(NODES, PEERS, SETTINGS);

  it('draws node boxes, a Peer ellipse, solid node links, dashed Peer links and skipped objects in grey', () => {
    const dot = renderGraph(view, { self: undefined, handshakes: undefined, now: NOW, staleAfterSeconds: 180 });
    assert.match(dot, /^graph "wg-overlay" \{\n/);
    assert.match(dot, /\n\}\n$/);
    assert.match(dot, /"node\/a" \[label="a\\n10\.244\.1\.0\/24\\n100\.64\.2\.11\\n192\.0\.2\.11:51820"\];/);
    assert.match(
      dot,
      /"peer\/laptop" \[shape=ellipse, style=dashed, label="laptop\\n10\.5\.0\.2\/32\\n\(roaming\)"\];/,
    );
    assert.equal((dot.match(/"node\/[abc]" -- "node\/[abc]";/g) ?? []).length, 3, 'a full mesh of 3 nodes');
    assert.equal((dot.match(/-- "peer\/laptop" \[style=dashed\]/g) ?? []).length, 3, 'every node links to the Peer');
    assert.match(
      dot,
      /"peer\/my-device" \[shape=ellipse, style="dashed,rounded", color=gray, fontcolor=gray, label="my-device\\nskipped: invalid public key/,
    );
    assert.match(dot, /"node\/joining" \[shape=box, [^\n]*skipped: has not published a WireGuard public key yet/);
    assert.doesNotMatch(dot, /-- "peer\/my-device"|-- "node\/joining"/, 'no links to skipped objects');
  });

  it("labels this node's links with handshake ages and marks stale ones red", () => {
    const handshakes = new Map([
      [KEYS[1], NOW - 12],
      [KEYS[2], NOW - 600],
      [KEYS[3], 0],
    ]);
    const dot = renderGraph(view, { self: 'a', handshakes, now: NOW, staleAfterSeconds: 180 });
    assert.match(dot, /"node\/a" \[label="[^"]*", penwidth=2\];/);
    assert.match(dot, /"node\/a" -- "node\/b" \[color=darkgreen, fontcolor=darkgreen, label="12s ago"\];/);
    assert.match(dot, /"node\/a" -- "node\/c" \[color=red, fontcolor=red, label="stale: 10m ago"\];/);
    assert.match(
      dot,
      /"node\/a" -- "peer\/laptop" \[style=dashed, color=red, fontcolor=red, label="stale: no handshake"\];/,
    );
    assert.match(dot, /"node\/b" -- "node\/c";/, 'links between other nodes carry no handshake information');
    assert.match(dot, /as seen from a/);
  });

  it('a peer this node should have but the device lacks is stale too', () => {
    const dot = renderGraph(view, {
      self: 'a',
      handshakes: new Map([[KEYS[1], NOW]]),
      now: NOW,
      staleAfterSeconds: 180,
    });
    assert.match(dot, /"node\/a" -- "node\/c" \[color=red, fontcolor=red, label="stale: not on the device"\];/);
  });

  it('escapes quotes and backslashes in labels', () => {
    const v = decideMembership(
      [meshNode('we"ird\\', { ip: '192.0.2.30', pods: ['10.244.30.0/24'], key: KEYS[0] })],
      [],
      SETTINGS,
    );
    const dot = renderGraph(v, { self: undefined, handshakes: undefined, now: NOW, staleAfterSeconds: 180 });
    assert.ok(dot.includes('"node/we\\"ird\\\\" [label="we\\"ird\\\\\\n10.244.30.0/24'), dot);
  });

  it('with locations: one cluster per location, leaders marked, tunnels only between leaders, the private network dotted; dot renders it', () => {
    const loc = (n: ReturnType<typeof meshNode>, l: string) => ({
      ...n,
      labels: { 'topology.kubernetes.io/region': l },
    });
    const nodes = [
      loc(NODES[0]!, 'aws'),
      loc(NODES[1]!, 'aws'),
      loc(NODES[2]!, 'gcp'),
      loc(meshNode('d', { ip: '192.0.2.15', created: 5, pods: ['10.244.5.0/24'], key: KEYS[4] }), 'gcp'),
    ];
    const v = decideMembership(nodes, PEERS, SETTINGS);
    const topology = clusterTopology({
      members: v.members,
      nodes: new Map(nodes.map((n) => [n.name, n])),
      settings: {
        granularity: 'location',
        locationLabel: 'topology.kubernetes.io/region',
        reachable: 'public',
        localRoutes: true,
      },
    });
    const dot = renderGraph(v, { self: undefined, handshakes: undefined, now: NOW, staleAfterSeconds: 180, topology });
    assert.match(dot, /subgraph "cluster_0" \{\n    label="location aws";/);
    assert.match(dot, /subgraph "cluster_1" \{\n    label="location gcp";/);
    assert.match(dot, /"node\/a" \[label="a\\n\(leader\)[^\]]*style="rounded,bold", color=blue\];/);
    assert.match(dot, /"node\/c" \[label="c\\n\(leader\)/);
    assert.deepEqual(
      dot.match(/"node\/\w+" -- "node\/\w+";/g),
      ['"node/a" -- "node/c";'],
      'one tunnel: between the leaders',
    );
    assert.match(dot, /"node\/a" -- "node\/b" \[style=dotted, color=gray, label="private"\];/);
    assert.equal((dot.match(/-- "peer\/laptop"/g) ?? []).length, 2, 'external peers link to the leaders only');
    const svg = spawnSync('dot', ['-Tsvg'], { input: dot });
    assert.equal(svg.status, 0, svg.stderr.toString());
    assert.match(svg.stdout.toString(), /<svg/);
  });

  const ages: Array<[number, string]> = [
    [0, '0s'],
    [59, '59s'],
    [60, '1m'],
    [192, '3m12s'],
    [3600, '1h'],
    [7500, '2h5m'],
    [90000, '1d1h'],
    [172800, '2d'],
  ];
  for (const [s, want] of ages) it(`formatAge(${s}) = ${want}`, () => assert.equal(formatAge(s), want));
});

describe('unit: status view', () => {
  const desired = computeDesired({ name: 'a', publicKey: KEYS[0] }, NODES, SETTINGS, PEERS);
  const snapshot = buildSnapshot({
    node: 'a',
    iface: 'wg0',
    startedAt: NOW * 1000 - 60_000,
    desired,
    waiting: undefined,
    lastReport: { ok: true, changes: ['x'], durationMs: 12, at: NOW * 1000 - 5000 },
    lastSuccessAt: NOW * 1000 - 5000,
    watch: { nodes: { state: 'up', since: 0 }, peers: { state: 'up', since: 0 } },
    now: NOW * 1000 - 1000,
    pid: 4242,
  });
  const input = (o: Partial<StatusInput> = {}): StatusInput => ({
    node: 'a',
    iface: 'wg0',
    link: { name: 'wg0', exists: true, up: true, mtu: 1420, addresses: ['100.64.2.11/10'] },
    device: {
      name: 'wg0',
      publicKey: KEYS[0],
      listenPort: 51820,
      fwmark: 0,
      peers: [
        {
          publicKey: KEYS[1],
          hasPresharedKey: false,
          endpoint: '192.0.2.12:51820',
          allowedIPs: ['10.244.2.0/24', '100.64.2.12/32'],
          latestHandshake: NOW - 12,
          rxBytes: 2048,
          txBytes: 1_500_000,
          persistentKeepalive: 0,
        },
        {
          publicKey: KEYS[3],
          hasPresharedKey: false,
          endpoint: '198.51.100.9:40000',
          allowedIPs: ['10.5.0.2/32'],
          latestHandshake: 0,
          rxBytes: 0,
          txBytes: 92,
          persistentKeepalive: 25,
        },
        {
          publicKey: KEYS[5],
          hasPresharedKey: false,
          endpoint: undefined,
          allowedIPs: [],
          latestHandshake: 0,
          rxBytes: 0,
          txBytes: 0,
          persistentKeepalive: 0,
        },
      ],
    },
    routes: [
      { dst: '10.244.2.0/24', dev: 'wg0', protocol: '77' },
      { dst: '10.244.3.0/24', dev: 'eth0', protocol: 'static' },
      { dst: '10.5.0.2/32', dev: 'wg0', protocol: '77' },
    ],
    snapshot,
    snapshotError: undefined,
    statusFile: '/run/wg-overlay/status.json',
    pidAlive: true,
    now: NOW * 1000,
    ...o,
  });

  it('merges wanted peers with the device: names, overlay addresses, handshakes, traffic, routes', () => {
    const v = buildStatusView(input());
    assert.deepEqual(v.interface, {
      name: 'wg0',
      exists: true,
      up: true,
      addresses: ['100.64.2.11/10'],
      listenPort: 51820,
      publicKey: KEYS[0],
      readable: true,
    });
    assert.equal(v.daemon.running, true);
    assert.equal(v.daemon.pid, 4242);
    assert.deepEqual(
      v.peers.map((p) => [
        p.kind,
        p.name,
        p.overlayAddress,
        p.endpoint,
        p.handshakeAgeSeconds,
        p.rxBytes,
        p.txBytes,
        p.routesPresent,
        p.onDevice,
      ]),
      [
        ['node', 'b', '100.64.2.12', '192.0.2.12:51820', 12, 2048, 1_500_000, true, true],
        ['node', 'c', '100.64.2.13', '192.0.2.13:51820', null, 0, 0, false, false],
        ['peer', 'laptop', null, '198.51.100.9:40000', null, 0, 92, true, true],
        ['unknown', '(not a current Node or Peer)', null, null, null, 0, 0, true, true],
      ],
    );
    assert.deepEqual(
      v.peers[1]!.routes,
      [{ dst: '10.244.3.0/24', present: false }],
      'a route through another device does not count',
    );
    assert.deepEqual(
      v.skipped.map((s) => [s.kind, s.name, s.reason]),
      [
        ['node', 'joining', 'no-public-key'],
        ['peer', 'my-device', 'invalid-public-key'],
      ],
    );
  });

  it('renders the view as text', () => {
    const text = renderStatusText(buildStatusView(input()), NOW * 1000);
    assert.match(
      text,
      /^wg-overlay on a: daemon running \(pid 4242\); last run ok 5s ago; last full sync 5s ago\n  API: nodes up; peers up\n/,
    );
    assert.match(text, /\ninterface wg0: up, address 100\.64\.2\.11\/10, listen port 51820\n  public key /);
    assert.match(
      text,
      /\npeers: 4 \(2 nodes, 1 external peers, 1 unknown\)\n  NAME +KIND +OVERLAY ADDRESS +ENDPOINT +HANDSHAKE +RX +TX +ROUTES\n/,
    );
    assert.match(text, /\n  b +node +100\.64\.2\.12 +192\.0\.2\.12:51820 +12s ago +2\.0 KiB +1\.4 MiB +ok \(1\)\n/);
    assert.match(
      text,
      /\n  c +node +100\.64\.2\.13 +192\.0\.2\.13:51820 +NOT ON DEVICE +0 B +0 B +MISSING 10\.244\.3\.0\/24\n/,
    );
    assert.match(text, /\n  laptop +peer +- +198\.51\.100\.9:40000 +never +0 B +92 B +ok \(1\)\n/);
    assert.match(
      text,
      new RegExp(
        [
          '\\nskipped: 2\\n',
          '  Node joining: has not published a WireGuard public key yet \\[no-public-key\\]\\n',
          '  Peer my-device: invalid public key "YOUR_PUBLIC_KEY_HERE": [^\\n]* \\[invalid-public-key\\]\\n',
        ].join(''),
      ),
    );
  });

  it('with locations: says where this node stands, who leads and why, and whether the routes over the private network are in place', () => {
    const loc = (n: ReturnType<typeof meshNode>, l: string) => ({
      ...n,
      labels: { 'topology.kubernetes.io/region': l },
    });
    const nodes = [loc(NODES[0]!, 'aws'), loc(NODES[1]!, 'aws'), loc(NODES[2]!, 'gcp')];
    const me = { name: 'b', publicKey: KEYS[1] };
    const desired = desiredFor({
      self: me,
      selfNode: nodes[1],
      membership: decideMembership(nodes, [], SETTINGS, me),
      settings: SETTINGS,
      topology: {
        settings: {
          granularity: 'location',
          locationLabel: 'topology.kubernetes.io/region',
          reachable: 'public',
          localRoutes: true,
        },
        nodes: new Map(nodes.map((n) => [n.name, n])),
      },
    });
    const snap = buildSnapshot({
      node: 'b',
      iface: 'wg0',
      startedAt: 0,
      desired,
      waiting: undefined,
      lastReport: undefined,
      lastSuccessAt: undefined,
      watch: { nodes: { state: 'up', since: 0 }, peers: { state: 'up', since: 0 } },
      now: 1,
      pid: 1,
    });
    const v = buildStatusView(
      input({
        node: 'b',
        snapshot: snap,
        routes: [{ dst: '10.244.3.0/24', dev: 'eth0', gateway: '192.0.2.11', protocol: '77' }],
      }),
    );
    assert.equal(v.topology?.leader, 'a');
    const text = renderStatusText(v, NOW * 1000);
    assert.match(
      text,
      /location aws \(granularity location\): led by a \(the senior node reachable from other locations\); other locations are reached through it/,
    );
    assert.match(text, /locations: aws \(2 nodes, leader a\); gcp \(1 node, leader c\)/);
    assert.match(text, /routes over the private network: \d+, MISSING [^\n]*100\.64\.2\.13\/32 via 192\.0\.2\.11/);
    assert.doesNotMatch(text, /MISSING [^\n]*10\.244\.3\.0\/24 via/, 'the route that is in place is not missing');
  });

  it('says clearly when the interface is missing', () => {
    const v = buildStatusView(
      input({ link: { name: 'wg0', exists: false, up: false, mtu: 0, addresses: [] }, device: undefined }),
    );
    assert.equal(v.interface.exists, false);
    assert.match(renderStatusText(v, NOW * 1000), /\ninterface wg0: MISSING - it does not exist on this node/);
    assert.deepEqual(
      v.peers.map((p) => p.onDevice),
      [false, false, false],
    );
  });

  it("without a status file it still lists the device's peers, and says the daemon gave no status", () => {
    const v = buildStatusView(input({ snapshot: undefined, pidAlive: false }));
    assert.equal(v.daemon.found, false);
    assert.equal(v.peers.length, 3);
    assert.ok(v.peers.every((p) => p.kind === 'unknown'));
    assert.match(
      renderStatusText(v, NOW * 1000),
      /^wg-overlay on a: no status from the daemon in \/run\/wg-overlay\/status\.json \(is it running\? systemctl status wg-overlay\)\n/,
    );
  });

  it('a status file whose daemon is gone says so; a failed apply and a down watch are shown', () => {
    const snap = {
      ...snapshot,
      lastApply: { ok: false, error: 'wg set wg0 ...: exit 1', at: NOW * 1000 - 2000, durationMs: 3, changes: 0 },
      watch: {
        nodes: { state: 'down' as const, since: NOW * 1000 - 90_000, error: 'HTTP 503' },
        peers: { state: 'absent' as const, since: 0 },
      },
    };
    const text = renderStatusText(buildStatusView(input({ snapshot: snap, pidAlive: false })), NOW * 1000);
    assert.match(
      text,
      /daemon NOT running \(pid 4242 is gone; status from 1s ago\); LAST APPLY FAILED 2s ago: wg set wg0 \.\.\.: exit 1/,
    );
    assert.match(text, /API: nodes DOWN for 1m30s \(HTTP 503\); peers: the Peer CRD is not installed/);
  });

  it('a run going longer than the health threshold is shown as STUCK, with what to look at; a short one is not', () => {
    const busy = { ...snapshot, busySince: NOW * 1000 - 400_000 };
    const stuck = buildStatusView(input({ snapshot: busy, pidAlive: true, stuckAfterMs: 300_000 }));
    assert.match(
      stuck.daemon.stuck ?? '',
      /^a reconcile run has been going for 6m40s \(threshold 5m\): it waits for a command or a D-Bus call that does not answer/,
    );
    assert.match(renderStatusText(stuck, NOW * 1000), /\n {2}STUCK: a reconcile run has been going for 6m40s/);
    assert.equal(
      buildStatusView(
        input({ snapshot: { ...snapshot, busySince: NOW * 1000 - 1_000 }, pidAlive: true, stuckAfterMs: 300_000 }),
      ).daemon.stuck,
      null,
    );
    assert.equal(
      buildStatusView(input({ snapshot: busy, pidAlive: false, stuckAfterMs: 300_000 })).daemon.stuck,
      null,
      'a dead daemon is not stuck',
    );
  });

  const bytes: Array<[number, string]> = [
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1_500_000, '1.4 MiB'],
    [5 * 1024 ** 3, '5.0 GiB'],
  ];
  for (const [n, want] of bytes) it(`formatBytes(${n}) = ${want}`, () => assert.equal(formatBytes(n), want));
});

describe('unit: untrusted text never reaches a terminal raw', () => {
  // An OSC 52 clipboard write, a CSI sequence (8-bit) and a bidi override, as a hostile annotation could carry.
  const evil = '203.0.113.9:51820\u001b]52;c;cm0gLXJmIH4=\u0007\u009b2J\u202e';
  const nodes = [
    meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] }),
    meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1], endpoint: evil }),
  ];
  // eslint-disable-next-line no-control-regex -- the characters a terminal must never see raw
  const raw = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/;

  it('status (text and --json), the status file and graph escape it', async () => {
    const desired = computeDesired({ name: 'a', publicKey: KEYS[0] }, nodes, SETTINGS);
    assert.ok(
      desired.skipped.some((s) => s.name === 'b' && s.message.includes('\\u001b]52')),
      JSON.stringify(desired.skipped),
    );
    const snap = buildSnapshot({
      node: 'a',
      iface: 'wg0',
      startedAt: 0,
      desired,
      waiting: undefined,
      lastReport: undefined,
      lastSuccessAt: undefined,
      watch: { nodes: { state: 'up', since: 0 }, peers: { state: 'up', since: 0 } },
      now: 1,
      pid: 1,
    });
    // Even a message that somehow carried the raw characters is escaped on the way out.
    snap.warnings.push(`raw ${evil}`);
    const {
      buildStatusView: build,
      renderStatusText: render,
      safeStrings,
    } = await import('../../../service/src/cli/status.js');
    const view = build({
      node: 'a',
      iface: 'wg0',
      link: { name: 'wg0', exists: true, up: true, mtu: 1420, addresses: [] },
      device: undefined,
      routes: [],
      snapshot: snap,
      snapshotError: undefined,
      statusFile: '/run/wg-overlay/status.json',
      pidAlive: true,
      now: 1,
    });
    const text = render(view, 1);
    assert.doesNotMatch(text, raw);
    assert.match(text, /\\u001b\]52;c;/);
    assert.doesNotMatch(JSON.stringify(view, safeStrings, 2), raw);
    const dot = renderGraph(decideMembership(nodes, [], SETTINGS), {
      self: undefined,
      handshakes: undefined,
      now: 0,
      staleAfterSeconds: 180,
    });
    assert.doesNotMatch(dot, raw);
  });
});

describe('unit: status view: IP forwarding', () => {
  it('warns when this host does not forward IPv4', async () => {
    const { buildStatusView } = await import('../../../service/src/cli/status.js');
    const base = {
      node: 'n',
      iface: 'wg0',
      link: { name: 'wg0', exists: true, up: true, mtu: 1420, addresses: [] },
      device: undefined,
      routes: [],
      snapshot: undefined,
      snapshotError: undefined,
      statusFile: '/run/wg-overlay/status.json',
      pidAlive: false,
      now: Date.now(),
    };
    const off = buildStatusView({ ...base, ipForwarding: false });
    const on = buildStatusView({ ...base, ipForwarding: true });
    if (!off.warnings.some((w) => /IPv4 forwarding is off/.test(w)))
      throw new Error(`no forwarding warning: ${JSON.stringify(off.warnings)}`);
    if (on.warnings.some((w) => /forwarding/.test(w))) throw new Error('warned although forwarding is on');
  });
});
