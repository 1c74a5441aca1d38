/**
 * The plan of an external Peer (what `showconf peer` prints and `connect` applies), table-driven:
 * a peer per node with its overlay addresses and PodCIDRs (full mesh and `cross`), a peer per
 * location leader carrying the whole location (`location`), the extra ranges on exactly one, the
 * host's guard and failover's endpoint choice applied, and the reasons when there is no plan.
 */
import assert from 'node:assert/strict';
import { KILO_LOCATION } from '../../../../service/src/mesh/annotations.js';
import { planExternalPeer, type ExternalPlan } from '../../../../service/src/mesh/desired/external.js';
import { hostGuard } from '../../../../service/src/mesh/desired/guard.js';
import type { TopologySettings } from '../../../../service/src/mesh/desired/topology.js';
import { decideMembership } from '../../../../service/src/mesh/membership/membership.js';
import type { ExternalPeer, MembershipSettings, MeshNode } from '../../../../service/src/mesh/types.js';
import { KEYS, meshNode } from '../../../support/fakes/fixtures.js';

const SETTINGS: MembershipSettings = { overlayCidr: '100.64.0.0/10', listenPort: 51820 };
const LOCATED: MembershipSettings = { ...SETTINGS, claimLocationRanges: true };
const TOPOLOGY: TopologySettings = {
  granularity: 'location',
  locationLabel: 'topology.kubernetes.io/region',
  reachable: ['203.0.113.0/24'],
  localRoutes: true,
};

/** Node `i` (created i minutes after the epoch), in a location when one is given. */
function node(i: number, o: { location?: string; external?: string } = {}): MeshNode {
  return meshNode(`n${i}`, {
    ip: `10.1.${o.location === 'west' ? 2 : 1}.${i}`,
    ...(o.external ? { external: o.external, endpoint: `${o.external}:51820` } : {}),
    created: i,
    pods: [`10.244.${i}.0/24`],
    key: KEYS[i],
    address: `100.64.0.${i}`,
    annotations: o.location ? { [KILO_LOCATION]: o.location } : {},
  });
}

const LAPTOP: ExternalPeer = {
  name: 'laptop',
  createdAt: Date.UTC(2027, 0, 1),
  allowedIPs: ['10.255.3.7/32'],
  publicKey: KEYS[5],
  presharedKey: undefined,
  persistentKeepalive: 25,
  endpoint: undefined,
};

/** The plan of the laptop; fails the test when there is none. */
function plan(nodes: MeshNode[], o: Partial<Parameters<typeof planExternalPeer>[0]> = {}, s = SETTINGS): ExternalPlan {
  const p = planExternalPeer({ membership: decideMembership(nodes, [LAPTOP], s), name: 'laptop', iface: 'wgo0', ...o });
  assert.ok(!('problem' in p), 'problem' in p ? p.message : '');
  return p;
}

const summary = (p: ExternalPlan): string[] =>
  p.peers.map((x) => `${x.name} ${x.endpoint} ${x.allowedIPs.join(',')} keepalive ${x.persistentKeepalive}`);

