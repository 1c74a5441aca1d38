/**
 * Topology, table-driven: where a Node lands (Kilo's location annotation, the label, or a location
 * of its own), who leads (a Node carrying only Kilo's annotations leads exactly where Kilo's
 * `findLeader` would put it; the first in rank order the Leases show alive leads), and the peers
 * and routes of a leader, a member, and a node with `cross` granularity.
 */
import assert from 'node:assert/strict';
import {
  KILO_ALLOWED_LOCATION_IPS,
  KILO_FORCE_ENDPOINT,
  KILO_LEADER,
  KILO_LOCATION,
  KILO_PERSISTENT_KEEPALIVE,
} from '../../../../service/src/mesh/annotations.js';
import { desiredFor, type TopologyInput } from '../../../../service/src/mesh/desired/desired.js';
import { decideMembership } from '../../../../service/src/mesh/membership/membership.js';
import {
  decideTopology,
  isReachable,
  locationOf,
  place,
  type Placed,
  type TopologySettings,
} from '../../../../service/src/mesh/desired/topology.js';
import type { Liveness } from '../../../../service/src/mesh/observations/leadership.js';
import type { DesiredState, MeshNode } from '../../../../service/src/mesh/types.js';
import { parseIp } from '../../../../service/src/net/ip.js';
import { KEYS, MESH_SETTINGS, meshNode } from '../../../support/fakes/fixtures.js';

const LABEL = 'topology.kubernetes.io/region';
/** Mesh settings of location granularity: Nodes claim their addresses and allowed-location-ips. */
const LOCATED = { ...MESH_SETTINGS, claimLocationRanges: true };
const SETTINGS: TopologySettings = {
  granularity: 'location',
  locationLabel: LABEL,
  reachable: 'public',
  localRoutes: true,
};

/** Kilo 0.7's choice of a leader (pkg/mesh/topology.go findLeader), over nodes sorted by name. */
function kiloLeader(nodes: Array<{ name: string; leader: boolean; endpointIp: string }>): string {
  const sorted = [...nodes].sort((a, b) => (a.name < b.name ? -1 : 1));
  const isPublic = (ip: string): boolean => isReachable(parseIp(ip)!, 'public');
  const annotatedPublic = sorted.find((n) => n.leader && isPublic(n.endpointIp));
  if (annotatedPublic) return annotatedPublic.name;
  const annotated = sorted.find((n) => n.leader);
  if (annotated) return annotated.name;
  return (sorted.find((n) => isPublic(n.endpointIp)) ?? sorted[0]!).name;
}

/** A Node in a location with Kilo annotations only (besides wg-overlay's key and address). */
function kiloNode(i: number, o: { location?: string; label?: string; leader?: boolean; force?: string }): MeshNode {
  const annotations: Record<string, string> = {};
  if (o.location) annotations[KILO_LOCATION] = o.location;
  if (o.leader) annotations[KILO_LEADER] = 'true';
  if (o.force) annotations[KILO_FORCE_ENDPOINT] = o.force;
  const n = meshNode(`n${i}`, {
    ip: `10.1.0.${i}`,
    created: i,
    pods: [`10.244.${i}.0/24`],
    key: KEYS[i],
    address: `100.64.0.${i}`,
    annotations,
  });
  return o.label ? { ...n, labels: { [LABEL]: o.label } } : n;
}

/** Liveness of one location from lists of names. */
function liveness(location: string, alive: string[], lapsed: string[] = []): Liveness {
  return { alive: new Map([[location, new Set(alive)]]), lapsed: new Map([[location, new Set(lapsed)]]) };
}

/** Places every admitted Node of `nodes` and decides the topology. */
function topologyOf(nodes: MeshNode[], live?: Liveness) {
  const membership = decideMembership(nodes, [], LOCATED);
  const placed: Placed[] = membership.members.map((m) =>
    place(
      m,
      nodes.find((n) => n.name === m.name)!,
      SETTINGS,
    ),
  );
  const topology = decideTopology({ placed, granularity: 'location', liveness: live });
  return { topology, placed, skipped: membership.skipped };
}

