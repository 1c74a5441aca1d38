/**
 * The fail-closed rule set, table-driven, one row per mode: which ranges may leave only through
 * the tunnel (and why), which private next hops they may take, what is exempt, in full mesh, as a
 * location leader and member, with cross granularity, create_interface = false, local_routes =
 * false, dual-stack, after a Node is deleted or skipped, and with a Node that never published a key.
 */
import assert from 'node:assert/strict';
import { KILO_LOCATION } from '../../../../service/src/mesh/annotations.js';
import { ClusterView } from '../../../../service/src/mesh/cluster-view.js';
import type { DesiredFirewall } from '../../../../service/src/mesh/desired/firewall.js';
import { planNode } from '../../../../service/src/mesh/desired/plan.js';
import type { TopologySettings } from '../../../../service/src/mesh/desired/topology.js';
import type { ExternalPeer, MeshNode, MeshSettings } from '../../../../service/src/mesh/types.js';
import { KEYS, MESH_SETTINGS, meshNode } from '../../../support/fakes/fixtures.js';

const west = { [KILO_LOCATION]: 'west' };
const east = { [KILO_LOCATION]: 'east' };
/** Node `name` number `i`: InternalIP 192.0.2.i, PodCIDR 10.244.i.0/24 (and fd00:244:i::/64 when `v6`). */
function node(i: number, o: { v6?: boolean; key?: boolean; annotations?: Record<string, string> } = {}): MeshNode {
  return meshNode(`n${i}`, {
    ip: o.v6 ? [`192.0.2.${i}`, `2001:db8::${i}`] : `192.0.2.${i}`,
    created: i,
    pods: [`10.244.${i}.0/24`, ...(o.v6 ? [`fd00:244:${i}::/64`] : [])],
    ...(o.key === false ? {} : { key: KEYS[i]! }),
    annotations: o.annotations ?? {},
  });
}
const PEER: ExternalPeer = {
  name: 'laptop',
  createdAt: Date.UTC(2026, 0, 1) + 9 * 60_000,
  allowedIPs: ['10.5.0.1/32'],
  publicKey: KEYS[5],
  presharedKey: undefined,
  persistentKeepalive: undefined,
  endpoint: undefined,
};
const FAIL_CLOSED: MeshSettings = {
  ...MESH_SETTINGS,
  failClosed: {},
  localGuard: { apiAddresses: ['203.0.113.10'], onLink: [] },
};
const topo = (granularity: 'location' | 'cross', localRoutes = true): TopologySettings => ({
  granularity,
  locationLabel: 'topology.kubernetes.io/region',
  reachable: 'public',
  localRoutes,
});

interface Row {
  name: string;
  nodes: MeshNode[];
  peers?: ExternalPeer[];
  /** This node (default n1). */
  self?: string;
  settings?: Partial<MeshSettings>;
  topology?: TopologySettings;
  /** Nodes before: the rule set computed from them is the previous one. */
  before?: MeshNode[];
  /** `reason dst owner`, in order. */
  blocked: string[];
  hops?: string[];
  /** `kind dst` of every exemption, in order. */
  exempt: string[];
  endpoints?: string[];
}

const FIXED = ['link-local 169.254.0.0/16', 'api-server 203.0.113.10/32', 'link-local fe80::/10'];
const withOwn = (own: string, ...more: string[]): string[] =>
  [...FIXED, `own-pods ${own}`, ...more].sort((a, b) => cmp(a.split(' ')[1]!, b.split(' ')[1]!));
