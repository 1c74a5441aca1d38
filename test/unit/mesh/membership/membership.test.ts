/**
 * Membership's trust rules: a hostile Node's PodCIDRs that would steer traffic (public ranges,
 * the API server, another node's address, the metadata address, too wide) are refused by name and
 * rule; every node reaches the same verdicts whatever its own state; and a younger Node, whatever
 * it publishes, never changes the verdict on an older Node that has published its address
 * (seeded random clusters).
 */
import assert from 'node:assert/strict';
import { decideMembership, type Membership } from '../../../../service/src/mesh/membership/membership.js';
import type { MeshNode, MembershipSettings } from '../../../../service/src/mesh/types.js';
import { KEYS, meshNode } from '../../../support/fakes/fixtures.js';
import { rng } from '../../../support/fakes/random.js';

const SETTINGS: MembershipSettings = {
  overlayCidr: '100.64.0.0/10',
  listenPort: 51820,
  protectedRanges: ['192.0.2.200/32'],
};
const A = meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] });
const B = meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] });
const hostile = (pods: string[]): MeshNode => meshNode('evil', { ip: '192.0.2.66', created: 9, pods, key: KEYS[5] });

describe('unit: membership trust rules', () => {
  const refused: Array<[string, string, RegExp]> = [
    [
      'half the IPv4 internet',
      '128.0.0.0/1',
      /PodCIDR 128\.0\.0\.0\/1 is outside the cluster's pod CIDRs \(\[overlay\] pod_cidrs = 10\.0\.0\.0\/8, 172\.16\.0\.0\/12, /,
    ],
    ['half the IPv6 internet', '::/1', /PodCIDR ::\/1 is outside the cluster's pod CIDRs/],
    ['a public /24', '203.0.113.0/24', /is outside the cluster's pod CIDRs/],
    ['the API server', '192.0.2.200/32', /is outside the cluster's pod CIDRs/],
    ['the metadata address', '169.254.169.254/32', /is outside the cluster's pod CIDRs/],
    [
      'a whole private /8',
      '10.0.0.0/8',
      /PodCIDR 10\.0\.0\.0\/8 is wider than \/16, the widest range routed to one peer; dropped/,
    ],
    ['the overlay', '100.64.0.0/24', /is outside the cluster's pod CIDRs/],
  ];
  for (const [name, cidr, message] of refused) {
    it(`refuses a PodCIDR that is ${name} (${cidr})`, () => {
      const m = decideMembership([A, B, hostile([cidr])], [], SETTINGS);
      const s = m.skipped.filter((x) => x.name === 'evil');
      assert.deepEqual(
        s.map((x) => [x.reason, x.whole]),
        [['pod-cidr-refused', false]],
      );
      assert.match(s[0]!.message, message);
      assert.deepEqual(m.members.find((x) => x.name === 'evil')!.podCIDRs, []);
    });
  }

  const protectedCases: Array<[string, string, MembershipSettings, RegExp]> = [
    [
      "another node's InternalIP",
      '192.0.2.12/32',
      { ...SETTINGS, podCidrs: ['0.0.0.0/0'], minPrefix: { 4: 1, 6: 1 } },
      /contains 192\.0\.2\.12, the InternalIP of Node b/,
    ],
    [
      'a range [overlay] protected names, the API server say (with pod_cidrs wide open)',
      '192.0.2.200/32',
      { ...SETTINGS, podCidrs: ['0.0.0.0/0'], minPrefix: { 4: 1, 6: 1 } },
      /overlaps 192\.0\.2\.200\/32, which \[overlay\] protected keeps out of the tunnel/,
    ],
    [
      'the metadata address (with pod_cidrs wide open)',
      '169.254.169.254/32',
      { ...SETTINGS, podCidrs: ['0.0.0.0/0'], minPrefix: { 4: 1, 6: 1 } },
      /overlaps link-local addresses/,
    ],
    [
      'loopback (with pod_cidrs wide open)',
      '127.0.0.0/8',
      { ...SETTINGS, podCidrs: ['0.0.0.0/0'], minPrefix: { 4: 1, 6: 1 } },
      /overlaps loopback/,
    ],
    [
      'everything (with pod_cidrs wide open)',
      '0.0.0.0/0',
      { ...SETTINGS, podCidrs: ['0.0.0.0/0'], minPrefix: { 4: 0, 6: 0 } },
      /overlaps the unspecified range/,
    ],
  ];
  for (const [name, cidr, settings, message] of protectedCases) {
    it(`refuses a PodCIDR containing ${name}, even where pod_cidrs would allow it`, () => {
      const m = decideMembership([A, B, hostile([cidr])], [], settings);
      const s = m.skipped.find((x) => x.name === 'evil')!;
      assert.equal(s.reason, 'pod-cidr-refused');
      assert.match(s.message, message);
    });
  }

  it("pod_cidrs set to the cluster's own range refuses other private ranges", () => {
    const m = decideMembership([A, B, hostile(['192.168.7.0/24', '10.244.7.0/24'])], [], {
      ...SETTINGS,
      podCidrs: ['10.244.0.0/16'],
    });
    assert.deepEqual(m.members.find((x) => x.name === 'evil')!.podCIDRs, ['10.244.7.0/24']);
  });

  it('every node reaches the same verdicts, whatever its own PodCIDRs or key state', () => {
    const c = meshNode('c', { ip: '192.0.2.13', created: 3, pods: [], key: KEYS[2] }); // no PodCIDR of its own
    const d = meshNode('d', { ip: '192.0.2.14', created: 4, pods: ['10.244.0.0/16'], key: KEYS[3] }); // covers a and b
    const e = meshNode('e', { ip: '192.0.2.15', created: 5, pods: ['10.244.5.0/24'], key: KEYS[1] }); // b's key
    const nodes = [A, B, c, d, e];
    const views = [
      undefined,
      ...nodes.map((n) => ({ name: n.name, publicKey: n.annotations['wg-overlay.io/public-key']! })),
    ].map((self) => decideMembership(nodes, [], SETTINGS, self));
    const verdict = (m: Membership): string => JSON.stringify(m.skipped);
    assert.equal(new Set(views.map(verdict)).size, 1, views.map(verdict).join('\n'));
    assert.deepEqual(
      views[0]!.skipped.map((s) => [s.name, s.reason]),
      [
        ['d', 'pod-cidr-conflict'],
        ['e', 'duplicate-public-key'],
      ],
    );
    // Each node's members are everyone else that is admitted.
    for (const [i, n] of nodes.entries()) {
      assert.deepEqual(
        views[i + 1]!.members.map((x) => x.name),
        views[0]!.members.map((x) => x.name).filter((x) => x !== n.name),
      );
    }
  });

  describe("a younger Node never changes an older Node's verdict (seeded random clusters)", () => {
    const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const CIDRS = [
      '10.244.1.0/24',
      '10.244.2.0/24',
      '10.244.0.0/16',
      '10.244.1.128/25',
      '10.245.0.0/24',
      'fd00:10::/64',
      '203.0.113.0/24',
      '128.0.0.0/1',
    ];

    for (const seed of [1, 7, 99, 1234, 2026]) {
      it(`seed ${seed}`, () => {
        const r = rng(seed);
        const nodes = Array.from({ length: 12 }, (_, i) =>
          meshNode(`n${i}`, {
            ip: `192.0.2.${10 + i}`,
            created: i,
            pods: [pick(r, CIDRS)],
            key: pick(r, KEYS),
            ...(r() < 0.3 ? { endpoint: pick(r, ['192.0.2.10:1', 'x.example:5', `192.0.2.${10 + i}:51820`]) } : {}),
          }),
        );
        // Running daemons have published the addresses they were given (published addresses are sticky).
        const first = decideMembership(nodes, [], SETTINGS);
        for (const n of nodes) n.annotations['wg-overlay.io/overlay-address'] = first.addresses.get(n.name)!;
        const before = decideMembership(nodes, [], SETTINGS);
        const intruder = meshNode('zz-intruder', {
          ip: pick(r, ['192.0.2.10', '192.0.2.99']),
          created: 100,
          pods: [pick(r, CIDRS), pick(r, CIDRS)],
          key: pick(r, KEYS),
          address: before.addresses.get('n0')!,
          endpoint: '192.0.2.11:51820',
        });
        const after = decideMembership([...nodes, intruder], [], SETTINGS);
        const about = (m: Membership, name: string) =>
          JSON.stringify({
            skipped: m.skipped.filter((s) => s.name === name),
            member: m.members.find((x) => x.name === name) ?? null,
            address: m.addresses.get(name),
          });
        for (const n of nodes)
          assert.equal(about(after, n.name), about(before, n.name), `the intruder changed ${n.name}'s verdict`);
      });
    }
  });
});
