/**
 * Desired state: peers, AllowedIPs, routes, endpoints and published annotations from Nodes, and
 * the reasons Nodes are left out (missing/invalid annotations, duplicate keys, PodCIDR conflicts).
 */
import assert from 'node:assert/strict';
import { computeDesired, NotReadyError, type MeshSettings } from '../../../../service/src/mesh/desired/desired.js';
import {
  ANNOTATION_ENDPOINT,
  ANNOTATION_OVERLAY_ADDRESS,
  ANNOTATION_PUBLIC_KEY,
} from '../../../../service/src/mesh/annotations.js';
import { KEYS, MESH_SETTINGS, meshNode } from '../../../support/fakes/fixtures.js';

const SETTINGS: MeshSettings = MESH_SETTINGS;
const SELF = { name: 'a', publicKey: KEYS[0] };

const nodeA = meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] });
const nodeB = meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] });
const nodeC = meshNode('c', { ip: '192.0.2.13', created: 3, pods: ['10.244.3.0/24'], key: KEYS[2] });

describe('unit: desired state', () => {
  it('a 3-node cluster: interface, peers, routes and what to publish', () => {
    const d = computeDesired(SELF, [nodeC, nodeA, nodeB], SETTINGS);
    assert.deepEqual(d.iface, {
      name: 'wg0',
      address: '100.64.2.11/10',
      listenPort: 51820,
      mtu: 1420,
      publicKey: KEYS[0],
    });
    assert.deepEqual(d.peers, [
      {
        kind: 'node',
        name: 'b',
        publicKey: KEYS[1],
        endpoint: '192.0.2.12:51820',
        allowedIPs: ['10.244.2.0/24', '100.64.2.12/32'],
        persistentKeepalive: 0,
      },
      {
        kind: 'node',
        name: 'c',
        publicKey: KEYS[2],
        endpoint: '192.0.2.13:51820',
        allowedIPs: ['10.244.3.0/24', '100.64.2.13/32'],
        persistentKeepalive: 0,
      },
    ]);
    assert.deepEqual(d.routes, [
      { dst: '10.244.2.0/24', dev: 'wg0', via: 'b' },
      { dst: '10.244.3.0/24', dev: 'wg0', via: 'c' },
    ]);
    assert.deepEqual(d.publish, {
      [ANNOTATION_PUBLIC_KEY]: KEYS[0],
      [ANNOTATION_OVERLAY_ADDRESS]: '100.64.2.11',
      [ANNOTATION_ENDPOINT]: '192.0.2.11:51820',
    });
    assert.deepEqual(d.skipped, []);
    assert.deepEqual(d.warnings, []);
  });

  it('is the same for any order of the Node list and repeated calls', () => {
    const one = computeDesired(SELF, [nodeA, nodeB, nodeC], SETTINGS);
    const two = computeDesired(SELF, [nodeC, nodeB, nodeA], SETTINGS);
    assert.deepEqual(one, two);
  });

  it("uses the published endpoint when it is one of the Node's own addresses", () => {
    const b = meshNode('b', {
      ip: '192.0.2.12',
      external: '203.0.113.9',
      created: 2,
      key: KEYS[1],
      endpoint: '203.0.113.9:4500',
    });
    const d = computeDesired(SELF, [nodeA, b], SETTINGS);
    assert.equal(d.peers[0]!.endpoint, '203.0.113.9:4500');
  });

  it("accepts an IPv6 endpoint among the Node's addresses; refuses names and foreign addresses (falling back to the InternalIP)", () => {
    const b = meshNode('b', {
      ip: ['192.0.2.12', '2001:db8::12'],
      created: 2,
      key: KEYS[1],
      endpoint: '[2001:db8::12]:51820',
    });
    const c = meshNode('c', { ip: '192.0.2.13', created: 3, key: KEYS[2], endpoint: 'node-c.example.com:51820' });
    const e = meshNode('e', { ip: '192.0.2.15', created: 4, key: KEYS[4], endpoint: '192.0.2.12:51820' });
    const d = computeDesired(SELF, [nodeA, b, c, e], SETTINGS);
    assert.deepEqual(
      d.peers.map((p) => p.endpoint),
      ['[2001:db8::12]:51820', '192.0.2.13:51820', '192.0.2.15:51820'],
    );
    assert.deepEqual(
      d.skipped.map((s) => [s.name, s.reason, s.whole]),
      [
        ['c', 'endpoint-refused', false],
        ['e', 'endpoint-refused', false],
      ],
    );
    assert.match(d.skipped[0]!.message, /published endpoint "node-c\.example\.com:51820" is a name, not an address/);
    assert.match(
      d.skipped[1]!.message,
      /published endpoint "192\.0\.2\.12:51820" is not one of the Node's own addresses .*; using its InternalIP 192\.0\.2\.15:51820/,
    );
    const any = computeDesired(SELF, [nodeA, b, c, e], { ...SETTINGS, publishedEndpoints: 'any' });
    assert.deepEqual(
      any.peers.map((p) => p.endpoint),
      ['[2001:db8::12]:51820', '192.0.2.13:51820', '192.0.2.12:51820'],
      'any: addresses are believed, names never',
    );
  });

  const skips: Array<[string, Parameters<typeof meshNode>[1], string, boolean, RegExp]> = [
    ['no public key', { ip: '192.0.2.12', created: 2 }, 'no-public-key', true, /has not published/],
    ['empty public key', { ip: '192.0.2.12', created: 2, key: '' }, 'no-public-key', true, /has not published/],
    [
      'garbage public key',
      { ip: '192.0.2.12', created: 2, key: 'hello' },
      'invalid-public-key',
      true,
      /not a base64 WireGuard key/,
    ],
    [
      '31-byte key',
      { ip: '192.0.2.12', created: 2, key: Buffer.alloc(31, 1).toString('base64') },
      'invalid-public-key',
      true,
      /not a base64/,
    ],
    [
      "this node's own key (the older node keeps it)",
      { ip: '192.0.2.12', created: 2, key: KEYS[0] },
      'duplicate-public-key',
      true,
      /publishes the same public key as older Node a/,
    ],
    ['no endpoint and no InternalIP', { created: 2, key: KEYS[1] }, 'no-endpoint', true, /no InternalIP/],
    [
      'a broken endpoint and no InternalIP',
      { created: 2, key: KEYS[1], endpoint: 'x:y:z' },
      'invalid-endpoint',
      true,
      /"x:y:z" is not host:port/,
    ],
  ];
  for (const [name, opts, reason, whole, message] of skips) {
    it(`skips a node with ${name}`, () => {
      const d = computeDesired(SELF, [nodeA, meshNode('b', opts)], SETTINGS);
      assert.deepEqual(d.peers, []);
      assert.deepEqual(d.routes, []);
      const s = d.skipped.filter((x) => x.name === 'b');
      assert.equal(s.length, 1, JSON.stringify(d.skipped));
      assert.equal(s[0]!.reason, reason);
      assert.equal(s[0]!.whole, whole);
      assert.match(s[0]!.message, message);
    });
  }

  it('a broken endpoint annotation falls back to the InternalIP with a warning', () => {
    const b = meshNode('b', { ip: '192.0.2.12', created: 2, key: KEYS[1], endpoint: '192.0.2.12:99999' });
    const d = computeDesired(SELF, [nodeA, b], SETTINGS);
    assert.equal(d.peers[0]!.endpoint, '192.0.2.12:51820');
    assert.deepEqual(
      d.skipped.map((s) => [s.reason, s.whole]),
      [['invalid-endpoint', false]],
    );
  });

  it('a hostile huge or odd annotation value never breaks the computation', () => {
    const b = meshNode('b', {
      ip: '192.0.2.12',
      created: 2,
      key: 'A'.repeat(5000),
      address: '\u0000',
      endpoint: '[::1',
    });
    const d = computeDesired(SELF, [nodeA, b, nodeC], SETTINGS);
    assert.deepEqual(
      d.peers.map((p) => p.name),
      ['c'],
    );
  });

  it('dual-stack PodCIDRs all become AllowedIPs and routes (podCIDRs list)', () => {
    const b = meshNode('b', {
      ip: '192.0.2.12',
      created: 2,
      key: KEYS[1],
      pods: ['10.244.2.0/24', 'fd00:10:244:2::/64'],
    });
    const d = computeDesired(SELF, [nodeA, b], SETTINGS);
    assert.deepEqual(d.peers[0]!.allowedIPs, ['10.244.2.0/24', '100.64.2.12/32', 'fd00:10:244:2::/64']);
    assert.deepEqual(
      d.routes.map((r) => r.dst),
      ['10.244.2.0/24', 'fd00:10:244:2::/64'],
    );
  });

  it('normalises PodCIDRs and drops invalid ones with a reason', () => {
    const b = meshNode('b', {
      ip: '192.0.2.12',
      created: 2,
      key: KEYS[1],
      pods: ['10.244.2.7/24', 'nope', 'FD00:0:0:0::/64'],
    });
    const d = computeDesired(SELF, [nodeA, b], SETTINGS);
    assert.deepEqual(
      d.routes.map((r) => r.dst),
      ['10.244.2.0/24', 'fd00::/64'],
    );
    assert.deepEqual(
      d.skipped.map((s) => [s.name, s.reason, s.whole]),
      [['b', 'invalid-pod-cidr', false]],
    );
  });

  it('overlapping PodCIDRs: the older node keeps it, the younger loses only that CIDR', () => {
    const b = meshNode('b', { ip: '192.0.2.12', created: 2, key: KEYS[1], pods: ['10.244.2.0/24'] });
    const c = meshNode('c', { ip: '192.0.2.13', created: 3, key: KEYS[2], pods: ['10.244.2.128/25', '10.244.3.0/24'] });
    const d = computeDesired(SELF, [nodeA, c, b], SETTINGS);
    assert.deepEqual(d.peers.find((p) => p.name === 'c')!.allowedIPs, ['10.244.3.0/24', '100.64.2.13/32']);
    assert.deepEqual(
      d.routes.map((r) => [r.dst, r.via]),
      [
        ['10.244.2.0/24', 'b'],
        ['10.244.3.0/24', 'c'],
      ],
    );
    const s = d.skipped.find((x) => x.name === 'c')!;
    assert.equal(s.reason, 'pod-cidr-conflict');
    assert.equal(s.whole, false);
    assert.match(s.message, /10\.244\.2\.128\/25 overlaps 10\.244\.2\.0\/24 of older Node b/);
  });

  it("never routes this node's own PodCIDR to a peer, even an older one (a local rule: the verdicts stay everyone's)", () => {
    const self = meshNode('a', { ip: '192.0.2.11', created: 5, key: KEYS[0], pods: ['10.244.1.0/24'] });
    const b = meshNode('b', { ip: '192.0.2.12', created: 1, key: KEYS[1], pods: ['10.244.0.0/16'] });
    const d = computeDesired(SELF, [self, b], SETTINGS);
    assert.deepEqual(d.peers[0]!.allowedIPs, ['100.64.2.12/32']);
    assert.deepEqual(d.routes, []);
    assert.match(
      d.warnings[0]!,
      /PodCIDR 10\.244\.0\.0\/16 of Node b overlaps this node's own PodCIDR 10\.244\.1\.0\/24: not routed from here/,
    );
    assert.deepEqual(
      d.skipped.map((s) => [s.name, s.reason]),
      [['a', 'pod-cidr-conflict']],
      'the verdict: the older node keeps the range',
    );
  });

  it('drops a PodCIDR that overlaps the overlay', () => {
    const b = meshNode('b', { ip: '192.0.2.12', created: 2, key: KEYS[1], pods: ['100.64.0.0/24'] });
    const d = computeDesired(SELF, [nodeA, b], SETTINGS);
    assert.deepEqual(d.peers[0]!.allowedIPs, ['100.64.2.12/32']);
    assert.equal(d.skipped[0]!.reason, 'pod-cidr-refused');
  });

  it('duplicate public keys: the older keeps it, the younger is skipped', () => {
    const b = meshNode('b', { ip: '192.0.2.12', created: 2, key: KEYS[1] });
    const c = meshNode('c', { ip: '192.0.2.13', created: 3, key: KEYS[1] });
    const d = computeDesired(SELF, [nodeA, c, b], SETTINGS);
    assert.deepEqual(
      d.peers.map((p) => p.name),
      ['b'],
    );
    assert.deepEqual(
      d.skipped.map((s) => [s.name, s.reason]),
      [['c', 'duplicate-public-key']],
    );
    assert.match(d.skipped[0]!.message, /older Node b/);
  });

  it("warns when an older node publishes this node's key (cloned machine)", () => {
    const self = meshNode('a', { ip: '192.0.2.11', created: 5, key: KEYS[0] });
    const b = meshNode('b', { ip: '192.0.2.12', created: 1, key: KEYS[0] });
    const d = computeDesired(SELF, [self, b], SETTINGS);
    assert.deepEqual(d.peers, []);
    assert.match(d.warnings[0]!, /^Node b publishes this node's public key \(a cloned machine\?\)/);
    assert.deepEqual(
      d.skipped.map((s) => [s.name, s.reason]),
      [['a', 'duplicate-public-key']],
      "every node's verdict: the older node keeps the key",
    );
  });

  it('falls back to spec.podCIDR (already merged at the boundary) and handles none', () => {
    const b = meshNode('b', { ip: '192.0.2.12', created: 2, key: KEYS[1], pods: [] });
    const d = computeDesired(SELF, [nodeA, b], SETTINGS);
    assert.deepEqual(d.peers[0]!.allowedIPs, ['100.64.2.12/32']);
    assert.deepEqual(d.routes, []);
  });

  it('uses the keepalive setting for every peer', () => {
    const d = computeDesired(SELF, [nodeA, nodeB], { ...SETTINGS, persistentKeepalive: 25 });
    assert.equal(d.peers[0]!.persistentKeepalive, 25);
  });

  it('publishes the ExternalIP with endpoint = external, and warns when there is none', () => {
    const a = meshNode('a', { ip: '192.0.2.11', external: '203.0.113.11', created: 1, key: KEYS[0] });
    const d = computeDesired(SELF, [a], { ...SETTINGS, endpoint: { mode: 'external' } });
    assert.equal(d.publish[ANNOTATION_ENDPOINT], '203.0.113.11:51820');
    const d2 = computeDesired(SELF, [nodeA], { ...SETTINGS, endpoint: { mode: 'external' } });
    assert.equal(d2.publish[ANNOTATION_ENDPOINT], undefined);
    assert.match(d2.warnings[0]!, /no ExternalIP/);
  });

  it('publishes an explicit endpoint, with the listen port when none is given', () => {
    const d = computeDesired(SELF, [nodeA], {
      ...SETTINGS,
      endpoint: { mode: 'explicit', host: 'vpn.example.com', port: 4500 },
    });
    assert.equal(d.publish[ANNOTATION_ENDPOINT], 'vpn.example.com:4500');
    const d2 = computeDesired(SELF, [nodeA], {
      ...SETTINGS,
      endpoint: { mode: 'explicit', host: '2001:db8::1', port: undefined },
    });
    assert.equal(d2.publish[ANNOTATION_ENDPOINT], '[2001:db8::1]:51820');
  });

  it('an IPv6-only peer is dialled on its IPv6 InternalIP', () => {
    const b = meshNode('b', { ip: '2001:db8::12', created: 2, key: KEYS[1] });
    const d = computeDesired(SELF, [nodeA, b], SETTINGS);
    assert.equal(d.peers[0]!.endpoint, '[2001:db8::12]:51820');
  });

  it("throws NotReadyError while this node's Node does not exist", () => {
    assert.throws(
      () => computeDesired(SELF, [nodeB], SETTINGS),
      (e: unknown) => e instanceof NotReadyError && /Node a does not exist/.test(e.message),
    );
  });

  it('throws NotReadyError when this node gets no overlay address', () => {
    const nodes = [nodeB, nodeC, meshNode('a', { ip: '192.0.2.14', created: 9, key: KEYS[0] })];
    assert.throws(
      () => computeDesired(SELF, nodes, { ...SETTINGS, overlayCidr: '10.0.0.0/30' }),
      /no overlay address: overlay 10\.0\.0\.0\/30 is exhausted/,
    );
  });

  it("keeps this node's published address", () => {
    const a = meshNode('a', { ip: '192.0.2.11', created: 1, key: KEYS[0], address: '100.64.77.1' });
    assert.equal(computeDesired(SELF, [a, nodeB], SETTINGS).iface.address, '100.64.77.1/10');
  });
});
