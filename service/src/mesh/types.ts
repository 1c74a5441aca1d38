/**
 * Domain types of the pure core: the plain Nodes and external Peers the Kubernetes boundary
 * translates API objects into, the settings the core depends on, and the wanted (`Desired*`) state.
 */
import type { DesiredFirewall } from './desired/firewall.js';

/** A cluster Node as the core sees it (translated from `V1Node` at the Kubernetes boundary). */
export interface MeshNode {
  /** `metadata.name`. */
  name: string;
  /** `metadata.creationTimestamp` in milliseconds since the epoch; Infinity when unknown. */
  createdAt: number;
  /** `status.addresses` of type InternalIP, in API order. */
  internalIPs: string[];
  /** `status.addresses` of type ExternalIP, in API order. */
  externalIPs: string[];
  /** `spec.podCIDRs`, or `[spec.podCIDR]` when the list is absent. */
  podCIDRs: string[];
  /** The annotations under wg-overlay's prefix and Kilo's known ones (others are dropped at the boundary). */
  annotations: Record<string, string>;
  /** The labels the mesh reads (the location label); others are dropped at the boundary. */
  labels?: Record<string, string>;
}

/**
 * An external peer: Kilo's `Peer` custom resource (kilo.squat.ai/v1alpha1), a VPN client or site
 * outside the cluster, as translated at the Kubernetes boundary. Not to be confused with a
 * WireGuard peer ({@link DesiredPeer}), which may be a Node or an external peer. Fields are carried
 * as found (not yet validated), so the core can say exactly what is wrong with an invalid one.
 */
export interface ExternalPeer {
  /** `metadata.name`. */
  name: string;
  /** `metadata.creationTimestamp` in milliseconds since the epoch; Infinity when unknown. */
  createdAt: number;
  /** `spec.allowedIPs` (entries that are not strings are kept as their JSON text); undefined when absent. */
  allowedIPs: string[] | undefined;
  /** `spec.publicKey`; undefined when absent or not a string. */
  publicKey: string | undefined;
  /** `spec.presharedKey`; undefined when absent. */
  presharedKey: string | undefined;
  /** `spec.persistentKeepalive` (seconds); undefined when absent, NaN when not a number. */
  persistentKeepalive: number | undefined;
  /** `spec.endpoint`; undefined when absent (a roaming peer). Port is NaN when not a number. */
  endpoint: { dns: string | undefined; ip: string | undefined; port: number | undefined } | undefined;
}

/** How this node tells others where to reach it (`[wireguard] endpoint`). */
export type EndpointSetting =
  { mode: 'internal' } | { mode: 'external' } | { mode: 'explicit'; host: string; port: number | undefined };

/** The settings membership decides by; every node of a cluster should have the same ones. */
export interface MembershipSettings {
  overlayCidr: string;
  /** The IPv6 overlay (a dual-stack overlay: every node also gets an address in it); undefined: IPv4 only. */
  overlayCidr6?: string | undefined;
  listenPort: number;
  /** A Node's PodCIDRs must lie inside these (`[overlay] pod_cidrs`; default: the private-use ranges). */
  podCidrs?: readonly string[];
  /** The widest range routed to one peer, by family (default /16 and /48). */
  minPrefix?: Readonly<Record<4 | 6, number>>;
  /** Where external peers' allowed IPs and Kilo's allowed-location-ips must lie (`[peers] allowed_ranges`; default private use). */
  externalRanges?: readonly string[];
  /** Ranges no route may overlap, whoever claims them (`[overlay] protected`). */
  protectedRanges?: readonly string[];
  /** Location granularity: Nodes also claim their addresses and allowed-location-ips (reached through their leader). */
  claimLocationRanges?: boolean;
  /** False: Kilo's kubelet-writable topology annotations (allowed-location-ips among them) are ignored. */
  kiloAnnotations?: boolean;
  /**
   * Which published endpoints are believed: `addresses` (default) only one of the Node's own
   * `status.addresses`, which its kubelet reports; `any` every IP literal.
   */
  publishedEndpoints?: 'addresses' | 'any';
  /**
   * DNS names of external peers' endpoints resolved by the daemon (name → address); given, a
   * Peer whose name is not in it is left out until it resolves. Absent: names are kept as they are.
   */
  resolved?: ReadonlyMap<string, string>;
}

