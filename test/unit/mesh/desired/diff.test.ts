/**
 * The diffs of the pure core, directly: peer changes (add, update, remove, with the endpoint
 * rules that keep a roamed peer where it is), route changes (own routes only, someone else's
 * route is a conflict, never overwritten; an own route that changes its way is replaced in
 * place), interface drift, and CIDR canonicalisation.
 */
import assert from 'node:assert/strict';
import {
  canonicalCidrs,
  diffKnownRoutes,
  diffPeers,
  diffRoutes,
  driftRepair,
  interfaceDrift,
  type Drift,
  type DriftRepair,
  routeKey,
  type PeerChange,
  type RouteChange,
} from '../../../../service/src/mesh/desired/diff.js';
import type {
  InterfaceStatus,
  LinkStatus,
  PeerStatus,
  RouteStatus,
} from '../../../../service/src/mesh/observations/device.js';
import type { DesiredInterface, DesiredPeer, DesiredRoute } from '../../../../service/src/mesh/types.js';
import { KEYS } from '../../../support/fakes/fixtures.js';

/** A desired Node peer with valid defaults. */
function peer(name: string, o: Partial<DesiredPeer> = {}): DesiredPeer {
  return {
    kind: 'node',
    name,
    publicKey: KEYS[0],
    endpoint: '192.0.2.11:51820',
    allowedIPs: ['10.244.1.0/24', '100.64.0.11/32'],
    persistentKeepalive: 0,
    ...o,
  };
}

/** What the device shows for `p` once it was applied (overridable field by field). */
function shown(p: DesiredPeer, o: Partial<PeerStatus> = {}): PeerStatus {
  return {
    publicKey: p.publicKey,
    hasPresharedKey: Boolean(p.presharedKey),
    endpoint: p.endpoint,
    allowedIPs: canonicalCidrs(p.allowedIPs),
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: p.persistentKeepalive,
    ...o,
  };
}

const applied = (...peers: DesiredPeer[]): Map<string, DesiredPeer> => new Map(peers.map((p) => [p.publicKey, p]));

/** What `wg set` would leave on the device after `changes` (endpoints only when the change sets them). */
function applyPeers(device: readonly PeerStatus[], changes: readonly PeerChange[]): PeerStatus[] {
  const out = new Map(device.map((p) => [p.publicKey, p]));
  for (const c of changes) {
    if (c.op === 'remove') {
      out.delete(c.publicKey);
      continue;
    }
    const before = out.get(c.peer.publicKey);
    const endpoint = c.peer.endpoint && (c.op === 'add' || c.setEndpoint) ? c.peer.endpoint : before?.endpoint;
    out.set(c.peer.publicKey, shown(c.peer, { endpoint }));
  }
  return [...out.values()];
}

