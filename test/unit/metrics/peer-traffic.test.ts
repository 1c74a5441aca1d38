/**
 * Per-peer byte counters that never go backwards: a sequence of device readings through a peer
 * re-added, an interface recreated, a new key and a peer removed, each checked against what the
 * device itself counted; endpoint moves the daemon did not ask for are told apart from its own.
 */
import assert from 'node:assert/strict';
import type { PeerStatus } from '../../../service/src/mesh/observations/device.js';
import type { DesiredPeer } from '../../../service/src/mesh/types.js';
import { PeerTraffic } from '../../../service/src/metrics/peer-traffic.js';
import { KEYS } from '../../support/fakes/fixtures.js';

const desired = (name: string, key: string, endpoint?: string, kind: 'node' | 'peer' = 'node'): DesiredPeer => ({
  kind,
  name,
  publicKey: key,
  endpoint,
  allowedIPs: [],
  persistentKeepalive: 0,
});

const dev = (key: string, rx: number, tx: number, endpoint?: string, handshake = 0): PeerStatus => ({
  publicKey: key,
  hasPresharedKey: false,
  endpoint,
  allowedIPs: [],
  latestHandshake: handshake,
  rxBytes: rx,
  txBytes: tx,
  persistentKeepalive: 0,
});

/** Totals by name after feeding every reading. */
function totals(t: PeerTraffic): Record<string, [number, number]> {
  return Object.fromEntries(t.entries().map((e) => [e.name, [e.rxTotal, e.txTotal]]));
}

describe('unit: per-peer traffic counters', () => {
  const b = desired('b', KEYS[1], '192.0.2.12:51820');
  const laptop = desired('laptop', KEYS[3], undefined, 'peer');

  // [what happens, the device's peers, the desired peers, the totals wanted after the reading]
  const steps: Array<[string, PeerStatus[], DesiredPeer[], Record<string, [number, number]>]> = [
    ['first reading: the totals start at what the device counted', [dev(KEYS[1], 100, 50)], [b], { b: [100, 50] }],
    ['traffic: the growth is added', [dev(KEYS[1], 400, 90)], [b], { b: [400, 90] }],
    ['the same reading again adds nothing', [dev(KEYS[1], 400, 90)], [b], { b: [400, 90] }],
    ['the peer is being re-added: not on the device, the totals stay', [], [b], { b: [400, 90] }],
    ['re-added: the device counts from 0 again, the totals go on', [dev(KEYS[1], 30, 20)], [b], { b: [430, 110] }],
    ['more traffic', [dev(KEYS[1], 80, 60)], [b], { b: [480, 150] }],
    [
      'an unknown key on the device is ignored; a Peer joins',
      [dev(KEYS[1], 80, 60), dev(KEYS[2], 9e9, 9e9), dev(KEYS[3], 5, 6)],
      [b, laptop],
      { b: [480, 150], laptop: [5, 6] },
    ],
    [
      'the interface is recreated: every device counter starts again',
      [dev(KEYS[1], 10, 10), dev(KEYS[3], 1, 1)],
      [b, laptop],
      { b: [490, 160], laptop: [6, 7] },
    ],
    [
      'b takes a new key: its new peer counts from 0, added to the totals even where it is already higher',
      [dev(KEYS[4], 700, 15), dev(KEYS[3], 1, 1)],
      [desired('b', KEYS[4], '192.0.2.12:51820'), laptop],
      { b: [1190, 175], laptop: [6, 7] },
    ],
    ['the Peer is deleted: forgotten', [dev(KEYS[4], 700, 15)], [desired('b', KEYS[4])], { b: [1190, 175] }],
    ['it comes back: counted afresh', [dev(KEYS[3], 2, 3)], [laptop], { laptop: [2, 3] }],
  ];

  it('never go backwards: growth is added, a counter that starts again is added whole', () => {
    const t = new PeerTraffic();
    let before: Record<string, [number, number]> = {};
    for (const [what, device, want, expected] of steps) {
      t.see(device, want);
      const now = totals(t);
      assert.deepEqual(now, expected, what);
      for (const [name, [rx, tx]] of Object.entries(now)) {
        const was = before[name];
        if (was && want.some((p) => p.name === name))
          assert.ok(rx >= was[0] && tx >= was[1], `${what}: ${name} went backwards`);
      }
      before = now;
    }
  });

  it('the latest handshake and endpoint are those of the latest reading', () => {
    const t = new PeerTraffic();
    t.see([dev(KEYS[1], 1, 1, '192.0.2.12:51820', 1_700_000_000)], [b]);
    t.see([dev(KEYS[1], 2, 2, '[2001:db8::12]:51820', 1_700_000_120)], [desired('b', KEYS[1], '[2001:db8::12]:51820')]);
    assert.deepEqual(
      t.entries().map((e) => [e.kind, e.name, e.latestHandshake, e.endpoint]),
      [['node', 'b', 1_700_000_120, '[2001:db8::12]:51820']],
    );
  });

  it('an endpoint the daemon set is not roaming; one WireGuard followed the peer to is, once per move', () => {
    const roamed: string[] = [];
    const t = new PeerTraffic((p) => roamed.push(p.name));
    t.see([dev(KEYS[1], 1, 1, '192.0.2.12:51820')], [b]);
    // failover: the daemon set the IPv6 endpoint
    const b6 = desired('b', KEYS[1], '[2001:db8::12]:51820');
    t.see([dev(KEYS[1], 2, 2, '[2001:db8::12]:51820')], [b6]);
    assert.deepEqual(roamed, []);
    // b arrives from behind a NAT router: WireGuard follows it there
    t.see([dev(KEYS[1], 3, 3, '198.51.100.1:40000')], [b6]);
    t.see([dev(KEYS[1], 4, 4, '198.51.100.1:40000')], [b6]);
    assert.deepEqual(roamed, ['b']);
    // a laptop without an endpoint of its own: its first one is no move, a later one is
    t.see([dev(KEYS[3], 1, 1)], [laptop]);
    t.see([dev(KEYS[3], 1, 1, '203.0.113.7:5555')], [laptop]);
    t.see([dev(KEYS[3], 1, 1, '203.0.113.9:5555')], [laptop]);
    assert.deepEqual(roamed, ['b', 'laptop']);
  });
});