describe('unit: topology — locations and leaders', () => {
  it("a location comes from Kilo's annotation, else the label, else the Node is on its own", () => {
    assert.deepEqual(locationOf(kiloNode(1, { location: 'aws', label: 'eu-west-1' }), LABEL), {
      id: 'location:aws',
      name: 'aws',
      source: 'annotation',
    });
    assert.deepEqual(locationOf(kiloNode(1, { label: 'eu-west-1' }), LABEL), {
      id: 'location:eu-west-1',
      name: 'eu-west-1',
      source: 'label',
    });
    assert.deepEqual(locationOf(kiloNode(1, {}), LABEL), { id: 'node:n1', name: 'n1', source: 'node' });
    assert.equal(
      locationOf(kiloNode(1, { location: 'x'.repeat(64), label: 'gcp' }), LABEL).name,
      'gcp',
      'an over-long annotation is not a location',
    );
  });

  const PUBLIC = '203.0.113.';
  const rows: Array<{ what: string; nodes: Array<{ leader?: boolean; public?: boolean }> }> = [
    { what: 'one annotated, reachable node', nodes: [{}, { leader: true, public: true }, { public: true }] },
    {
      what: 'an annotated node that is not reachable beats a reachable one',
      nodes: [{ public: true }, { leader: true }, {}],
    },
    { what: 'two annotated: the reachable one', nodes: [{ leader: true }, { leader: true, public: true }] },
    { what: 'no annotation: the first reachable', nodes: [{}, { public: true }, { public: true }] },
    { what: 'nothing reachable, nothing annotated: the first', nodes: [{}, {}, {}] },
    {
      what: 'two annotated, both reachable: the first',
      nodes: [{}, { leader: true, public: true }, { leader: true, public: true }],
    },
  ];
  for (const row of rows) {
    it(`leads where Kilo would: ${row.what}`, () => {
      const nodes = row.nodes.map((o, k) =>
        kiloNode(k + 1, {
          location: 'aws',
          leader: o.leader,
          ...(o.public ? { force: `${PUBLIC}${k + 1}:51820` } : {}),
        }),
      );
      const { topology } = topologyOf(nodes);
      assert.equal(topology.locations.length, 1);
      const kilo = kiloLeader(
        row.nodes.map((o, k) => ({
          name: `n${k + 1}`,
          leader: !!o.leader,
          endpointIp: o.public ? `${PUBLIC}${k + 1}` : `10.1.0.${k + 1}`,
        })),
      );
      assert.equal(topology.locations[0]!.leader, kilo);
    });
  }

  it('force-endpoint is what other nodes dial, and it makes a node reachable', () => {
    const { placed } = topologyOf([kiloNode(1, { location: 'aws', force: '203.0.113.9:51821' })]);
    assert.equal(placed[0]!.endpoint, '203.0.113.9:51821');
    assert.equal(placed[0]!.reachable, true);
  });

  // aws: n1 and n2 reachable (same rank, n1 senior), n3 not reachable; gcp: n4.
  const ranked = [
    kiloNode(1, { location: 'aws', force: '203.0.113.1:51820' }),
    kiloNode(2, { location: 'aws', force: '203.0.113.2:51820' }),
    kiloNode(3, { location: 'aws' }),
    kiloNode(4, { location: 'gcp' }),
  ];
  const leaderRows: Array<{ what: string; alive: string[]; lapsed?: string[]; leader: string; why: RegExp }> = [
    {
      what: 'no Lease read: by rank',
      alive: [],
      leader: 'n1',
      why: /^the senior node reachable from other locations$/,
    },
    { what: 'the first in rank order alive', alive: ['n1'], leader: 'n1', why: /, alive$/ },
    {
      what: 'a junior of the same rank that wrote itself into the Lease: the senior alive still leads',
      alive: ['n1', 'n2'],
      leader: 'n1',
      why: /, alive$/,
    },
    {
      what: 'a member of a lower rank alive: the senior alive still leads',
      alive: ['n3', 'n1'],
      leader: 'n1',
      why: /, alive$/,
    },
    {
      what: 'only a junior alive (the senior never wrote): it leads until the senior writes',
      alive: ['n2'],
      leader: 'n2',
      why: /alive \(n1, ranked above, not alive\)/,
    },
    {
      what: 'the leader stopped (lapsed), nobody else alive: the next that did not stop',
      alive: [],
      lapsed: ['n1'],
      leader: 'n2',
      why: /after n1 stopped renewing/,
    },
    {
      what: 'everyone stopped: by rank',
      alive: [],
      lapsed: ['n1', 'n2', 'n3'],
      leader: 'n1',
      why: /after n1, n2, n3 stopped/,
    },
    {
      what: 'a writer from another location is not a member: ignored',
      alive: ['n4'],
      leader: 'n1',
      why: /^the senior node/,
    },
  ];
  for (const row of leaderRows) {
    it(`leaders by rank and liveness: ${row.what}`, () => {
      const aws = topologyOf(ranked, liveness('location:aws', row.alive, row.lapsed)).topology.locations[0]!;
      assert.equal(aws.leader, row.leader);
      assert.match(aws.why, row.why);
      assert.deepEqual(aws.order, ['n1', 'n2', 'n3']);
    });
  }

  it("with kilo_topology = false, Kilo's annotations choose nothing; the admin-only labels do", () => {
    const strict: TopologySettings = {
      ...SETTINGS,
      kiloAnnotations: false,
      leaderLabel: 'node-restriction.kubernetes.io/lead',
    };
    const hostile = kiloNode(1, { location: 'aws', leader: true, label: 'gcp' });
    assert.deepEqual(locationOf(hostile, LABEL, false), { id: 'location:gcp', name: 'gcp', source: 'label' });
    const chosen = {
      ...kiloNode(2, { label: 'gcp' }),
      labels: { [LABEL]: 'gcp', 'node-restriction.kubernetes.io/lead': '' },
    };
    const membership = decideMembership([hostile, chosen], [], { ...LOCATED, kiloAnnotations: false });
    const placed = membership.members.map((m) =>
      place(
        m,
        [hostile, chosen].find((n) => n.name === m.name)!,
        strict,
      ),
    );
    assert.deepEqual(
      placed.map((p) => [p.name, p.location.name, p.wantsToLead]),
      [
        ['n1', 'gcp', false],
        ['n2', 'gcp', true],
      ],
    );
    assert.equal(decideTopology({ placed, granularity: 'location' }).locations[0]!.leader, 'n2');
  });

  it("Kilo's leader annotation outranks reachability alone, whoever is alive", () => {
    const annotated = [
      kiloNode(1, { location: 'aws', force: '203.0.113.1:51820' }),
      kiloNode(2, { location: 'aws', leader: true }),
    ];
    assert.equal(topologyOf(annotated, liveness('location:aws', ['n1', 'n2'])).topology.locations[0]!.leader, 'n2');
    assert.equal(topologyOf(annotated, liveness('location:aws', ['n1'])).topology.locations[0]!.leader, 'n1');
  });

  it("allowed-location-ips pass the range rules: too wide, reserved, public or another node's address is refused", () => {
    const a = kiloNode(1, { location: 'aws' });
    a.annotations[KILO_ALLOWED_LOCATION_IPS] =
      '192.168.50.0/24, 0.0.0.0/1, 169.254.169.254/32, 10.1.0.2/32, 8.8.8.0/24, 64:ff9b::/96, junk';
    const { placed, skipped } = topologyOf([a, kiloNode(2, { location: 'gcp' })]);
    assert.deepEqual(placed.find((p) => p.name === 'n1')!.locationRanges, [
      { dst: '10.1.0.1/32', what: 'InternalIP' },
      { dst: '192.168.50.0/24', what: `${KILO_ALLOWED_LOCATION_IPS} entry` },
    ]);
    const refused = skipped.filter((s) => s.name === 'n1').map((s) => s.message);
    assert.equal(refused.length, 6, refused.join('\n'));
    assert.match(refused.join('\n'), /0\.0\.0\.0\/1 is wider than \/16/);
    assert.match(refused.join('\n'), /169\.254\.169\.254\/32 overlaps link-local addresses/);
    assert.match(refused.join('\n'), /10\.1\.0\.2\/32 overlaps 10\.1\.0\.2\/32 of Node n2, claimed first/);
    assert.match(refused.join('\n'), /8\.8\.8\.0\/24 is outside/);
    assert.match(refused.join('\n'), /64:ff9b::\/96 overlaps the NAT64 prefix/);
    assert.match(refused.join('\n'), /"junk" is not a CIDR/);
  });
});