describe('unit: diffs', () => {
  describe('canonicalCidrs', () => {
    const cases: Array<[string, string[], string[]]> = [
      ['empty', [], []],
      [
        'IPv4 before IPv6, then by network, then by prefix',
        ['fd00::/64', '10.0.0.0/16', '10.0.0.0/8', '9.0.0.0/8'],
        ['9.0.0.0/8', '10.0.0.0/8', '10.0.0.0/16', 'fd00::/64'],
      ],
      ['host bits cleared', ['10.244.1.7/24'], ['10.244.1.0/24']],
      ['IPv6 compressed and lower-cased', ['FD00:0:0:0::1/128', '2001:DB8:0::/32'], ['2001:db8::/32', 'fd00::1/128']],
      [
        'duplicates after normalisation dropped',
        ['10.244.1.0/24', '10.244.1.9/24', '10.244.1.0/24'],
        ['10.244.1.0/24'],
      ],
      ['text that is no CIDR is kept as it is', ['banana', '10.0.0.0/8'], ['10.0.0.0/8', 'banana']],
    ];
    for (const [name, input, want] of cases) {
      it(name, () => assert.deepEqual(canonicalCidrs(input), want));
    }
  });

  describe('diffPeers', () => {
    it('no changes when the device holds exactly what was applied, with or without lastApplied', () => {
      const a = peer('a');
      const b = peer('b', {
        publicKey: KEYS[1],
        endpoint: '192.0.2.12:51820',
        allowedIPs: ['10.244.2.0/24', '100.64.0.12/32'],
        persistentKeepalive: 25,
        presharedKey: KEYS[5],
      });
      assert.deepEqual(diffPeers([a, b], [shown(a), shown(b)], applied(a, b)), []);
      assert.deepEqual(diffPeers([a, b], [shown(a), shown(b)]), []);
      assert.deepEqual(diffPeers([], []), []);
    });

    it('adds peers the device lacks, saying whether each is a Node or a Peer', () => {
      const a = peer('a');
      const laptop = peer('laptop', {
        kind: 'peer',
        publicKey: KEYS[3],
        endpoint: undefined,
        allowedIPs: ['10.5.0.2/32'],
      });
      assert.deepEqual(diffPeers([a, laptop], []), [
        { op: 'add', peer: a, reason: 'new Node a' },
        { op: 'add', peer: laptop, reason: 'new Peer laptop' },
      ]);
    });

    describe('updates of one peer (device state vs desired)', () => {
      const base = peer('a');
      const cases: Array<[string, DesiredPeer, PeerStatus, Map<string, DesiredPeer> | undefined, string]> = [
        [
          'allowed IPs: a PodCIDR added',
          peer('a', { allowedIPs: ['10.244.1.0/24', '10.244.9.0/24', '100.64.0.11/32'] }),
          shown(base),
          applied(base),
          'a: allowed IPs 10.244.1.0/24,100.64.0.11/32 → 10.244.1.0/24,10.244.9.0/24,100.64.0.11/32',
        ],
        [
          'allowed IPs: the device has none',
          base,
          shown(base, { allowedIPs: [] }),
          applied(base),
          'a: allowed IPs (none) → 10.244.1.0/24,100.64.0.11/32',
        ],
        [
          'keepalive turned on',
          peer('a', { persistentKeepalive: 25 }),
          shown(base),
          applied(base),
          'a: keepalive 0 → 25',
        ],
        ['keepalive turned off', base, shown(base, { persistentKeepalive: 25 }), applied(base), 'a: keepalive 25 → 0'],
        [
          'preshared key added',
          peer('a', { presharedKey: KEYS[5] }),
          shown(base),
          applied(base),
          'a: preshared key added',
        ],
        [
          'preshared key removed',
          base,
          shown(base, { hasPresharedKey: true }),
          applied(peer('a', { presharedKey: KEYS[5] })),
          'a: preshared key removed',
        ],
        [
          'preshared key changed since it was applied',
          peer('a', { presharedKey: KEYS[4] }),
          shown(base, { hasPresharedKey: true }),
          applied(peer('a', { presharedKey: KEYS[5] })),
          'a: preshared key changed',
        ],
        [
          'every difference in one reason, in a fixed order',
          peer('a', { allowedIPs: ['10.244.1.0/24'], persistentKeepalive: 25, presharedKey: KEYS[5] }),
          shown(base, { endpoint: undefined }),
          applied(base),
          'a: allowed IPs 10.244.1.0/24,100.64.0.11/32 → 10.244.1.0/24; keepalive 0 → 25; preshared key added; endpoint (none) → 192.0.2.11:51820',
        ],
      ];
      for (const [name, want, device, last, reason] of cases) {
        it(name, () => {
          const changes = diffPeers([want], [device], last);
          assert.equal(changes.length, 1, JSON.stringify(changes));
          const c = changes[0]!;
          assert.equal(c.op, 'update');
          assert.equal(c.reason, reason);
          if (c.op === 'update') assert.equal(c.peer, want);
        });
      }

      const unchanged: Array<[string, DesiredPeer, PeerStatus, Map<string, DesiredPeer> | undefined]> = [
        [
          'allowed IPs in another order and with host bits set',
          peer('a', { allowedIPs: ['100.64.0.11/32', '10.244.1.7/24'] }),
          shown(base),
          applied(base),
        ],
        [
          'allowed IPs listed twice',
          peer('a', { allowedIPs: ['10.244.1.0/24', '100.64.0.11/32', '10.244.1.0/24'] }),
          shown(base),
          applied(base),
        ],
        [
          'the same preshared key as applied',
          peer('a', { presharedKey: KEYS[5] }),
          shown(base, { hasPresharedKey: true }),
          applied(peer('a', { presharedKey: KEYS[5] })),
        ],
        [
          'a preshared key on adoption (the device does not tell which key it holds)',
          peer('a', { presharedKey: KEYS[5] }),
          shown(base, { hasPresharedKey: true }),
          undefined,
        ],
        [
          'only traffic counters and handshakes differ',
          base,
          shown(base, { latestHandshake: 1_700_000_000, rxBytes: 1234, txBytes: 5678 }),
          applied(base),
        ],
      ];
      for (const [name, want, device, last] of unchanged) {
        it(`no change: ${name}`, () => assert.deepEqual(diffPeers([want], [device], last), []));
      }
    });

    describe('endpoints: re-set only when desired changed, on adoption of a mismatching literal, or when the device has none', () => {
      const A = '192.0.2.11:51820';
      const B = '198.51.100.7:40000'; // where a roamed peer (behind NAT) was last seen
      const C = '192.0.2.99:51820';
      // [name, desired, last applied (null: no entry = adoption; undefined: applied as roaming), device, endpoint set?]
      const cases: Array<[string, string | undefined, string | undefined | null, string | undefined, boolean]> = [
        ['unchanged and where it was set', A, A, A, false],
        ['roamed behind NAT: the device shows another ip:port, desired as applied → not pulled back', A, A, B, false],
        ['desired changed since applied', C, A, A, true],
        ['desired changed since applied, while the peer had roamed', C, A, B, true],
        ['desired appeared for a peer applied as roaming', A, undefined, B, true],
        ['the device has none (e.g. after a restart of the interface)', A, A, undefined, true],
        ['adoption: the device agrees with the literal desired endpoint', A, null, A, false],
        ['adoption: the device disagrees with the literal desired endpoint', A, null, B, true],
        ['adoption: same address, another port', A, null, '192.0.2.11:51821', true],
        ['adoption: the device has none', A, null, undefined, true],
        [
          'adoption: a DNS name is not compared with the address it resolved to',
          'vpn.example.com:51820',
          null,
          '203.0.113.9:51820',
          false,
        ],
        ['adoption: a DNS name when the device has none', 'vpn.example.com:51820', null, undefined, true],
        [
          'a DNS name changed since applied',
          'vpn2.example.com:51820',
          'vpn.example.com:51820',
          '203.0.113.9:51820',
          true,
        ],
        [
          'a DNS name as applied, device shows the resolved address',
          'vpn.example.com:51820',
          'vpn.example.com:51820',
          '203.0.113.9:51820',
          false,
        ],
        [
          'adoption: IPv6 compared canonically (case, zero groups)',
          '[2001:DB8:0:0:0:0:0:7]:51820',
          null,
          '[2001:db8::7]:51820',
          false,
        ],
        ['adoption: IPv6 with leading zeros in a group', '[2001:0db8::0007]:51820', null, '[2001:db8::7]:51820', false],
        ['adoption: another IPv6 address', '[2001:db8::7]:51820', null, '[2001:db8::8]:51820', true],
        ['adoption: same IPv6 address, another port', '[2001:db8::7]:51820', null, '[2001:db8::7]:51821', true],
        ['a roaming peer (no desired endpoint) keeps what the device has', undefined, undefined, B, false],
        ['a roaming peer with no endpoint anywhere', undefined, null, undefined, false],
        ['a peer that became roaming: the last endpoint stays (wg cannot unset it)', undefined, A, A, false],
      ];
      for (const [name, want, last, device, set] of cases) {
        it(`${set ? 'set' : 'left alone'}: ${name}`, () => {
          const desired = peer('a', { endpoint: want });
          const lastApplied = last === null ? new Map<string, DesiredPeer>() : applied(peer('a', { endpoint: last }));
          const changes = diffPeers([desired], [shown(desired, { endpoint: device })], lastApplied);
          if (!set) {
            assert.deepEqual(changes, []);
            return;
          }
          assert.deepEqual(changes, [
            { op: 'update', peer: desired, setEndpoint: true, reason: `a: endpoint ${device ?? '(none)'} → ${want}` },
          ]);
        });
      }

      it("another change does not drag a roamed peer's endpoint along", () => {
        const desired = peer('a', { endpoint: A, persistentKeepalive: 25 });
        const changes = diffPeers([desired], [shown(peer('a'), { endpoint: B })], applied(peer('a', { endpoint: A })));
        assert.deepEqual(changes, [{ op: 'update', peer: desired, setEndpoint: false, reason: 'a: keepalive 0 → 25' }]);
      });

      it('lastApplied undefined altogether counts as adoption', () => {
        const desired = peer('a', { endpoint: A });
        assert.equal(diffPeers([desired], [shown(desired, { endpoint: B })]).length, 1);
        assert.deepEqual(diffPeers([desired], [shown(desired, { endpoint: B })], applied(desired)), []);
      });
    });

    describe('removals and their reasons', () => {
      const b = peer('b', { publicKey: KEYS[1] });
      const bNewKey = peer('b', { publicKey: KEYS[2] });

      it('a Node that published a new public key: the new key is added, the old one removed', () => {
        const changes = diffPeers([bNewKey], [shown(b)], applied(b));
        assert.deepEqual(changes, [
          { op: 'add', peer: bNewKey, reason: 'new Node b' },
          { op: 'remove', publicKey: KEYS[1], name: 'b', reason: 'b published a new public key' },
        ]);
      });

      it('a Node that is gone (or no longer valid)', () => {
        assert.deepEqual(diffPeers([], [shown(b)], applied(b)), [
          { op: 'remove', publicKey: KEYS[1], name: 'b', reason: 'b is gone or no longer valid' },
        ]);
      });

      it('a peer this process never applied (found on the device at adoption)', () => {
        assert.deepEqual(diffPeers([], [shown(b)]), [
          { op: 'remove', publicKey: KEYS[1], name: undefined, reason: 'not a current Node or Peer' },
        ]);
        assert.deepEqual(diffPeers([], [shown(b)], new Map()), [
          { op: 'remove', publicKey: KEYS[1], name: undefined, reason: 'not a current Node or Peer' },
        ]);
      });

      it('a Node that is gone is not "re-keyed" because a Peer of the same name exists', () => {
        const peerB = peer('b', { kind: 'peer', publicKey: KEYS[3], endpoint: undefined, allowedIPs: ['10.5.0.2/32'] });
        const changes = diffPeers([peerB], [shown(b), shown(peerB)], applied(b, peerB));
        assert.deepEqual(changes, [
          { op: 'remove', publicKey: KEYS[1], name: 'b', reason: 'b is gone or no longer valid' },
        ]);
      });

      it('removals come after adds and updates, in device order', () => {
        const a = peer('a');
        const c = peer('c', { publicKey: KEYS[3] });
        const d = peer('d', { publicKey: KEYS[4] });
        const changes = diffPeers(
          [a, peer('e', { publicKey: KEYS[5] })],
          [shown(d), shown(a, { persistentKeepalive: 5 }), shown(c)],
          applied(a, c, d),
        );
        assert.deepEqual(
          changes.map((x) => `${x.op} ${x.op === 'remove' ? x.name : x.peer.name}`),
          ['update a', 'add e', 'remove d', 'remove c'],
        );
      });
    });

    it('applying the changes converges: the same input again gives no changes', () => {
      const a = peer('a', { endpoint: '192.0.2.11:51820' });
      const b = peer('b', { publicKey: KEYS[1], endpoint: 'vpn.example.com:51820', persistentKeepalive: 25 });
      const c = peer('c', {
        publicKey: KEYS[2],
        allowedIPs: ['10.244.3.0/24', '100.64.0.13/32'],
        presharedKey: KEYS[5],
      });
      const desired = [a, b, c];
      const device = [
        shown(peer('a', { endpoint: '198.51.100.1:1' })),
        shown(peer('old', { publicKey: KEYS[4] })),
        shown(c, { allowedIPs: [] }),
      ];
      const first = diffPeers(desired, device);
      assert.ok(first.length > 0);
      const after = applyPeers(device, first);
      assert.deepEqual(diffPeers(desired, after, applied(...desired)), []);
      assert.deepEqual(diffPeers(desired, after, applied(...desired)), []);
    });
  });

  describe('diffRoutes', () => {
    const OWN = '77';
    const route = (dst: string, via: string, dev = 'wg0'): DesiredRoute => ({ dst, dev, via });
    const seen = (dst: string, dev: string | undefined, protocol = OWN): RouteStatus => ({ dst, dev, protocol });

    it('adds desired routes that are missing, with the PodCIDR and the peer as the reason', () => {
      const r1 = route('10.244.1.0/24', 'a');
      const r2 = route('fd00:1::/64', 'a');
      const r3 = { ...route('10.5.0.2/32', 'laptop'), kind: 'peer' as const };
      assert.deepEqual(diffRoutes([r1, r2, r3], [seen('0.0.0.0/0', 'eth0', 'dhcp')], OWN), [
        { op: 'add', route: r1, reason: 'PodCIDR 10.244.1.0/24 of a' },
        { op: 'add', route: r2, reason: 'PodCIDR fd00:1::/64 of a' },
        { op: 'add', route: r3, reason: 'PodCIDR 10.5.0.2/32 of laptop' },
      ]);
    });

    it('deletes only its own routes that no desired route matches', () => {
      const stale = seen('10.244.9.0/24', 'wg0');
      const observed = [
        stale,
        seen('10.244.8.0/24', 'wg0', 'boot'),
        seen('10.244.7.0/24', 'wg0', 'static'),
        seen('10.244.6.0/24', 'eth0', 'kernel'),
        seen('10.244.5.0/24', 'wg0', ''),
      ];
      assert.deepEqual(diffRoutes([], observed, OWN), [
        { op: 'delete', route: stale, reason: 'no current peer owns 10.244.9.0/24' },
      ]);
    });

    it('an own route through another device is replaced by one through the desired device', () => {
      const want = route('10.244.1.0/24', 'a');
      const old = seen('10.244.1.0/24', 'wg1');
      assert.deepEqual(diffRoutes([want], [old], OWN), [
        { op: 'add', route: want, reason: 'PodCIDR 10.244.1.0/24 of a' },
        { op: 'delete', route: old, reason: 'no current peer owns 10.244.1.0/24' },
      ]);
    });

    describe("someone else's route to the same prefix", () => {
      const want = route('10.244.1.0/24', 'a');
      const cases: Array<[string, RouteStatus]> = [
        ['through another device', seen('10.244.1.0/24', 'eth0', 'static')],
        ['through another device, written with host bits', seen('10.244.1.9/24', 'eth1', 'boot')],
        ['through a device ip did not name', seen('10.244.1.0/24', undefined, 'bgp')],
      ];
      for (const [name, other] of cases) {
        it(`is a conflict, never overwritten: ${name}`, () => {
          const changes = diffRoutes([want], [other], OWN);
          assert.deepEqual(changes, [
            {
              op: 'conflict',
              route: want,
              other,
              reason: `PodCIDR 10.244.1.0/24 of a is already routed via ${other.dev ?? '?'} (proto ${other.protocol}) by someone else; left alone`,
            },
          ]);
          assert.ok(!changes.some((c) => c.op === 'add' || c.op === 'delete'));
        });
      }

      it('through the same device is taken over (the same route, now tagged as own)', () => {
        assert.deepEqual(diffRoutes([want], [seen('10.244.1.0/24', 'wg0', 'static')], OWN), [
          { op: 'add', route: want, reason: 'PodCIDR 10.244.1.0/24 of a' },
        ]);
      });

      it('a covering or covered prefix is no conflict', () => {
        assert.deepEqual(
          diffRoutes(
            [want],
            [seen('10.244.0.0/16', 'eth0', 'static'), seen('10.244.1.128/25', 'eth0', 'static')],
            OWN,
          ).map((c) => c.op),
          ['add'],
        );
      });

      it('is no conflict when its own route is already there as well', () => {
        assert.deepEqual(
          diffRoutes([want], [seen('10.244.1.0/24', 'eth0', 'static'), seen('10.244.1.0/24', 'wg0')], OWN),
          [],
        );
      });
    });

    describe('destinations are compared normalised', () => {
      const cases: Array<[string, string, string]> = [
        ['an IPv4 host route without prefix', '10.0.0.1/32', '10.0.0.1'],
        ['an IPv6 host route without prefix', 'fd00::1/128', 'fd00::1'],
        ['IPv6 in long form and upper case', 'fd00:1::/64', 'FD00:1:0:0::/64'],
        ['host bits set', '10.244.1.0/24', '10.244.1.1/24'],
      ];
      for (const [name, want, observedDst] of cases) {
        it(`own route: ${name}`, () => {
          assert.deepEqual(diffRoutes([route(want, 'a')], [seen(observedDst, 'wg0')], OWN), []);
        });
        it(`someone else's route: ${name}`, () => {
          const other = seen(observedDst, 'eth0', 'static');
          assert.deepEqual(
            diffRoutes([route(want, 'a')], [other], OWN).map((c) => c.op),
            ['conflict'],
          );
        });
      }
    });

    it('applying the changes converges: the same input again gives no changes', () => {
      const desired = [
        route('10.0.0.1/32', 'p'),
        route('10.244.1.0/24', 'a'),
        route('10.244.2.0/24', 'b'),
        route('fd00:2::/64', 'b'),
      ];
      const observed = [
        seen('0.0.0.0/0', 'eth0', 'dhcp'),
        seen('10.244.2.0/24', 'eth0', 'static'),
        seen('10.244.3.0/24', 'wg0'),
        seen('fd00:2::/64', 'wg0'),
      ];
      const first = diffRoutes(desired, observed, OWN);
      assert.deepEqual(
        first.map((c) => `${c.op} ${c.route.dst}`),
        ['add 10.0.0.1/32', 'add 10.244.1.0/24', 'conflict 10.244.2.0/24', 'delete 10.244.3.0/24'],
      );
      assert.deepEqual(diffRoutes(desired, observed, OWN), first, 'pure: the same input gives the same plan');
      const after: RouteStatus[] = [
        ...observed.filter((o) => !first.some((c) => c.op === 'delete' && c.route === o)),
        ...first
          .filter((c): c is Extract<RouteChange, { op: 'add' }> => c.op === 'add')
          .map((c) => seen(c.route.dst, c.route.dev)),
      ];
      const second = diffRoutes(desired, after, OWN);
      assert.deepEqual(
        second.map((c) => c.op),
        ['conflict'],
        'only the conflict remains, and is still left alone',
      );
    });
  });

  describe('diffKnownRoutes', () => {
    const OWN = '77';
    const none = { byKey: new Map<string, DesiredRoute>(), objects: new Set<DesiredRoute>() };

    it("a route's reason says what its destination is and which way it goes", () => {
      const routes: DesiredRoute[] = [
        { dst: '198.51.100.7/32', dev: 'wg0', via: 'west-1', what: 'InternalIP 198.51.100.7/32 of west-2' },
        {
          dst: '10.244.4.0/24',
          gateway: '192.0.2.11',
          via: 'east-1',
          what: 'PodCIDR 10.244.4.0/24 of west-2 (location west, led by west-1)',
        },
        { dst: '10.244.2.0/24', gateway: '192.0.2.12', via: 'east-2' },
      ];
      assert.deepEqual(
        diffKnownRoutes(routes, { owned: none, skip: new Set(), ownProtocol: OWN, rebased: [] }).map((c) => c.reason),
        [
          'InternalIP 198.51.100.7/32 of west-2, through the tunnel to west-1',
          'PodCIDR 10.244.4.0/24 of west-2 (location west, led by west-1), over the private network through 192.0.2.11',
          '10.244.2.0/24 of east-2, over the private network',
        ],
      );
    });

    it('an own route that changes its way (dev wg0 ↔ via a leader) is one replace, not an add that clashes and a delete', () => {
      const tunnel: DesiredRoute = { dst: '10.244.3.0/24', dev: 'wg0', via: 'c' };
      const kept: DesiredRoute = { dst: '10.244.2.0/24', gateway: '192.0.2.12', via: 'b' };
      const gone: DesiredRoute = { dst: '10.244.9.0/24', dev: 'wg0', via: 'z' };
      const owned = {
        byKey: new Map([tunnel, kept, gone].map((r) => [routeKey(r), r])),
        objects: new Set([tunnel, kept, gone]),
      };
      const viaLeader: DesiredRoute = { dst: '10.244.3.0/24', gateway: '192.0.2.12', via: 'b' };
      assert.deepEqual(diffKnownRoutes([kept, viaLeader], { owned, skip: new Set(), ownProtocol: OWN, rebased: [] }), [
        {
          op: 'add',
          route: viaLeader,
          replaces: { dst: '10.244.3.0/24', dev: 'wg0', gateway: undefined },
          reason: '10.244.3.0/24 of b, over the private network, in place of dev wg0',
        },
        {
          op: 'delete',
          route: { dst: '10.244.9.0/24', dev: 'wg0', gateway: undefined, protocol: OWN },
          reason: 'no current peer owns 10.244.9.0/24',
        },
      ]);
    });
  });

  describe('interfaceDrift', () => {
    const want: DesiredInterface = {
      name: 'wg0',
      address: '100.64.2.5/10',
      listenPort: 51820,
      mtu: 1420,
      publicKey: KEYS[0],
    };
    const link = (o: Partial<LinkStatus> = {}): LinkStatus => ({
      name: 'wg0',
      exists: true,
      up: true,
      mtu: 1420,
      addresses: ['100.64.2.5/10'],
      ...o,
    });
    const dev = (o: Partial<InterfaceStatus> = {}): InterfaceStatus => ({
      name: 'wg0',
      publicKey: KEYS[0],
      listenPort: 51820,
      fwmark: 0,
      peers: [],
      ...o,
    });

    const cases: Array<[string, DesiredInterface, LinkStatus, InterfaceStatus | undefined, string[]]> = [
      ['as wanted', want, link(), dev(), []],
      [
        'another address as well as the wanted one',
        want,
        link({ addresses: ['fd00::5/64', '100.64.2.5/10'] }),
        dev(),
        [],
      ],
      [
        'dual-stack: the IPv6 overlay address is missing',
        { ...want, address6: 'fd12:3456:789a::5/48' },
        link(),
        dev(),
        ['IPv6 address (none) → fd12:3456:789a::5/48'],
      ],
      [
        'dual-stack: both addresses in place',
        { ...want, address6: 'fd12:3456:789a::5/48' },
        link({ addresses: ['100.64.2.5/10', 'fd12:3456:789a::5/48'] }),
        dev(),
        [],
      ],
      ['MTU left to wg-quick', { ...want, mtu: undefined }, link({ mtu: 1500 }), dev(), []],
      ['an fwmark and peers do not matter here', want, link(), dev({ fwmark: 51820, peers: [] }), []],
      ['missing link', want, link({ exists: false, up: false, addresses: [] }), undefined, ['interface is missing']],
      [
        'missing link, whatever else is reported',
        want,
        link({ exists: false, mtu: 1280 }),
        dev({ listenPort: 1 }),
        ['interface is missing'],
      ],
      [
        'another address',
        want,
        link({ addresses: ['100.64.2.6/10'] }),
        dev(),
        ['address 100.64.2.6/10 → 100.64.2.5/10'],
      ],
      [
        'the same address with another prefix length',
        want,
        link({ addresses: ['100.64.2.5/16'] }),
        dev(),
        ['address 100.64.2.5/16 → 100.64.2.5/10'],
      ],
      ['no address', want, link({ addresses: [] }), dev(), ['address (none) → 100.64.2.5/10']],
      ['MTU', want, link({ mtu: 1500 }), dev(), ['MTU 1500 → 1420']],
      ['listen port', want, link(), dev({ listenPort: 51821 }), ['listen port 51821 → 51820']],
      ['key', want, link(), dev({ publicKey: KEYS[1] }), [`key ${KEYS[1]} → ${KEYS[0]}`]],
      ['no private key set', want, link(), dev({ publicKey: undefined }), [`key (none) → ${KEYS[0]}`]],
      ['down', want, link({ up: false }), dev(), ['interface is down']],
      ['device unreadable (not a WireGuard device)', want, link(), undefined, ['WireGuard device not readable']],
      [
        'device unreadable: link problems still named, device ones cannot be',
        want,
        link({ up: false, mtu: 1500, addresses: [] }),
        undefined,
        ['address (none) → 100.64.2.5/10', 'MTU 1500 → 1420', 'WireGuard device not readable'],
      ],
      [
        'everything at once, in a fixed order',
        want,
        link({ up: false, mtu: 1500, addresses: ['100.64.9.9/10'] }),
        dev({ listenPort: 1, publicKey: KEYS[1] }),
        [
          'address 100.64.9.9/10 → 100.64.2.5/10',
          'MTU 1500 → 1420',
          'listen port 1 → 51820',
          `key ${KEYS[1]} → ${KEYS[0]}`,
          'interface is down',
        ],
      ],
    ];
    for (const [name, w, l, d, why] of cases) {
      it(name, () =>
        assert.deepEqual(
          interfaceDrift(w, l, d).map((x) => x.text),
          why,
        ),
      );
    }

    const repairs: Array<[string, Drift['kind'][], DriftRepair]> = [
      ['nothing', [], {}],
      ['only the IPv6 address: in place', ['address6'], { address6: 'x' }],
      ['only down: set up', ['down'], { up: 'interface was down' }],
      ['IPv6 address and down: both in place', ['address6', 'down'], { address6: 'x', up: 'interface was down' }],
      ['the IPv4 address: recreate', ['address'], { recreate: 'x' }],
      ['the IPv6 address and the MTU: recreate, nothing in place', ['address6', 'mtu'], { recreate: 'x; x' }],
      ['missing: recreate', ['missing'], { recreate: 'x' }],
      ['unreadable device: recreate', ['unreadable'], { recreate: 'x' }],
      ['key and port: recreate', ['key', 'listen-port'], { recreate: 'x; x' }],
    ];
    for (const [name, kinds, expected] of repairs) {
      it(`repair: ${name}`, () => assert.deepEqual(driftRepair(kinds.map((kind) => ({ kind, text: 'x' }))), expected));
    }
  });
});
