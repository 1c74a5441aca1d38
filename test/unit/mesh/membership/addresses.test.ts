/**
 * Overlay address assignment: the seed rule, uniqueness under any node IPs, stickiness,
 * hostile claims, unusable addresses, IPv6-only nodes, other overlay sizes and exhaustion.
 */
import assert from 'node:assert/strict';
import {
  assignOverlayAddresses,
  candidateOffset,
  isUsableOffset,
} from '../../../../service/src/mesh/membership/addresses.js';
import { parseCidr } from '../../../../service/src/net/ip.js';
import { meshNode } from '../../../support/fakes/fixtures.js';
import type { MeshNode } from '../../../../service/src/mesh/types.js';

const O = '100.64.0.0/10';

function assign(nodes: MeshNode[], cidr = O): Record<string, string> {
  return Object.fromEntries(assignOverlayAddresses(nodes, cidr).addresses);
}

function assertUnique(addrs: Record<string, string>): void {
  const values = Object.values(addrs);
  assert.equal(new Set(values).size, values.length, `duplicate addresses: ${JSON.stringify(addrs)}`);
}

describe('unit: overlay address assignment', () => {
  const seedCases: Array<[string, string, string]> = [
    ['192.0.2.5', O, '100.64.2.5'],
    ['198.51.100.20', O, '100.64.100.20'],
    ['10.240.3.4', O, '100.64.3.4'],
    ['192.0.2.5', '100.64.0.0/16', '100.64.2.5'],
    ['192.0.2.5', '10.99.0.0/24', '10.99.0.5'],
    ['192.0.2.77', '100.64.0.0/26', '100.64.0.13'], // 77 & 63
  ];
  for (const [ip, cidr, want] of seedCases) {
    it(`seed rule: ${ip} in ${cidr} → ${want}`, () => {
      assert.deepEqual(assign([meshNode('a', { ip, created: 1 })], cidr), { a: want });
    });
  }

  it('nodes whose IPs share the low two octets get different addresses; the older keeps the candidate', () => {
    const nodes = [
      meshNode('young', { ip: '198.18.2.5', created: 5 }),
      meshNode('old', { ip: '192.0.2.5', created: 1 }),
      meshNode('mid', { ip: '198.19.2.5', created: 3 }),
    ];
    const got = assign(nodes);
    assert.deepEqual(got, { old: '100.64.2.5', mid: '100.64.2.6', young: '100.64.2.7' });
  });

  it('equal creation times fall back to the name', () => {
    const got = assign([
      meshNode('b', { ip: '198.18.2.5', created: 1 }),
      meshNode('a', { ip: '192.0.2.5', created: 1 }),
    ]);
    assert.deepEqual(got, { a: '100.64.2.5', b: '100.64.2.6' });
  });

  it('is the same for any order of the Node list', () => {
    const nodes = Array.from({ length: 40 }, (_, i) =>
      meshNode(`n${i}`, { ip: `198.18.${i % 3}.${((i * 7) % 5) + 1}`, created: i % 4 }),
    );
    const want = assign(nodes);
    assertUnique(want);
    for (let k = 0; k < 5; k += 1) {
      const shuffled = [...nodes].sort(() => Math.random() - 0.5);
      assert.deepEqual(assign(shuffled), want);
    }
  });

  it('never gives two nodes the same address for arbitrary node IPs (1000 nodes in a /8-wide underlay)', () => {
    const nodes = Array.from({ length: 1000 }, (_, i) =>
      meshNode(`n${i}`, { ip: `10.${i % 256}.${(i * 13) % 4}.${((i * 31) % 3) + 1}`, created: i }),
    );
    const got = assign(nodes);
    assert.equal(Object.keys(got).length, 1000);
    assertUnique(got);
  });

  it('skips network, broadcast and .0/.255 addresses', () => {
    const got = assign([
      meshNode('zero', { ip: '192.0.0.0', created: 1 }),
      meshNode('ff', { ip: '192.0.1.255', created: 2 }),
    ]);
    assert.deepEqual(got, { zero: '100.64.0.1', ff: '100.64.2.1' });
    const o = parseCidr(O)!;
    assert.equal(isUsableOffset(o, 0n), false);
    assert.equal(isUsableOffset(o, (1n << 22n) - 1n), false);
    assert.equal(isUsableOffset(o, 256n), false);
    assert.equal(isUsableOffset(o, 511n), false);
    assert.equal(isUsableOffset(o, 257n), true);
    const small = parseCidr('10.0.0.0/30')!;
    assert.deepEqual(
      [0n, 1n, 2n, 3n].map((x) => isUsableOffset(small, x)),
      [false, true, true, false],
    );
  });

  it('keeps a published address (sticky) even when it is not the candidate', () => {
    const got = assign([meshNode('a', { ip: '192.0.2.5', created: 1, address: '100.64.9.9' })]);
    assert.deepEqual(got, { a: '100.64.9.9' });
  });

  it('keeps published addresses when an older node without one joins', () => {
    const got = assign([
      meshNode('late-but-old', { ip: '198.18.2.5', created: 1 }),
      meshNode('holder', { ip: '192.0.2.5', created: 2, address: '100.64.2.5' }),
    ]);
    assert.deepEqual(got, { holder: '100.64.2.5', 'late-but-old': '100.64.2.6' });
  });

  it('keeps addresses stable when nodes join and leave', () => {
    const base = [
      meshNode('a', { ip: '192.0.2.5', created: 1 }),
      meshNode('b', { ip: '198.18.2.5', created: 2 }),
      meshNode('c', { ip: '198.19.2.5', created: 3 }),
    ];
    const first = assign(base);
    // Each node publishes what it got; then a leaves and d joins.
    const published = base.map((n) => ({ ...n, annotations: { 'wg-overlay.io/overlay-address': first[n.name]! } }));
    const after = assign([...published.slice(1), meshNode('d', { ip: '203.0.113.5', created: 4 })]);
    assert.equal(after.b, first.b);
    assert.equal(after.c, first.c);
    assert.ok(after.d && ![first.b, first.c].includes(after.d));
    assertUnique(after);
  });

  it("a hostile younger node cannot take an older node's address by claiming it", () => {
    const r = assignOverlayAddresses(
      [
        meshNode('victim', { ip: '192.0.2.5', created: 1, address: '100.64.2.5' }),
        meshNode('thief', { ip: '192.0.2.66', created: 2, address: '100.64.2.5' }),
      ],
      O,
    );
    assert.equal(r.addresses.get('victim'), '100.64.2.5');
    assert.equal(r.addresses.get('thief'), '100.64.2.66');
    assert.deepEqual(
      r.problems.map((p) => [p.name, p.reason]),
      [['thief', 'overlay-address-taken']],
    );
    assert.match(r.problems[0]!.message, /held by older node victim/);
  });

  const badClaims: Array<[string, string]> = [
    ['not an IP', 'banana'],
    ['outside the overlay', '10.0.0.1'],
    ['the network address', '100.64.0.0'],
    ['the broadcast address', '100.127.255.255'],
    ['a .255 address', '100.64.3.255'],
    ['an IPv6 address', '2001:db8::1'],
    ['with a prefix length', '100.64.2.5/10'],
  ];
  for (const [name, claim] of badClaims) {
    it(`ignores a published address that is ${name}`, () => {
      const r = assignOverlayAddresses([meshNode('a', { ip: '192.0.2.5', created: 1, address: claim })], O);
      assert.equal(r.addresses.get('a'), '100.64.2.5');
      assert.equal(r.problems.length, 1);
      assert.equal(r.problems[0]!.reason, 'invalid-overlay-address');
      assert.equal(r.problems[0]!.whole, false);
    });
  }

  it('an IPv6-only node derives its candidate from the low bits of its IPv6 address', () => {
    assert.deepEqual(assign([meshNode('v6', { ip: '2001:db8::205', created: 1 })]), { v6: '100.64.2.5' });
  });

  it('IPv6-only nodes sharing low bits get different addresses', () => {
    const got = assign([
      meshNode('a', { ip: '2001:db8:1::205', created: 1 }),
      meshNode('b', { ip: '2001:db8:2::205', created: 2 }),
    ]);
    assert.deepEqual(got, { a: '100.64.2.5', b: '100.64.2.6' });
  });

  it('prefers the IPv4 InternalIP of a dual-stack node', () => {
    assert.deepEqual(assign([meshNode('ds', { ip: ['2001:db8::9:9', '192.0.2.5'], created: 1 })]), {
      ds: '100.64.2.5',
    });
  });

  it('a node with no address at all still gets a deterministic one', () => {
    const a = assign([meshNode('noip', { created: 1 })]);
    assert.deepEqual(assign([meshNode('noip', { created: 1 })]), a);
    assert.match(a.noip!, /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./);
  });

  it('supports an IPv6 overlay: the whole IPv4 address is embedded', () => {
    const got = assign(
      [meshNode('a', { ip: '192.0.2.5', created: 1 }), meshNode('b', { ip: '198.18.2.5', created: 2 })],
      'fd00:64::/64',
    );
    assert.deepEqual(got, { a: 'fd00:64::c000:205', b: 'fd00:64::c612:205' });
    assert.equal(
      candidateOffset(meshNode('x', { ip: '2001:db8::1:2:3:4' }), parseCidr('fd00::/64')!),
      0x0001000200030004n,
    );
  });

  it('exhaustion: nodes that get none are reported, the others keep theirs', () => {
    // 10.0.0.0/29 has 6 usable addresses (.1-.6)
    const nodes = Array.from({ length: 8 }, (_, i) => meshNode(`n${i}`, { ip: `192.0.2.${i + 1}`, created: i }));
    const r = assignOverlayAddresses(nodes, '10.0.0.0/29');
    assert.equal(r.addresses.size, 6);
    assertUnique(Object.fromEntries(r.addresses));
    assert.deepEqual(
      r.problems.map((p) => [p.name, p.reason, p.whole]),
      [
        ['n6', 'no-overlay-address', true],
        ['n7', 'no-overlay-address', true],
      ],
    );
    assert.match(r.problems[0]!.message, /10\.0\.0\.0\/29 is exhausted/);
  });

  it('is fast enough for big clusters (5000 nodes with colliding IPs)', () => {
    const nodes = Array.from({ length: 5000 }, (_, i) => meshNode(`n${i}`, { ip: `10.${i % 200}.1.1`, created: i }));
    const t = Date.now();
    const got = assign(nodes);
    assertUnique(got);
    assert.equal(Object.keys(got).length, 5000);
    assert.ok(Date.now() - t < 5000);
  });
});