describe('unit: topology — what each node applies', () => {
  // Location aws: n1 (leader, reachable), n2. Location gcp: n3 (leader, reachable), n4.
  const nodes = [
    kiloNode(1, { location: 'aws', force: '203.0.113.1:51820' }),
    kiloNode(2, { location: 'aws' }),
    kiloNode(3, { location: 'gcp', force: '203.0.113.3:51820' }),
    kiloNode(4, { location: 'gcp' }),
  ];
  nodes[3]!.annotations[KILO_ALLOWED_LOCATION_IPS] = '192.168.60.0/24';
  const desired = (self: number, settings: Partial<TopologySettings> = {}): DesiredState => {
    const me = { name: `n${self}`, publicKey: KEYS[self]! };
    const membership = decideMembership(nodes, [], LOCATED, me);
    const topology: TopologyInput = {
      settings: { ...SETTINGS, ...settings },
      nodes: new Map(nodes.map((n) => [n.name, n])),
    };
    return desiredFor({ self: me, selfNode: nodes[self - 1], membership, settings: MESH_SETTINGS, topology });
  };
  const routes = (d: DesiredState): string[] =>
    d.routes.map((r) => `${r.dst} ${r.gateway ? `via ${r.gateway}` : `dev ${r.dev}`}`).sort();

  it('a leader has one peer per other location, carrying all of its members, and routes them into the tunnel', () => {
    const d = desired(1);
    assert.deepEqual(
      d.topology && { location: d.topology.location, leader: d.topology.leader, leads: d.topology.leads },
      { location: 'aws', leader: 'n1', leads: true },
    );
    assert.deepEqual(
      d.peers.map((p) => [p.name, p.location, p.endpoint, p.allowedIPs]),
      [
        [
          'n3',
          'gcp',
          '203.0.113.3:51820',
          [
            '10.1.0.3/32',
            '10.1.0.4/32',
            '10.244.3.0/24',
            '10.244.4.0/24',
            '100.64.0.3/32',
            '100.64.0.4/32',
            '192.168.60.0/24',
          ],
        ],
      ],
    );
    assert.deepEqual(routes(d), [
      '10.1.0.3/32 dev wg0',
      '10.1.0.4/32 dev wg0',
      '10.244.2.0/24 via 10.1.0.2',
      '10.244.3.0/24 dev wg0',
      '10.244.4.0/24 dev wg0',
      '100.64.0.2/32 via 10.1.0.2',
      '192.168.60.0/24 dev wg0',
    ]);
  });

  it("a member has no peers and routes other locations through its leader's private address", () => {
    const d = desired(2);
    assert.equal(
      d.routes.find((r) => r.dst === '10.1.0.4/32')?.what,
      'InternalIP 10.1.0.4/32 of n4 (location gcp, led by n3)',
    );
    assert.equal(d.topology?.leads, false);
    assert.deepEqual(d.peers, []);
    assert.deepEqual(routes(d), [
      '10.1.0.3/32 via 10.1.0.1',
      '10.1.0.4/32 via 10.1.0.1',
      '10.244.1.0/24 via 10.1.0.1',
      '10.244.3.0/24 via 10.1.0.1',
      '10.244.4.0/24 via 10.1.0.1',
      '100.64.0.1/32 via 10.1.0.1',
      '100.64.0.3/32 via 10.1.0.1',
      '100.64.0.4/32 via 10.1.0.1',
      '192.168.60.0/24 via 10.1.0.1',
    ]);
  });

  it("local_routes = false leaves the pods of the own location to the cluster's network (overlay addresses still routed)", () => {
    assert.deepEqual(
      routes(desired(2, { localRoutes: false })).filter((r) => r.startsWith('10.244.1.')),
      [],
    );
    assert.ok(routes(desired(2, { localRoutes: false })).includes('100.64.0.1/32 via 10.1.0.1'));
  });

  it('cross: a tunnel to every node of another location, none inside the own location', () => {
    const d = desired(2, { granularity: 'cross' });
    assert.deepEqual(
      d.peers.map((p) => p.name),
      ['n3', 'n4'],
    );
    assert.deepEqual(
      d.peers.map((p) => p.allowedIPs),
      [
        ['10.244.3.0/24', '100.64.0.3/32'],
        ['10.244.4.0/24', '100.64.0.4/32'],
      ],
    );
    assert.deepEqual(routes(d), [
      '10.244.1.0/24 via 10.1.0.1',
      '10.244.3.0/24 dev wg0',
      '10.244.4.0/24 dev wg0',
      '100.64.0.1/32 via 10.1.0.1',
    ]);
  });

  it('overlay addresses stay what they are whatever the granularity', () => {
    for (const g of ['full', 'location', 'cross'] as const)
      assert.equal(desired(4, { granularity: g }).iface.address, '100.64.0.4/10', g);
  });

  it("Kilo's persistent-keepalive on this node's Node is its keepalive towards its peers", () => {
    nodes[0]!.annotations[KILO_PERSISTENT_KEEPALIVE] = '25';
    try {
      assert.deepEqual(
        desired(1).peers.map((p) => p.persistentKeepalive),
        [25],
      );
    } finally {
      delete nodes[0]!.annotations[KILO_PERSISTENT_KEEPALIVE];
    }
  });
});
