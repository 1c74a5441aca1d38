/**
 * Trust in every mode, table-driven over the pure core: what a hostile Node (root on a node, with
 * its kubelet's rights over its own Node) or a Peer writer can claim is judged by the same range
 * rules and the same seniority index in location granularity as in a full mesh; an address
 * protects only against younger claims; and the engine reaches the same verdicts one event at a
 * time.
 */
import assert from 'node:assert/strict';
import { KILO_ALLOWED_LOCATION_IPS, KILO_FORCE_ENDPOINT } from '../../../../service/src/mesh/annotations.js';
import { MeshEngine } from '../../../../service/src/mesh/membership/engine.js';
import { decideMembership } from '../../../../service/src/mesh/membership/membership.js';
import type { ExternalPeer, MembershipSettings, MeshNode } from '../../../../service/src/mesh/types.js';
import { KEYS, meshNode } from '../../../support/fakes/fixtures.js';

const SETTINGS: MembershipSettings = {
  overlayCidr: '100.64.0.0/10',
  listenPort: 51820,
  claimLocationRanges: true,
  protectedRanges: ['10.96.0.1/32', '10.20.0.0/24'],
};
// east: a (oldest), b; west: c. The API server is 10.96.0.1 (protected by the admin).
const A = meshNode('a', { ip: '10.1.0.1', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] });
const B = meshNode('b', { ip: '10.1.0.2', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] });
const C = meshNode('c', { ip: '10.2.0.3', created: 3, pods: ['10.244.3.0/24'], key: KEYS[2] });

/** A Node joining last (the youngest) that names what a test gives it. */
function hostile(o: { ips?: string[]; extra?: string; pods?: string[]; created?: number }): MeshNode {
  const n = meshNode('evil', { ip: o.ips ?? ['10.1.0.66'], created: o.created ?? 9, pods: o.pods ?? [], key: KEYS[5] });
  if (o.extra) n.annotations[KILO_ALLOWED_LOCATION_IPS] = o.extra;
  return n;
}

/** Membership by the whole-list rule and by the engine one event at a time: the same verdicts. */
function decide(nodes: MeshNode[], peers: ExternalPeer[] = [], settings = SETTINGS) {
  const whole = decideMembership(nodes, peers, settings);
  const engine = new MeshEngine(settings);
  for (const n of nodes) engine.upsertNode(n);
  engine.setExternalPeers(peers);
  const inc = engine.result();
  const view = (m: typeof whole) => ({ members: m.members, skipped: m.skipped.map((s) => s.message) });
  assert.deepEqual(view(inc), view(whole), 'the engine agrees');
  return whole;
}
const ranges = (m: ReturnType<typeof decide>, name: string) =>
  m.members.find((x) => x.name === name)?.locationRanges?.map((r) => r.dst) ?? [];
const skipsOf = (m: ReturnType<typeof decide>, name: string) =>
  m.skipped.filter((s) => s.name === name).map((s) => s.message);

describe('unit: trust — a hostile location member', () => {
  const rows: Array<{ what: string; evil: Parameters<typeof hostile>[0]; refused: RegExp }> = [
    {
      what: "the API server's address as an InternalIP",
      evil: { ips: ['10.1.0.66', '10.96.0.1'] },
      refused: /InternalIP 10\.96\.0\.1\/32 overlaps 10\.96\.0\.1\/32, which \[overlay\] protected/,
    },
    {
      what: 'the metadata address as an InternalIP',
      evil: { ips: ['10.1.0.66', '169.254.169.254'] },
      refused: /InternalIP 169\.254\.169\.254\/32 overlaps link-local/,
    },
    {
      what: 'the metadata address, IPv4-mapped',
      evil: { ips: ['10.1.0.66', '::ffff:169.254.169.254'] },
      refused: /InternalIP 169\.254\.169\.254\/32 overlaps link-local/,
    },
    {
      what: 'loopback as an InternalIP',
      evil: { ips: ['10.1.0.66', '127.0.0.1'] },
      refused: /InternalIP 127\.0\.0\.1\/32 overlaps loopback/,
    },
    {
      what: "an older neighbour's address as an InternalIP",
      evil: { ips: ['10.1.0.66', '10.1.0.2'] },
      refused: /InternalIP 10\.1\.0\.2\/32 contains 10\.1\.0\.2, the InternalIP of Node b, an older claim/,
    },
    {
      what: "a neighbour's PodCIDR in allowed-location-ips",
      evil: { extra: '10.244.2.0/24' },
      refused: /entry 10\.244\.2\.0\/24 overlaps 10\.244\.2\.0\/24 of Node b, claimed first/,
    },
    {
      what: "a neighbour's address in allowed-location-ips",
      evil: { extra: '10.1.0.2/32' },
      refused: /entry 10\.1\.0\.2\/32 contains 10\.1\.0\.2, the InternalIP of Node b/,
    },
    {
      what: 'a public range in allowed-location-ips',
      evil: { extra: '8.8.8.0/24' },
      refused: /entry 8\.8\.8\.0\/24 is outside the ranges external routes may take/,
    },
    {
      what: 'the NAT64 prefix in allowed-location-ips',
      evil: { extra: '64:ff9b::/96' },
      refused: /entry 64:ff9b::\/96 overlaps the NAT64 prefix/,
    },
    {
      what: 'a protected database subnet in allowed-location-ips',
      evil: { extra: '10.20.0.0/24' },
      refused: /entry 10\.20\.0\.0\/24 overlaps 10\.20\.0\.0\/24, which \[overlay\] protected/,
    },
  ];
  for (const row of rows) {
    it(`steers nothing with ${row.what}, and cuts nobody off`, () => {
      const m = decide([A, B, C, hostile(row.evil)]);
      assert.match(skipsOf(m, 'evil').join('\n'), row.refused);
      assert.deepEqual(ranges(m, 'a'), ['10.1.0.1/32']);
      assert.deepEqual(ranges(m, 'b'), ['10.1.0.2/32']);
      assert.deepEqual(ranges(m, 'c'), ['10.2.0.3/32']);
      assert.deepEqual(m.members.find((x) => x.name === 'b')!.podCIDRs, ['10.244.2.0/24']);
      assert.ok(
        ranges(m, 'evil').every((r) => r === '10.1.0.66/32'),
        ranges(m, 'evil').join(),
      );
    });
  }

  it('even an older hostile member cannot take a younger neighbour’s address through its annotation', () => {
    const m = decide([A, B, C, hostile({ created: 0, extra: '10.1.0.2/32, 10.244.2.0/24' })]);
    assert.deepEqual(ranges(m, 'b'), ['10.1.0.2/32'], 'the kubelet-reported address comes first');
    assert.deepEqual(m.members.find((x) => x.name === 'b')!.podCIDRs, ['10.244.2.0/24'], 'pods come before locations');
  });

  it('its own addresses and a private extra range are routed to it', () => {
    const m = decide([A, B, C, hostile({ extra: '192.168.60.0/24' })]);
    assert.deepEqual(ranges(m, 'evil'), ['10.1.0.66/32', '192.168.60.0/24']);
  });

  it('with kilo_topology = false, allowed-location-ips are not read at all', () => {
    const m = decide([A, B, C, hostile({ extra: '192.168.60.0/24' })], [], { ...SETTINGS, kiloAnnotations: false });
    assert.deepEqual(ranges(m, 'evil'), ['10.1.0.66/32']);
  });

  it('in a full mesh, addresses and allowed-location-ips are not claims at all', () => {
    const m = decide([A, B, hostile({ extra: '192.168.60.0/24' })], [], { ...SETTINGS, claimLocationRanges: false });
    assert.equal(m.members.find((x) => x.name === 'evil')!.locationRanges, undefined);
  });
});

