/**
 * The part of the config the pure core depends on, shared by the daemon and the operator commands.
 */
import type { MembershipSettings, MeshSettings } from '../mesh/types.js';
import type { Config } from './config.js';

/** What the daemon learns at run time that membership also depends on. */
export interface RuntimeFacts {
  /** The API server's addresses (no routed range may contain them). */
  protectedAddresses?: readonly string[];
  /** External peers' endpoint names resolved to addresses. */
  resolved?: ReadonlyMap<string, string>;
}

/** The mesh settings of a config, with the MTU resolved (undefined leaves it to wg-quick). */
export function meshSettings(config: Config, mtu: number | undefined, facts: RuntimeFacts = {}): MeshSettings {
  const w = config.wireguard;
  const o = config.overlay;
  return {
    interfaceName: w.interface, listenPort: w.listenPort, mtu, persistentKeepalive: w.persistentKeepalive, endpoint: w.endpoint,
    overlayCidr: o.cidr, podCidrs: o.podCidrs, minPrefix: o.minPrefix, publishedEndpoints: w.publishedEndpoints,
    ...(facts.protectedAddresses ? { protectedAddresses: facts.protectedAddresses } : {}),
    ...(facts.resolved ? { resolved: facts.resolved } : {}),
  };
}

/** The part of the mesh settings membership decides by (the same on every node of a cluster). */
export function membershipSettings(s: MeshSettings): MembershipSettings {
  return {
    overlayCidr: s.overlayCidr, listenPort: s.listenPort,
    ...(s.podCidrs ? { podCidrs: s.podCidrs } : {}), ...(s.minPrefix ? { minPrefix: s.minPrefix } : {}),
    ...(s.protectedAddresses ? { protectedAddresses: s.protectedAddresses } : {}), ...(s.publishedEndpoints ? { publishedEndpoints: s.publishedEndpoints } : {}),
    ...(s.resolved ? { resolved: s.resolved } : {}),
  };
}