/** Orders CIDR texts by family, then address (what the rule set's lists are sorted by). */
function cmp(a: string, b: string): number {
  const v6 = (s: string): number => (s.includes(':') ? 1 : 0);
  if (v6(a) !== v6(b)) return v6(a) - v6(b);
  const num = (s: string): bigint =>
    s.includes(':')
      ? BigInt(`0x${expand6(s.split('/')[0]!)}`)
      : s
          .split('/')[0]!
          .split('.')
          .reduce((n, o) => (n << 8n) + BigInt(o), 0n);
  const d = num(a) - num(b);
  return d < 0n ? -1 : d > 0n ? 1 : Number(a.split('/')[1]) - Number(b.split('/')[1]);
}
function expand6(a: string): string {
  const [head, tail = ''] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  return [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((x) => x.padStart(4, '0')).join('');
}

const TABLE: Row[] = [
  {
    name: 'full mesh: other PodCIDRs, the overlay, a Peer; WireGuard endpoints exempt',
    nodes: [node(1), node(2), node(3)],
    peers: [PEER],
    blocked: [
      'carried 10.5.0.1/32 laptop',
      'carried 10.244.2.0/24 n2',
      'carried 10.244.3.0/24 n3',
      'carried 100.64.0.0/10 overlay',
    ],
    exempt: withOwn('10.244.1.0/24'),
    endpoints: ['192.0.2.2:51820', '192.0.2.3:51820'],
  },
  {
    name: 'create_interface = false: the same (the rule names the interface, whoever creates it)',
    nodes: [node(1), node(2)],
    settings: { interfaceName: 'wg7' },
    blocked: ['carried 10.244.2.0/24 n2', 'carried 100.64.0.0/10 overlay'],
    exempt: withOwn('10.244.1.0/24'),
  },
  {
    name: 'dual-stack: both families of PodCIDRs and both overlays',
    nodes: [node(1, { v6: true }), node(2, { v6: true })],
    settings: { overlayCidr6: 'fd64::/48' },
    blocked: [
      'carried 10.244.2.0/24 n2',
      'carried 100.64.0.0/10 overlay',
      'carried fd00:244:2::/64 n2',
      'carried fd64::/48 overlay',
    ],
    exempt: withOwn('10.244.1.0/24', 'own-pods fd00:244:1::/64'),
  },
  {
    name: 'a Node deleted: its range stays blocked (kept), the overlay still covers its address',
    before: [node(1), node(2), node(3)],
    nodes: [node(1), node(2)],
    blocked: ['carried 10.244.2.0/24 n2', 'kept 10.244.3.0/24 n3', 'carried 100.64.0.0/10 overlay'],
    exempt: withOwn('10.244.1.0/24'),
  },
  {
    name: 'a Node skipped (its key removed): kept, not opened',
    before: [node(1), node(2), node(3)],
    nodes: [node(1), node(2), node(3, { key: false })],
    blocked: ['carried 10.244.2.0/24 n2', 'kept 10.244.3.0/24 n3', 'carried 100.64.0.0/10 overlay'],
    exempt: withOwn('10.244.1.0/24'),
  },
  {
    name: "a deleted Node's range taken by a new Node without wg-overlay: released and open",
    before: [node(1), node(2), node(3)],
    nodes: [node(1), node(2), { ...node(4, { key: false }), podCIDRs: ['10.244.3.0/24'] }],
    blocked: ['carried 10.244.2.0/24 n2', 'carried 100.64.0.0/10 overlay'],
    exempt: withOwn('10.244.1.0/24', 'not-in-mesh 10.244.3.0/24'),
  },
  {
    name: 'a Node that never published a key (rollout): its range is open, listed',
    nodes: [node(1), node(2), node(3, { key: false })],
    blocked: ['carried 10.244.2.0/24 n2', 'carried 100.64.0.0/10 overlay'],
    exempt: withOwn('10.244.1.0/24', 'not-in-mesh 10.244.3.0/24'),
  },
  {
    name: 'pod networks named: blocked as a whole, own pods and rollout ranges carved out',
    nodes: [node(1), node(2), node(3, { key: false })],
    settings: { podCidrs: ['10.244.0.0/16'], failClosed: { podNetworks: ['10.244.0.0/16'] } },
    blocked: ['pod-network 10.244.0.0/16 pod-network', 'carried 10.244.2.0/24 n2', 'carried 100.64.0.0/10 overlay'],
    exempt: withOwn('10.244.1.0/24', 'not-in-mesh 10.244.3.0/24'),
  },
  {
    name: 'location leader: other locations through the tunnel, its members over the private network',
    nodes: [node(1, { annotations: west }), node(2, { annotations: west }), node(3, { annotations: east })],
    topology: topo('location'),
    // n3 leads east: its endpoint (InternalIP) is never routed into the tunnel, so it is no range here.
    blocked: ['carried 10.244.2.0/24 n2', 'carried 10.244.3.0/24 n3', 'carried 100.64.0.0/10 overlay'],
    hops: ['192.0.2.2'],
    exempt: withOwn('10.244.1.0/24'),
    endpoints: ['192.0.2.3:51820'],
  },
  {
    name: 'location member: everything through its leader over the private network, no tunnel of its own',
    self: 'n2',
    nodes: [node(1, { annotations: west }), node(2, { annotations: west }), node(3, { annotations: east })],
    topology: topo('location'),
    // The owner of a route through the leader is the leader.
    blocked: ['carried 10.244.1.0/24 n1', 'carried 10.244.3.0/24 n1', 'carried 100.64.0.0/10 overlay'],
    hops: ['192.0.2.1'],
    exempt: withOwn('10.244.2.0/24'),
    endpoints: [],
  },
  {
    name: "location, local_routes = false: members' pods left to the cluster network (open)",
    nodes: [node(1, { annotations: west }), node(2, { annotations: west }), node(3, { annotations: east })],
    topology: topo('location', false),
    settings: { podCidrs: ['10.244.0.0/16'], failClosed: { podNetworks: ['10.244.0.0/16'] } },
    blocked: ['pod-network 10.244.0.0/16 pod-network', 'carried 10.244.3.0/24 n3', 'carried 100.64.0.0/10 overlay'],
    hops: ['192.0.2.2'],
    exempt: withOwn('10.244.1.0/24', 'local-network 10.244.2.0/24'),
  },
  {
    name: 'cross: a tunnel to every node of another location, this location over the private network',
    nodes: [
      node(1, { annotations: west }),
      node(2, { annotations: west }),
      node(3, { annotations: east }),
      node(4, { annotations: east }),
    ],
    topology: topo('cross'),
    blocked: [
      'carried 10.244.2.0/24 n2',
      'carried 10.244.3.0/24 n3',
      'carried 10.244.4.0/24 n4',
      'carried 100.64.0.0/10 overlay',
    ],
    hops: ['192.0.2.2'],
    exempt: withOwn('10.244.1.0/24'),
    endpoints: ['192.0.2.3:51820', '192.0.2.4:51820'],
  },
  {
    name: 'fail_closed = off: nothing',
    nodes: [node(1), node(2)],
    settings: { failClosed: undefined },
    blocked: [],
    exempt: [],
  },
];

/** The rule set of a row's node, from the row's Nodes (and the rule set of `before` as the previous one). */
function ruleSet(row: Row, nodes: MeshNode[], previous?: DesiredFirewall): DesiredFirewall {
  const self = row.self ?? 'n1';
  const selfNode = nodes.find((n) => n.name === self)!;
  const view = ClusterView.of(nodes, row.peers ?? [], {
    name: self,
    publicKey: selfNode.annotations['wg-overlay.io/public-key']!,
  });
  const plan = planNode({
    view,
    self: { name: self, publicKey: KEYS[Number(self.slice(1))]! },
    settings: { ...FAIL_CLOSED, ...row.settings },
    topology: row.topology ? { settings: row.topology } : undefined,
    firewallBefore: previous,
  });
  return plan.desired.firewall!;
}

describe('unit: the fail-closed rule set, mode by mode', () => {
  for (const row of TABLE) {
    it(row.name, () => {
      const previous = row.before ? ruleSet(row, row.before) : undefined;
      const fw = ruleSet(row, row.nodes, previous);
      assert.equal(fw.enabled, row.settings?.failClosed !== undefined || !('failClosed' in (row.settings ?? {})));
      assert.equal(fw.iface, row.settings?.interfaceName ?? 'wg0');
      // (carried ranges come in the order of the routes: compared in address order)
      assert.deepEqual(
        fw.blocked
          .map((b) => `${b.reason} ${b.dst} ${b.owner}`)
          .sort((x, y) => cmp(x.split(' ')[1]!, y.split(' ')[1]!)),
        row.blocked,
      );
      assert.deepEqual(fw.hops, row.hops ?? []);
      assert.deepEqual(
        fw.exempt.map((e) => `${e.kind} ${e.dst}`),
        row.exempt,
      );
      if (row.endpoints) assert.deepEqual(fw.endpoints, row.endpoints);
      // The same input again gives the same rule set (the adapter then runs nothing).
      assert.deepEqual(ruleSet(row, row.nodes, previous), fw);
    });
  }

  it('a kept range goes once another Node in the mesh holds it, and stays kept across any number of steps', () => {
    const row: Row = { name: '', nodes: [], blocked: [], exempt: [] };
    let fw = ruleSet(row, [node(1), node(2), node(3)]);
    for (let i = 0; i < 3; i++) fw = ruleSet(row, [node(1), node(2)], fw);
    assert.deepEqual(
      fw.blocked.filter((b) => b.reason === 'kept').map((b) => `${b.dst} ${b.owner}`),
      ['10.244.3.0/24 n3'],
    );
    fw = ruleSet(row, [node(1), node(2), { ...node(5), podCIDRs: ['10.244.3.0/24'] }], fw);
    assert.deepEqual(
      fw.blocked.map((b) => `${b.reason} ${b.dst} ${b.owner}`).sort((x, y) => cmp(x.split(' ')[1]!, y.split(' ')[1]!)),
      ['carried 10.244.2.0/24 n2', 'carried 10.244.3.0/24 n5', 'carried 100.64.0.0/10 overlay'],
    );
  });

  it('a Node without a key cannot open a range the mesh carries, nor one it kept for another Node', () => {
    const row: Row = { name: '', nodes: [], blocked: [], exempt: [] };
    const before = ruleSet(row, [node(1), node(2), node(3)]);
    const squatter = { ...node(6, { key: false }), podCIDRs: ['10.244.0.0/16'] };
    const fw = ruleSet(row, [node(1), node(2), squatter], before);
    assert.deepEqual(
      fw.blocked.map((b) => `${b.reason} ${b.dst}`).sort((x, y) => cmp(x.split(' ')[1]!, y.split(' ')[1]!)),
      ['carried 10.244.2.0/24', 'kept 10.244.3.0/24', 'carried 100.64.0.0/10'],
    );
    assert.equal(
      fw.exempt.find((e) => e.kind === 'not-in-mesh'),
      undefined,
    );
  });
});