describe('unit: trust — protection by seniority', () => {
  it('a young Node listing an address inside an older Node’s PodCIDR drops nothing', () => {
    const young = meshNode('young', {
      ip: ['10.1.0.77', '10.244.1.9'],
      created: 8,
      pods: ['10.244.7.0/24'],
      key: KEYS[3],
    });
    const m = decide([A, B, young], [], { ...SETTINGS, claimLocationRanges: false });
    assert.deepEqual(m.members.find((x) => x.name === 'a')!.podCIDRs, ['10.244.1.0/24']);
  });

  it('an older Node’s address inside a younger Node’s PodCIDR drops that PodCIDR', () => {
    const young = meshNode('young', { ip: '10.1.0.77', created: 8, pods: ['10.1.0.0/24'], key: KEYS[3] });
    const m = decide([A, B, young], [], { ...SETTINGS, podCidrs: ['10.0.0.0/8'], claimLocationRanges: false });
    assert.deepEqual(m.members.find((x) => x.name === 'young')!.podCIDRs, []);
    assert.match(skipsOf(m, 'young').join('\n'), /contains 10\.1\.0\.1, the InternalIP of Node a, an older claim/);
  });

  it("published and forced endpoints protect nothing: a Node's PodCIDR around another's published endpoint is kept", () => {
    const liar = meshNode('liar', {
      ip: '10.1.0.88',
      created: 0,
      key: KEYS[4],
      endpoint: '10.244.2.1:51820',
      annotations: { [KILO_FORCE_ENDPOINT]: '10.244.2.2:51820' },
    });
    const m = decide([liar, A, B], [], { ...SETTINGS, publishedEndpoints: 'any', claimLocationRanges: false });
    assert.deepEqual(m.members.find((x) => x.name === 'b')!.podCIDRs, ['10.244.2.0/24']);
  });
});

describe('unit: trust — external peers', () => {
  const peer = (name: string, allowedIPs: string[], createdAt = 5): ExternalPeer => ({
    name,
    createdAt,
    allowedIPs,
    publicKey: KEYS[3],
    presharedKey: undefined,
    persistentKeepalive: undefined,
    endpoint: undefined,
  });
  const rows: Array<[string, string[], RegExp | undefined]> = [
    ['a private host route', ['10.5.0.2/32'], undefined],
    ['a public /16', ['8.8.0.0/16'], /is outside the ranges external routes may take/],
    ['the service range, when protected', ['10.96.0.0/16'], /overlaps 10\.96\.0\.1\/32, which \[overlay\] protected/],
    ['an IPv4-mapped range', ['::ffff:10.5.0.0/112'], /overlaps IPv4-mapped addresses/],
    ['6to4', ['2002:c000:204::/48'], /overlaps 6to4 addresses/],
  ];
  for (const [what, allowed, refused] of rows) {
    it(`${refused ? 'refuses' : 'admits'} ${what}`, () => {
      const m = decide([A, B], [peer('p', allowed)], { ...SETTINGS, claimLocationRanges: false });
      if (!refused)
        assert.deepEqual(
          m.externalPeers.map((p) => p.name),
          ['p'],
        );
      else assert.match(m.skipped.find((s) => s.kind === 'peer')?.message ?? '', refused);
    });
  }
});
