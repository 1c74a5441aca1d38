/**
 * Desired state → wg-quick config: the mapping behind `/etc/wireguard/wg0.conf` (so a reboot or
 * a `wg-quick@wg0` restart brings back exactly the mesh the daemon computed) and behind
 * `showconf node`.
 */
import type { DesiredPeer, DesiredState } from '../mesh/types.js';
import type { WgQuickConfig, WgQuickPeer } from './wgquick.js';

/** One desired peer as a wg-quick [Peer]; `comment` replaces the name in its comment line. */
export function toWgQuickPeer(p: Omit<DesiredPeer, 'kind'>, comment: string = p.name): WgQuickPeer {
  return {
    name: comment,
    publicKey: p.publicKey,
    ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}),
    ...(p.endpoint ? { endpoint: p.endpoint } : {}),
    allowedIPs: [...p.allowedIPs],
    ...(p.persistentKeepalive > 0 ? { persistentKeepalive: p.persistentKeepalive } : {}),
  };
}

// The [Peer] of each desired peer object, so an unchanged peer keeps its rendered section.
const asPeer = new WeakMap<DesiredPeer, WgQuickPeer>();

/** The [Peer] of a desired peer with its name as the comment, built once per peer object. */
function cachedPeer(p: DesiredPeer): WgQuickPeer {
  let out = asPeer.get(p);
  if (!out) asPeer.set(p, (out = toWgQuickPeer(p)));
  return out;
}

/**
 * The wg-quick config for a desired state; `Table = off` because the daemon owns routes. Without
 * a private key it is a template for someone else's copy (`showconf node`).
 */
export function toWgQuickConfig(
  desired: DesiredState,
  privateKey: string | undefined,
  peerComment?: (p: DesiredPeer) => string,
): WgQuickConfig {
  return {
    iface: {
      ...(privateKey !== undefined ? { privateKey } : {}),
      address: [desired.iface.address, ...(desired.iface.address6 ? [desired.iface.address6] : [])],
      listenPort: desired.iface.listenPort,
      ...(desired.iface.mtu !== undefined ? { mtu: desired.iface.mtu } : {}),
      table: 'off',
      extra: [],
    },
    peers: desired.peers.map((p) => (peerComment ? toWgQuickPeer(p, peerComment(p)) : cachedPeer(p))),
  };
}