describe('unit: the plan of an external Peer (showconf peer, connect)', () => {
  const full = [node(1), node(2), node(3)];

  it('full mesh: a peer per node with its overlay address and PodCIDRs, a route per range; extra ranges on the oldest', () => {
    const p = plan(full, { extra: ['10.96.0.0/12'], keepalive: 10 });
    assert.deepEqual(summary(p), [
      'n1 10.1.1.1:51820 10.244.1.0/24,100.64.0.1/32,10.96.0.0/12 keepalive 10',
      'n2 10.1.1.2:51820 10.244.2.0/24,100.64.0.2/32 keepalive 10',
      'n3 10.1.1.3:51820 10.244.3.0/24,100.64.0.3/32 keepalive 10',
    ]);
    assert.equal(p.via, 'n1');
    assert.equal(p.routes.length, 7);
    assert.deepEqual(p.routes[2], { dst: '10.96.0.0/12', dev: 'wgo0', via: 'n1', what: 'extra range 10.96.0.0/12' });
    assert.deepEqual(p.routes[3], {
      dst: '10.244.2.0/24',
      dev: 'wgo0',
      via: 'n2',
      what: 'PodCIDR 10.244.2.0/24 of n2',
    });
    assert.equal(plan(full, { extra: ['10.96.0.0/12'], via: 'n3' }).via, 'n3');
    assert.equal(plan(full).peers[0]!.persistentKeepalive, 25, "the Peer's own keepalive by default");
  });

  it("the host's guard holds back what it must not route (with a warning); failover's endpoint is used", () => {
    const p = plan(full, {
      guard: hostGuard({ onLink: ['10.244.2.0/23'], apiAddresses: ['100.64.0.3'] }),
      choice: { chosen: new Map([['n1', '198.51.100.1:51820']]), changed: new Set(['n1']) },
    });
    assert.deepEqual(summary(p), [
      'n1 198.51.100.1:51820 10.244.1.0/24,100.64.0.1/32 keepalive 25',
      'n2 10.1.1.2:51820 100.64.0.2/32 keepalive 25',
      'n3 10.1.1.3:51820  keepalive 25',
    ]);
    assert.deepEqual(p.warnings, [
      "PodCIDR 10.244.2.0/24 of n2 (through n2) overlaps this host's on-link subnet 10.244.2.0/23: not routed from here",
      "PodCIDR 10.244.3.0/24 of n3 (through n3) overlaps this host's on-link subnet 10.244.2.0/23: not routed from here",
      "overlay address 100.64.0.3/32 of n3 (through n3) overlaps the API server's address 100.64.0.3 (as this host reaches it): not routed from here",
    ]);
    assert.ok(!p.routes.some((r) => r.dst === '10.244.2.0/24' || r.dst === '100.64.0.3/32'));
  });

  it("`location`: a peer per leader carrying its whole location (pods, overlay addresses, InternalIPs), never a leader's endpoint", () => {
    const nodes = [
      node(1, { location: 'east', external: '203.0.113.1' }),
      node(2, { location: 'east' }),
      node(3, { location: 'west', external: '203.0.113.3' }),
      node(4, { location: 'west' }),
    ];
    const topology = { settings: TOPOLOGY, nodes: new Map(nodes.map((n) => [n.name, n])) };
    const p = plan(nodes, { topology, extra: ['10.96.0.0/12'], via: 'n4' }, LOCATED);
    assert.deepEqual(summary(p), [
      'n1 203.0.113.1:51820 10.1.1.1/32,10.1.1.2/32,10.244.1.0/24,10.244.2.0/24,100.64.0.1/32,100.64.0.2/32 keepalive 25',
      'n3 203.0.113.3:51820 10.1.2.3/32,10.1.2.4/32,10.244.3.0/24,10.244.4.0/24,100.64.0.3/32,100.64.0.4/32,10.96.0.0/12 keepalive 25',
    ]);
    assert.deepEqual(
      p.peers.map((x) => x.location),
      ['east', 'west'],
    );
    assert.equal(p.via, 'n3', "the extra ranges go to the leader of n4's location");
    assert.deepEqual(
      p.locations?.map((l) => [l.name, l.leader, l.members.join(',')]),
      [
        ['east', 'n1', 'n1,n2'],
        ['west', 'n3', 'n3,n4'],
      ],
    );
    const r = p.routes.find((x) => x.dst === '10.244.2.0/24')!;
    assert.deepEqual(r, {
      dst: '10.244.2.0/24',
      dev: 'wgo0',
      via: 'n1',
      what: 'PodCIDR 10.244.2.0/24 of n2 (location east, led by n1)',
    });
    // With `cross` every node adds the Peer: a peer per node, as in a full mesh.
    const cross = plan(nodes, { topology: { ...topology, settings: { ...TOPOLOGY, granularity: 'cross' } } }, SETTINGS);
    assert.deepEqual(
      cross.peers.map((x) => x.name),
      ['n1', 'n2', 'n3', 'n4'],
    );
  });

  const problems: Array<[string, MeshNode[], ExternalPeer[], Partial<Parameters<typeof planExternalPeer>[0]>, RegExp]> =
    [
      [
        'skipped: its address is an older claim',
        full,
        [{ ...LAPTOP, allowedIPs: ['10.244.1.9/32'] }],
        {},
        /^Peer laptop is skipped by every node: allowedIPs 10\.244\.1\.9\/32 overlaps 10\.244\.1\.0\/24 of older Node n1$/,
      ],
      ['missing', full, [], {}, /^Peer laptop does not exist$/],
      ['no node in the mesh', [], [LAPTOP], {}, /^no Node is in the mesh yet$/],
      [
        '--via an unknown node',
        full,
        [LAPTOP],
        { via: 'z' },
        /^--via z: no such Node in the mesh \(nodes: n1, n2, n3\)$/,
      ],
    ];
  for (const [what, nodes, peers, o, message] of problems) {
    it(`no plan: ${what}`, () => {
      const p = planExternalPeer({
        membership: decideMembership(nodes, peers, SETTINGS),
        name: 'laptop',
        iface: 'wgo0',
        ...o,
      });
      assert.ok('problem' in p);
      assert.match(p.message, message);
    });
  }
});
