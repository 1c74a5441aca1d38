/**
 * External Peers (Kilo's Peer resource) in the pure core: Kilo's validation rules one by one,
 * the mesh's conflict rules (PodCIDRs, overlay and underlay addresses, older Peers, keys of Nodes
 * and Peers), desired state with Peers on every node (same verdicts everywhere), the cluster-wide
 * view used by showconf/graph, and the translation of Peer objects at the Kubernetes boundary.
 */
import assert from 'node:assert/strict';
import { KILO_FORCE_ENDPOINT } from '../../../../service/src/mesh/annotations.js';
import { computeDesired, type MeshSettings } from '../../../../service/src/mesh/desired/desired.js';
import {
  validateExternalPeer as validatePeer,
  type AdmittedPeer as ValidPeer,
} from '../../../../service/src/mesh/membership/external-peers.js';
import type { ExternalPeer } from '../../../../service/src/mesh/types.js';
import { decideMembership } from '../../../../service/src/mesh/membership/membership.js';
import { formatCidr } from '../../../../service/src/net/ip.js';
import { toExternalPeer as toMeshPeer } from '../../../../service/src/kube/external-peer-translate.js';
import { KEYS, MESH_SETTINGS, meshNode } from '../../../support/fakes/fixtures.js';

const SETTINGS: MeshSettings = MESH_SETTINGS;

const nodeA = meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] });
const nodeB = meshNode('b', {
  ip: '192.0.2.12',
  external: '203.0.113.12',
  created: 2,
  pods: ['10.244.2.0/24'],
  key: KEYS[1],
  endpoint: '203.0.113.12:51820',
});
const nodeC = meshNode('c', { ip: '192.0.2.13', created: 3, pods: ['10.244.3.0/24'], key: KEYS[2] });
const NODES = [nodeA, nodeB, nodeC];

/** A Peer with valid defaults; `created` is minutes after a fixed epoch. */
function peer(name: string, o: Partial<ExternalPeer> & { created?: number } = {}): ExternalPeer {
  const { created, ...rest } = o;
  return {
    name,
    createdAt: created === undefined ? Date.UTC(2026, 0, 2) : Date.UTC(2026, 0, 2) + created * 60_000,
    allowedIPs: ['10.5.0.1/32'],
    publicKey: KEYS[3],
    presharedKey: undefined,
    persistentKeepalive: undefined,
    endpoint: undefined,
    ...rest,
  };
}