/** The settings membership and desired state depend on (a subset of the config, MTU resolved). */
export interface MeshSettings extends MembershipSettings {
  interfaceName: string;
  /** Resolved MTU, or undefined to leave it to wg-quick. */
  mtu: number | undefined;
  persistentKeepalive: number;
  endpoint: EndpointSetting;
  /**
   * What this node never routes into the tunnel whatever the verdicts say (its own view, not a
   * verdict): the API server's addresses as it reaches them, and its on-link underlay subnets.
   */
  localGuard?: { apiAddresses: readonly string[]; onLink: readonly string[] } | undefined;
  /** `[wireguard] fail_closed = on` (absent: off), with the pod networks when the admin named them. */
  failClosed?: { podNetworks?: readonly string[] | undefined } | undefined;
}

/** This node's identity as the core sees it (the private key never enters the core). */
export interface SelfIdentity {
  name: string;
  publicKey: string;
}

/** Why a Node or an external Peer (or part of one) is not in the mesh, for logs and `status`. */
export interface SkipReason {
  /** The Node's (or Peer's) name. */
  name: string;
  /** What `name` is: a cluster Node (the default when absent) or an external Peer resource. */
  kind?: 'node' | 'peer';
  /** Machine-friendly reason class (used as a metric label). */
  reason:
    | 'no-public-key'
    | 'invalid-public-key'
    | 'duplicate-public-key'
    | 'no-endpoint'
    | 'invalid-endpoint'
    | 'no-overlay-address'
    | 'pod-cidr-conflict'
    | 'invalid-pod-cidr'
    | 'invalid-overlay-address'
    | 'overlay-address-taken'
    | 'own-public-key'
    | 'pod-cidr-refused'
    | 'endpoint-refused'
    | 'invalid-allowed-ips'
    | 'allowed-ips-conflict'
    | 'allowed-ips-refused'
    | 'unresolved-endpoint'
    | 'invalid-preshared-key'
    | 'invalid-keepalive'
    | 'invalid-location-range'
    | 'location-range-refused'
    | 'location-range-conflict';
  /** One human sentence naming what was wrong. */
  message: string;
  /** True when the whole Node (or Peer) is left out; false when only part of it is dropped. */
  whole: boolean;
}

/** The WireGuard interface this node should have. */
export interface DesiredInterface {
  /** Interface name, e.g. `wg0`. */
  name: string;
  /** This node's overlay address with the overlay prefix length, e.g. `100.64.2.5/10`. */
  address: string;
  /** With a dual-stack overlay: this node's IPv6 overlay address with its prefix length. */
  address6?: string | undefined;
  /** UDP listen port. */
  listenPort: number;
  /** Interface MTU; undefined leaves it to wg-quick's automatic choice. */
  mtu: number | undefined;
  /** This node's public key (the private key never enters desired state). */
  publicKey: string;
}

/** One WireGuard peer this node should have: a cluster Node or an external peer. */
export interface DesiredPeer {
  /** Where the peer comes from: a cluster Node (`node`) or an external Peer resource (`peer`). */
  kind: 'node' | 'peer';
  /** The Node's (or Peer's) name. */
  name: string;
  /** The peer's public key. */
  publicKey: string;
  /** `host:port` to send to; undefined for a roaming peer. */
  endpoint: string | undefined;
  /** A Node's endpoints that may be dialled, best first, when it has more than one (for failover). */
  candidates?: readonly string[] | undefined;
  /** Sorted, normalised CIDRs: a Node's overlay host route and PodCIDRs, or a Peer's allowedIPs. */
  allowedIPs: string[];
  /** Persistent keepalive in seconds, 0 = off. */
  persistentKeepalive: number;
  /** Optional preshared key (base64). */
  presharedKey?: string | undefined;
  /** With location granularity: the location this peer (its leader) stands for. */
  location?: string | undefined;
}

