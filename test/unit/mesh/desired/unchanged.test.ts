/**
 * Whether a new desired state is the one last applied, as a table: the interface compared field
 * by field, the fail-closed rule set and the peers and routes by identity, a derived state by its
 * deltas.
 */
import assert from 'node:assert/strict';
import type { DesiredFirewall } from '../../../../service/src/mesh/desired/firewall.js';
import { sameDesired, sameInterface } from '../../../../service/src/mesh/desired/unchanged.js';
import type { DesiredInterface, DesiredPeer, DesiredRoute, DesiredState } from '../../../../service/src/mesh/types.js';
import { KEYS } from '../../../support/fakes/fixtures.js';

const IFACE: DesiredInterface = {
  name: 'wg0',
  address: '100.64.0.1/10',
  listenPort: 51820,
  mtu: 1420,
  publicKey: KEYS[0],
};
const PEER: DesiredPeer = {
  kind: 'node',
  name: 'b',
  publicKey: KEYS[1],
  endpoint: '192.0.2.12:51820',
  allowedIPs: ['100.64.0.2/32'],
  persistentKeepalive: 0,
};
const ROUTE: DesiredRoute = { dst: '100.64.0.2/32', dev: 'wg0', via: 'b' };
const FIREWALL = { enabled: true, iface: 'wg0', blocked: [] } as unknown as DesiredFirewall;

/** A desired state with the shared interface, peer, route and rule set, changed by `o`. */
function state(o: Partial<DesiredState> = {}): DesiredState {
  return {
    iface: IFACE,
    peers: [PEER],
    routes: [ROUTE],
    skipped: [],
    addresses: new Map(),
    publish: {},
    warnings: [],
    firewall: FIREWALL,
    ...o,
  };
}

describe('unit: mesh/desired/unchanged', () => {
  const interfaces: [string, DesiredInterface, DesiredInterface, boolean][] = [
    ['the same object', IFACE, IFACE, true],
    ['an equal copy', IFACE, { ...IFACE }, true],
    ['another MTU', IFACE, { ...IFACE, mtu: 1380 }, false],
    ['MTU left to wg-quick', IFACE, { ...IFACE, mtu: undefined }, false],
    ['another port', IFACE, { ...IFACE, listenPort: 51821 }, false],
    ['an IPv6 address added', IFACE, { ...IFACE, address6: 'fd00::1/64' }, false],
    ['address6 set to undefined against left out', IFACE, { ...IFACE, address6: undefined }, false],
    ['address6 undefined on both', { ...IFACE, address6: undefined }, { ...IFACE, address6: undefined }, true],
  ];
  for (const [title, a, b, want] of interfaces)
    it(`sameInterface: ${title} → ${want}`, () => {
      assert.equal(sameInterface(a, b), want);
      assert.equal(sameInterface(b, a), want);
    });

  const a = state();
  const peers2 = [PEER, { ...PEER, name: 'c', publicKey: KEYS[2] }];
  const states: [string, DesiredState, DesiredState, boolean][] = [
    ['the same state', a, a, true],
    ['new lists of the very same objects', a, state({ peers: [PEER], routes: [ROUTE] }), true],
    ['an equal interface copy', a, state({ iface: { ...IFACE } }), true],
    ['another interface', a, state({ iface: { ...IFACE, mtu: 1380 } }), false],
    ['another rule set object', a, state({ firewall: { ...FIREWALL } }), false],
    ['no rule set', a, state({ firewall: undefined }), false],
    ['an equal peer copy (not the same object)', a, state({ peers: [{ ...PEER }] }), false],
    ['a peer more', a, state({ peers: peers2 }), false],
    ['a route less', a, state({ routes: [] }), false],
    [
      'derived from it with empty deltas',
      a,
      state({
        peers: [{ ...PEER }],
        peersDelta: { from: a.peers, added: [], removed: [] },
        routesDelta: { from: a.routes, added: [], removed: [] },
      }),
      true,
    ],
    [
      'derived from it with a peer added',
      a,
      state({
        peers: peers2,
        peersDelta: { from: a.peers, added: [peers2[1]!], removed: [] },
        routesDelta: { from: a.routes, added: [], removed: [] },
      }),
      false,
    ],
    [
      'derived from it with a route removed',
      a,
      state({
        routes: [],
        peersDelta: { from: a.peers, added: [], removed: [] },
        routesDelta: { from: a.routes, added: [], removed: [ROUTE] },
      }),
      false,
    ],
    [
      'deltas from another state: compared by the lists',
      a,
      state({
        peersDelta: { from: [], added: [PEER], removed: [] },
        routesDelta: { from: a.routes, added: [], removed: [] },
      }),
      true,
    ],
  ];
  for (const [title, x, y, want] of states)
    it(`sameDesired: ${title} → ${want}`, () => assert.equal(sameDesired(x, y), want));
});
