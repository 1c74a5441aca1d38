/**
 * The part of the config the pure core depends on, shared by the daemon and the operator commands.
 */
import type { MeshSettings } from '../mesh/types.js';
import type { Config } from './config.js';

/** The mesh settings of a config, with the MTU resolved (undefined leaves it to wg-quick). */
export function meshSettings(config: Config, mtu: number | undefined): MeshSettings {
  const w = config.wireguard;
  return { interfaceName: w.interface, listenPort: w.listenPort, mtu, persistentKeepalive: w.persistentKeepalive, overlayCidr: config.overlay.cidr, endpoint: w.endpoint };
}