/** One route this node should have through the WireGuard interface. */
export interface DesiredRoute {
  /** Destination CIDR (normalised). */
  dst: string;
  /** Outgoing interface (the WireGuard interface); absent for a route through `gateway`. */
  dev?: string | undefined;
  /** Next hop on the private network (a member of this node's location); absent for a tunnel route. */
  gateway?: string | undefined;
  /** The peer (Node or Peer name) this route leads to. */
  via: string;
  /** What `via` is; absent means a Node. */
  kind?: 'node' | 'peer';
  /** What the destination is, for logs, e.g. `InternalIP 198.51.100.7/32 of west-2` (absent: a PodCIDR of `via`). */
  what?: string;
}

/** How one list differs from the list it was derived from: the objects that left it and those that joined it. */
export interface ListDelta<T> {
  /** The list this one was derived from. */
  from: readonly T[];
  removed: readonly T[];
  added: readonly T[];
}

/** One location of the topology: its members, its leader and why, and the order they lead in. */
export interface LocationView {
  /** `location:<name>`, or `node:<name>` for a Node on its own. */
  id: string;
  /** What an admin calls it: the name, or the Node's name for a location of its own. */
  name: string;
  /** Where it came from: Kilo's location annotation, the location label, or a Node on its own. */
  source: 'annotation' | 'label' | 'node';
  /** Member names, oldest first. */
  members: string[];
  leader: string;
  /** Why that node leads, one phrase. */
  why: string;
  /** Members in the order they should lead: rank, then seniority. */
  order: string[];
  /** Members the leader Lease shows alive (seen writing it within the configured duration). */
  alive: string[];
  /** Members seen writing the Lease before, but not within the duration. */
  lapsed: string[];
}

/** This node's place in a location or cross topology. */
export interface TopologyState {
  granularity: 'location' | 'cross';
  /** This node's location (its name). */
  location: string;
  /** This node's location id (`location:<name>` or `node:<name>`), which names its Lease. */
  locationId: string;
  /** The leader of this node's location. */
  leader: string;
  /** Why that node leads. */
  why: string;
  /** True when this node holds tunnels to other locations (a leader, or every node with `cross`). */
  leads: boolean;
  locations: LocationView[];
}

/** Everything this node wants applied, computed purely from the Node and Peer lists and config. */
export interface DesiredState {
  iface: DesiredInterface;
  /** Peers sorted by name. */
  peers: DesiredPeer[];
  /** Routes, peer by peer in the order of `peers` (each peer's ranges sorted). */
  routes: DesiredRoute[];
  /** Nodes, Peers or parts of them left out, with reasons (`kind` tells which). */
  skipped: SkipReason[];
  /** The overlay address of every Node that got one (name → address). */
  addresses: ReadonlyMap<string, string>;
  /** The values this node should publish in its own annotations. */
  publish: Record<string, string>;
  /** Problems with this node's own settings (e.g. `endpoint = external` but no ExternalIP). */
  warnings: string[];
  /** With location or cross granularity: where this node stands. */
  topology?: TopologyState | undefined;
  /** When derived from an earlier desired state: how `peers` differs from that state's peers. */
  peersDelta?: ListDelta<DesiredPeer> | undefined;
  /** When derived from an earlier desired state: how `routes` differs from that state's routes. */
  routesDelta?: ListDelta<DesiredRoute> | undefined;
  /** The fail-closed rule set (absent: not decided, e.g. a desired state built outside the daemon's plan). */
  firewall?: DesiredFirewall | undefined;
}
