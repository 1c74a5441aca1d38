/**
 * The part of the config the pure core depends on, shared by the daemon and the operator commands.
 */
import { createHash } from 'node:crypto';
import type { TopologySettings } from '../mesh/desired/topology.js';
import { DEFAULT_POD_CIDRS } from '../mesh/membership/ranges.js';
import type { MeshSettings } from '../mesh/types.js';
import type { Config } from './config.js';

/**
 * The IPv6 overlay `[overlay] cidr6 = auto` stands for: a unique local /48 (RFC 4193) whose 40-bit
 * global ID is a hash of the cluster's CA certificate, so every node of a cluster computes the same
 * one and two clusters almost never share it.
 */
export function autoOverlay6(clusterCa: string): string {
  const id = createHash('sha256').update(clusterCa.replace(/\s+/g, '')).digest();
  const hex = (i: number): string => id.readUInt16BE(i).toString(16);
  return `fd${id[0]!.toString(16).padStart(2, '0')}:${hex(1)}:${hex(3)}::/48`;
}

/** The IPv6 overlay of a config (undefined: IPv4 only, or `auto` without a cluster CA). */
export function overlay6Of(config: Config, clusterCa: string | undefined): string | undefined {
  const v = config.overlay.cidr6;
  if (v === 'off') return undefined;
  if (v === 'auto') return clusterCa ? autoOverlay6(clusterCa) : undefined;
  return v;
}

/** What the daemon learns at run time that the mesh also depends on. */
export interface RuntimeFacts {
  /** The API server's addresses as this node reaches it: never routed into the tunnel from this node. */
  apiAddresses?: readonly string[];
  /** This node's on-link underlay subnets: never routed into the tunnel from this node. */
  onLink?: readonly string[];
  /** External peers' endpoint names resolved to addresses. */
  resolved?: ReadonlyMap<string, string>;
  /** The cluster's CA certificate (PEM), from which `cidr6 = auto` is derived. */
  clusterCa?: string | undefined;
}

/** The mesh settings of a config, with the MTU resolved (undefined leaves it to wg-quick). */
export function meshSettings(config: Config, mtu: number | undefined, facts: RuntimeFacts = {}): MeshSettings {
  const w = config.wireguard;
  const o = config.overlay;
  return {
    interfaceName: w.interface,
    listenPort: w.listenPort,
    mtu,
    persistentKeepalive: w.persistentKeepalive,
    endpoint: w.endpoint,
    overlayCidr: o.cidr,
    overlayCidr6: overlay6Of(config, facts.clusterCa),
    podCidrs: o.podCidrs,
    minPrefix: o.minPrefix,
    protectedRanges: o.protected,
    externalRanges: config.peers.allowedRanges,
    ...(config.mesh.granularity === 'location' ? { claimLocationRanges: true } : {}),
    ...(config.mesh.kiloTopology ? {} : { kiloAnnotations: false }),
    publishedEndpoints: w.publishedEndpoints,
    localGuard: { apiAddresses: facts.apiAddresses ?? [], onLink: facts.onLink ?? [] },
    ...(facts.resolved ? { resolved: facts.resolved } : {}),
    ...(w.failClosed ? { failClosed: { podNetworks: podNetworksNamed(config) } } : {}),
  };
}

/** `[overlay] pod_cidrs` when the admin named them (not the private-use default): blocked as a whole when failing closed. */
export function podNetworksNamed(config: Config): readonly string[] | undefined {
  const p = config.overlay.podCidrs;
  return p.join() === DEFAULT_POD_CIDRS.join() ? undefined : p;
}

/** The topology settings of a config (every node of a cluster should have the same ones). */
export function topologySettings(config: Config): TopologySettings {
  const m = config.mesh;
  return {
    granularity: m.granularity,
    locationLabel: m.locationLabel,
    leaderLabel: m.leaderLabel,
    kiloAnnotations: m.kiloTopology,
    reachable: m.reachable,
    localRoutes: m.localRoutes,
  };
}