describe('unit: external Peers', () => {
  describe('Kilo validation of one Peer', () => {
    const valid: Array<[string, ExternalPeer, Partial<ValidPeer>]> = [
      [
        'minimal roaming peer',
        peer('p'),
        {
          name: 'p',
          createdAt: Date.UTC(2026, 0, 2),
          publicKey: KEYS[3],
          presharedKey: undefined,
          endpoint: undefined,
          allowedIPs: ['10.5.0.1/32'],
          persistentKeepalive: 0,
        },
      ],
      [
        'host bits cleared, duplicates and order normalised',
        peer('p', { allowedIPs: ['fd05::1/128', '10.5.1.7/24', '10.5.0.1/32', '10.5.1.0/24'] }),
        { allowedIPs: ['10.5.0.1/32', '10.5.1.0/24', 'fd05::1/128'] },
      ],
      [
        'keepalive and preshared key',
        peer('p', { persistentKeepalive: 25, presharedKey: KEYS[5] }),
        { persistentKeepalive: 25, presharedKey: KEYS[5] },
      ],
      ['empty preshared key means none', peer('p', { presharedKey: '' }), { presharedKey: undefined }],
      [
        'endpoint by IP',
        peer('p', { endpoint: { dns: undefined, ip: '198.51.100.7', port: 51820 } }),
        { endpoint: '198.51.100.7:51820' },
      ],
      [
        'endpoint by IPv6',
        peer('p', { endpoint: { dns: undefined, ip: '2001:db8::7', port: 4500 } }),
        { endpoint: '[2001:db8::7]:4500' },
      ],
      [
        'endpoint by DNS',
        peer('p', { endpoint: { dns: 'vpn.example.com', ip: undefined, port: 51820 } }),
        { endpoint: 'vpn.example.com:51820' },
      ],
      [
        'both dns and ip: the DNS name wins, like Kilo',
        peer('p', { endpoint: { dns: 'vpn.example.com', ip: '198.51.100.7', port: 51820 } }),
        { endpoint: 'vpn.example.com:51820' },
      ],
    ];
    for (const [name, input, want] of valid) {
      it(`accepts: ${name}`, () => {
        const r = validatePeer(input);
        assert.ok(r.ok, r.ok ? '' : r.skip.message);
        for (const [k, v] of Object.entries(want))
          assert.deepEqual((r.peer as unknown as Record<string, unknown>)[k], v, k);
      });
    }

    const invalid: Array<[string, ExternalPeer, string, RegExp]> = [
      [
        "the seeds' placeholder key",
        peer('my-device', { publicKey: 'YOUR_PUBLIC_KEY_HERE' }),
        'invalid-public-key',
        /^invalid public key "YOUR_PUBLIC_KEY_HERE": expected 44 characters of base64 encoding 32 bytes/,
      ],
      ['no public key', peer('p', { publicKey: undefined }), 'invalid-public-key', /spec\.publicKey is missing/],
      [
        'a key of 31 bytes',
        peer('p', { publicKey: Buffer.alloc(31, 1).toString('base64') }),
        'invalid-public-key',
        /invalid public key/,
      ],
      ['a bad preshared key', peer('p', { presharedKey: 'secret' }), 'invalid-preshared-key', /invalid preshared key/],
      ['no allowedIPs', peer('p', { allowedIPs: undefined }), 'invalid-allowed-ips', /missing or empty/],
      ['empty allowedIPs', peer('p', { allowedIPs: [] }), 'invalid-allowed-ips', /missing or empty/],
      [
        'an address without prefix',
        peer('p', { allowedIPs: ['10.5.0.1'] }),
        'invalid-allowed-ips',
        /"10\.5\.0\.1" is not a CIDR/,
      ],
      [
        'garbage CIDR',
        peer('p', { allowedIPs: ['10.5.0.0/24', 'banana/8'] }),
        'invalid-allowed-ips',
        /"banana\/8" is not a CIDR/,
      ],
      ['prefix too long', peer('p', { allowedIPs: ['10.5.0.1/33'] }), 'invalid-allowed-ips', /not a CIDR/],
      ['negative keepalive', peer('p', { persistentKeepalive: -1 }), 'invalid-keepalive', /persistentKeepalive -1/],
      [
        'fractional keepalive',
        peer('p', { persistentKeepalive: 2.5 }),
        'invalid-keepalive',
        /persistentKeepalive 2\.5/,
      ],
      [
        'keepalive not a number',
        peer('p', { persistentKeepalive: NaN }),
        'invalid-keepalive',
        /persistentKeepalive NaN/,
      ],
      [
        'endpoint with neither dns nor ip',
        peer('p', { endpoint: { dns: undefined, ip: undefined, port: 51820 } }),
        'invalid-endpoint',
        /neither dns nor ip/,
      ],
      [
        'endpoint dns not RFC 1123',
        peer('p', { endpoint: { dns: 'VPN_Example.com', ip: undefined, port: 51820 } }),
        'invalid-endpoint',
        /not an RFC 1123 subdomain/,
      ],
      [
        'endpoint ip not an IP',
        peer('p', { endpoint: { dns: undefined, ip: '300.1.1.1', port: 51820 } }),
        'invalid-endpoint',
        /is not an IP address/,
      ],
      [
        'endpoint port 0',
        peer('p', { endpoint: { dns: undefined, ip: '198.51.100.7', port: 0 } }),
        'invalid-endpoint',
        /port 0 is not in 1-65535/,
      ],
      [
        'endpoint port 65536',
        peer('p', { endpoint: { dns: undefined, ip: '198.51.100.7', port: 65536 } }),
        'invalid-endpoint',
        /port 65536/,
      ],
      [
        'endpoint without port',
        peer('p', { endpoint: { dns: undefined, ip: '198.51.100.7', port: undefined } }),
        'invalid-endpoint',
        /port \(missing\)/,
      ],
    ];
    for (const [name, input, reason, message] of invalid) {
      it(`rejects: ${name}`, () => {
        const r = validatePeer(input);
        assert.ok(!r.ok, 'expected a rejection');
        assert.equal(r.skip.reason, reason);
        assert.equal(r.skip.kind, 'peer');
        assert.equal(r.skip.whole, true);
        assert.equal(r.skip.name, input.name);
        assert.match(r.skip.message, message);
      });
    }
  });

  describe('conflicts with the cluster and other Peers (one seniority rule for Nodes and Peers)', () => {
    const decide = (peers: ExternalPeer[], nodes = NODES, settings: MeshSettings = SETTINGS) =>
      decideMembership(nodes, peers, settings);
    const cases: Array<[string, ExternalPeer[], Array<[string, string, RegExp]>, string[]]> = [
      ['a valid peer is accepted', [peer('p')], [], ['p']],
      [
        "overlaps an older Node's PodCIDR",
        [peer('p', { allowedIPs: ['10.244.2.128/25'] })],
        [['p', 'allowed-ips-conflict', /allowedIPs 10\.244\.2\.128\/25 overlaps 10\.244\.2\.0\/24 of older Node b/]],
        [],
      ],
      [
        'wider than the minimum prefix (0.0.0.0/0)',
        [peer('p', { allowedIPs: ['0.0.0.0/0'] })],
        [['p', 'allowed-ips-refused', /allowedIPs 0\.0\.0\.0\/0 is wider than \/16/]],
        [],
      ],
      [
        '::/0',
        [peer('p', { allowedIPs: ['::/0'] })],
        [['p', 'allowed-ips-refused', /allowedIPs ::\/0 is wider than \/48/]],
        [],
      ],
      [
        '128.0.0.0/1',
        [peer('p', { allowedIPs: ['128.0.0.0/1'] })],
        [['p', 'allowed-ips-refused', /is wider than \/16/]],
        [],
      ],
      [
        "contains a Node's overlay address",
        [peer('p', { allowedIPs: ['100.64.2.0/24'] })],
        [['p', 'allowed-ips-refused', /overlaps the overlay 100\.64\.0\.0\/10/]],
        [],
      ],
      [
        'unused overlay space is refused too',
        [peer('p', { allowedIPs: ['100.64.9.9/32'] })],
        [['p', 'allowed-ips-refused', /overlaps the overlay/]],
        [],
      ],
      [
        "contains a Node's InternalIP",
        [peer('p', { allowedIPs: ['192.0.2.0/24'] })],
        [
          [
            'p',
            'allowed-ips-refused',
            /allowedIPs 192\.0\.2\.0\/24 contains 192\.0\.2\.11, the InternalIP of Node a, an older claim/,
          ],
        ],
        [],
      ],
      [
        'the metadata address (link-local)',
        [peer('p', { allowedIPs: ['169.254.169.254/32'] })],
        [['p', 'allowed-ips-refused', /overlaps link-local addresses/]],
        [],
      ],
      [
        'loopback',
        [peer('p', { allowedIPs: ['127.0.0.1/32'] })],
        [['p', 'allowed-ips-refused', /overlaps loopback/]],
        [],
      ],
      [
        'multicast',
        [peer('p', { allowedIPs: ['239.1.1.1/32'] })],
        [['p', 'allowed-ips-refused', /overlaps multicast/]],
        [],
      ],
      [
        "uses an older Node's public key",
        [peer('p', { publicKey: KEYS[1] })],
        [['p', 'duplicate-public-key', /duplicate public key: older Node b already uses/]],
        [],
      ],
      [
        'the older Peer keeps a duplicated key',
        [peer('young', { created: 5, allowedIPs: ['10.5.0.2/32'] }), peer('old', { created: 1 })],
        [['young', 'duplicate-public-key', /older Peer old already uses/]],
        ['old'],
      ],
      [
        'the older Peer keeps an overlapping range',
        [peer('young', { created: 5, publicKey: KEYS[4], allowedIPs: ['10.5.0.0/24'] }), peer('old', { created: 1 })],
        [['young', 'allowed-ips-conflict', /overlaps 10\.5\.0\.1\/32 of older Peer old/]],
        ['old'],
      ],
      [
        'same age: the name decides',
        [peer('b-peer', { publicKey: KEYS[4] }), peer('a-peer', { publicKey: KEYS[4], allowedIPs: ['10.5.0.2/32'] })],
        [['b-peer', 'duplicate-public-key', /Peer a-peer/]],
        ['a-peer'],
      ],
      [
        'an invalid Peer does not block a valid one',
        [
          peer('bad', { created: 1, publicKey: 'YOUR_PUBLIC_KEY_HERE' }),
          peer('good', { created: 2, allowedIPs: ['10.5.0.1/32'] }),
        ],
        [['bad', 'invalid-public-key', /invalid public key/]],
        ['good'],
      ],
    ];
    for (const [name, peers, skipped, accepted] of cases) {
      it(name, () => {
        const m = decide(peers);
        assert.deepEqual(
          m.externalPeers.map((p) => p.name),
          accepted,
        );
        const peerSkips = m.skipped.filter((s) => s.kind === 'peer');
        assert.equal(peerSkips.length, skipped.length, JSON.stringify(peerSkips));
        skipped.forEach(([who, reason, message], i) => {
          const s = peerSkips[i]!;
          assert.equal(s.name, who);
          assert.equal(s.reason, reason);
          assert.match(s.message, message);
        });
      });
    }

    it('a range [overlay] protected names is refused, whoever claims it', () => {
      const m = decide([peer('p', { allowedIPs: ['10.9.0.0/24'] })], NODES, {
        ...SETTINGS,
        protectedRanges: ['10.9.0.40/32'],
      });
      assert.match(
        m.skipped.find((s) => s.kind === 'peer')!.message,
        /overlaps 10\.9\.0\.40\/32, which \[overlay\] protected keeps out of the tunnel/,
      );
    });

    it('published and forced endpoints never protect (anyone can write them): a Peer may take a range holding one', () => {
      const natted = meshNode('n', {
        ip: '192.0.2.19',
        created: 9,
        key: KEYS[5],
        endpoint: '10.7.0.99:51820',
        annotations: { [KILO_FORCE_ENDPOINT]: '10.7.0.98:51820' },
      });
      const p = [peer('p', { allowedIPs: ['10.7.0.96/29'] })];
      for (const publishedEndpoints of ['addresses', 'any'] as const) {
        assert.deepEqual(
          decide(p, [...NODES, natted], { ...SETTINGS, publishedEndpoints }).externalPeers.map((x) => x.name),
          ['p'],
          publishedEndpoints,
        );
      }
    });

    it('an older Peer keeps its range against a younger Node, whose PodCIDR is dropped (not the other way round)', () => {
      const admin = peer('site', { created: -60 * 24 * 400, publicKey: KEYS[4], allowedIPs: ['10.244.9.0/24'] });
      const copycat = meshNode('d', { ip: '192.0.2.14', created: 10, pods: ['10.244.9.0/24'], key: KEYS[5] });
      const m = decide([admin], [...NODES, copycat]);
      assert.deepEqual(
        m.externalPeers.map((x) => x.name),
        ['site'],
      );
      assert.deepEqual(m.members.find((x) => x.name === 'd')!.podCIDRs, []);
      assert.match(
        m.skipped.find((s) => s.name === 'd')!.message,
        /PodCIDR 10\.244\.9\.0\/24 overlaps 10\.244\.9\.0\/24 of older Peer site; dropped/,
      );
    });

    it("this node's own key counts even before it is published", () => {
      const bare = meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'] });
      const m = decideMembership([bare, nodeB], [peer('p', { publicKey: KEYS[0] })], SETTINGS, {
        name: 'a',
        publicKey: KEYS[0],
      });
      assert.equal(m.skipped.find((s) => s.kind === 'peer')?.reason, 'duplicate-public-key');
    });

    it('an endpoint name is resolved by the daemon: left out while it does not resolve, the address once it does', () => {
      const named = peer('site', { endpoint: { dns: 'vpn.example.com', ip: undefined, port: 4500 } });
      const unresolved = decide([named], NODES, { ...SETTINGS, resolved: new Map() });
      assert.deepEqual(unresolved.externalPeers, []);
      assert.match(
        unresolved.skipped.find((s) => s.kind === 'peer')!.message,
        /endpoint name "vpn\.example\.com" does not resolve \(yet\); the Peer is left out until it does/,
      );
      const resolved = decide([named], NODES, {
        ...SETTINGS,
        resolved: new Map([['vpn.example.com', '198.51.100.77']]),
      });
      assert.equal(resolved.externalPeers[0]!.endpoint, '198.51.100.77:4500');
      assert.equal(
        decide([named]).externalPeers[0]!.endpoint,
        'vpn.example.com:4500',
        'the operator commands keep the name',
      );
    });
  });

  describe('desired state with Peers', () => {
    const laptop = peer('laptop', {
      allowedIPs: ['10.5.0.2/32', 'fd05::2/128'],
      persistentKeepalive: 25,
      presharedKey: KEYS[5],
    });
    const site = peer('site', {
      publicKey: KEYS[4],
      allowedIPs: ['192.168.50.0/24'],
      endpoint: { dns: undefined, ip: '198.51.100.7', port: 51820 },
      created: 1,
    });
    const bad = peer('my-device', { publicKey: 'YOUR_PUBLIC_KEY_HERE', allowedIPs: ['10.5.0.9/32'] });

    it('every valid Peer is a peer with routes for its allowedIPs; invalid ones are skipped', () => {
      const d = computeDesired({ name: 'a', publicKey: KEYS[0] }, NODES, SETTINGS, [bad, site, laptop]);
      assert.deepEqual(
        d.peers.filter((p) => p.kind === 'peer'),
        [
          {
            kind: 'peer',
            name: 'laptop',
            publicKey: KEYS[3],
            endpoint: undefined,
            allowedIPs: ['10.5.0.2/32', 'fd05::2/128'],
            persistentKeepalive: 25,
            presharedKey: KEYS[5],
          },
          {
            kind: 'peer',
            name: 'site',
            publicKey: KEYS[4],
            endpoint: '198.51.100.7:51820',
            allowedIPs: ['192.168.50.0/24'],
            persistentKeepalive: 0,
          },
        ],
      );
      assert.deepEqual(
        d.peers.map((p) => p.name),
        ['b', 'c', 'laptop', 'site'],
        'sorted by name',
      );
      assert.deepEqual(
        d.routes.filter((r) => r.kind === 'peer'),
        [
          { dst: '10.5.0.2/32', dev: 'wg0', via: 'laptop', kind: 'peer' },
          { dst: 'fd05::2/128', dev: 'wg0', via: 'laptop', kind: 'peer' },
          { dst: '192.168.50.0/24', dev: 'wg0', via: 'site', kind: 'peer' },
        ],
        'peer by peer',
      );
      assert.deepEqual(
        d.skipped.filter((s) => s.kind === 'peer').map((s) => [s.name, s.reason]),
        [['my-device', 'invalid-public-key']],
      );
      // Node peers are unchanged by the presence of Peers.
      const without = computeDesired({ name: 'a', publicKey: KEYS[0] }, NODES, SETTINGS);
      assert.deepEqual(
        d.peers.filter((p) => p.kind === 'node'),
        without.peers,
      );
    });

    it('every node reaches the same verdicts and adds the same Peers', () => {
      const peers = [bad, site, laptop, peer('thief', { publicKey: KEYS[1], allowedIPs: ['10.5.0.7/32'] })];
      const views = NODES.map((n) =>
        computeDesired({ name: n.name, publicKey: KEYS[NODES.indexOf(n)]! }, NODES, SETTINGS, peers),
      );
      const verdicts = views.map((d) =>
        JSON.stringify({
          skipped: d.skipped.filter((s) => s.kind === 'peer'),
          peers: d.peers.filter((p) => p.kind === 'peer'),
        }),
      );
      assert.equal(new Set(verdicts).size, 1, verdicts.join('\n'));
      assert.match(views[0]!.skipped.find((s) => s.name === 'thief')!.message, /older Node b already uses/);
    });
  });

  describe('the cluster-wide view (showconf, graph)', () => {
    it('lists every node as other nodes see it, and the valid Peers', () => {
      const v = decideMembership(NODES, [peer('laptop'), peer('my-device', { publicKey: 'x' })], SETTINGS);
      assert.deepEqual(
        v.members.map((n) => [n.name, n.publicKey, n.overlayAddress, n.endpoint, n.podCIDRs]),
        [
          ['a', KEYS[0], '100.64.2.11', '192.0.2.11:51820', ['10.244.1.0/24']],
          ['b', KEYS[1], '100.64.2.12', '203.0.113.12:51820', ['10.244.2.0/24']],
          ['c', KEYS[2], '100.64.2.13', '192.0.2.13:51820', ['10.244.3.0/24']],
        ],
      );
      // The same as what a node's desired state holds for its peers.
      const fromA = computeDesired({ name: 'a', publicKey: KEYS[0] }, NODES, SETTINGS);
      for (const p of fromA.peers) {
        const n = v.members.find((x) => x.name === p.name)!;
        assert.equal(p.endpoint, n.endpoint);
        assert.deepEqual(p.allowedIPs, [...n.podCIDRs, `${n.overlayAddress}/32`]);
      }
      assert.deepEqual(
        v.externalPeers.map((p) => p.name),
        ['laptop'],
      );
      assert.deepEqual(
        v.skipped.map((s) => [s.kind, s.name, s.reason]),
        [['peer', 'my-device', 'invalid-public-key']],
      );
      assert.equal(formatCidr(v.overlay), '100.64.0.0/10');
    });

    it('leaves out Nodes without a key and drops conflicting PodCIDRs of younger Nodes', () => {
      const d = meshNode('d', { ip: '192.0.2.14', created: 4, pods: ['10.244.3.0/25', '10.244.4.0/24'], key: KEYS[4] });
      const e = meshNode('e', { ip: '192.0.2.15', created: 5, pods: ['10.244.5.0/24'] });
      const v = decideMembership([...NODES, d, e], [], SETTINGS);
      assert.deepEqual(
        v.members.map((n) => n.name),
        ['a', 'b', 'c', 'd'],
      );
      assert.deepEqual(v.members.find((n) => n.name === 'd')!.podCIDRs, ['10.244.4.0/24']);
      assert.deepEqual(
        v.skipped.map((s) => [s.name, s.reason, s.whole]),
        [
          ['d', 'pod-cidr-conflict', false],
          ['e', 'no-public-key', true],
        ],
      );
    });
  });

  describe('translation of Peer objects', () => {
    it('a Kilo Peer manifest (as JSON) becomes a ExternalPeer', () => {
      assert.deepEqual(
        toMeshPeer({
          metadata: { name: 'squat', creationTimestamp: '2026-01-02T00:00:00Z' },
          spec: {
            allowedIPs: ['10.5.0.1/32'],
            publicKey: KEYS[3],
            persistentKeepalive: 10,
            presharedKey: KEYS[5],
            endpoint: { dnsOrIP: { ip: '198.51.100.7' }, port: 51820 },
          },
        }),
        {
          name: 'squat',
          createdAt: Date.UTC(2026, 0, 2),
          allowedIPs: ['10.5.0.1/32'],
          publicKey: KEYS[3],
          presharedKey: KEYS[5],
          persistentKeepalive: 10,
          endpoint: { dns: undefined, ip: '198.51.100.7', port: 51820 },
        },
      );
    });

    it('keeps wrong types so validation can name them; drops objects without a valid name', () => {
      const p = toMeshPeer({
        metadata: { name: 'x' },
        spec: { allowedIPs: ['10.5.0.1/32', 7], publicKey: 12, persistentKeepalive: '25', endpoint: { port: 'x' } },
      })!;
      assert.deepEqual(p.allowedIPs, ['10.5.0.1/32', '7']);
      assert.equal(p.publicKey, '12');
      assert.ok(Number.isNaN(p.persistentKeepalive));
      assert.deepEqual(p.endpoint, { dns: undefined, ip: undefined, port: NaN });
      assert.equal(p.createdAt, Infinity);
      assert.equal(toMeshPeer({ metadata: {} }), undefined);
      assert.equal(toMeshPeer({ metadata: { name: 'evil\n[Peer]' } }), undefined);
      assert.equal(toMeshPeer({ metadata: { name: 'no-spec' } })?.publicKey, undefined);
    });
  });
});
