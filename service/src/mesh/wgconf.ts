/**
 * Desired state → wg-quick config: the pure mapping behind `/etc/wireguard/wg0.conf`, so a
 * reboot or a `wg-quick@wg0` restart brings back exactly the mesh the daemon computed.
 */
import type { DesiredState } from './types.js';
import type { WgQuickConfig } from '../wireguard/wgquick.js';

/** The wg-quick config for a desired state; `Table = off` because the daemon owns routes. */
export function toWgQuickConfig(desired: DesiredState, privateKey: string): WgQuickConfig {
  return {
    iface: {
      privateKey,
      address: [desired.iface.address],
      listenPort: desired.iface.listenPort,
      ...(desired.iface.mtu !== undefined ? { mtu: desired.iface.mtu } : {}),
      table: 'off',
      extra: [],
    },
    peers: desired.peers.map((p) => ({
      name: p.name,
      publicKey: p.publicKey,
      ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}),
      ...(p.endpoint ? { endpoint: p.endpoint } : {}),
      allowedIPs: [...p.allowedIPs],
      ...(p.persistentKeepalive > 0 ? { persistentKeepalive: p.persistentKeepalive } : {}),
    })),
  };
}
