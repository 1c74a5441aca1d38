/**
 * Domain types of the pure core: the plain Node the Kubernetes adapter translates `V1Node`
 * into, and the wanted (`Desired*`) state the core computes from it. No I/O lives here.
 */

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
  /** The annotations under wg-overlay's prefix (other annotations are dropped at the boundary). */
  annotations: Record<string, string>;
}

/** Why a Node (or part of it) is not in the mesh, for logs and `status`. */
export interface SkipReason {
  /** The Node's name. */
  name: string;
  /** Machine-friendly reason class (used as a metric label). */
  reason: 'no-public-key' | 'invalid-public-key' | 'duplicate-public-key' | 'no-endpoint' | 'invalid-endpoint'
    | 'no-overlay-address' | 'pod-cidr-conflict' | 'invalid-pod-cidr' | 'invalid-overlay-address'
    | 'overlay-address-taken' | 'own-public-key';
  /** One human sentence naming what was wrong. */
  message: string;
  /** True when the whole Node is left out; false when only part of it is dropped. */
  whole: boolean;
}

/** The WireGuard interface this node should have. */
export interface DesiredInterface {
  /** Interface name, e.g. `wg0`. */
  name: string;
  /** This node's overlay address with the overlay prefix length, e.g. `100.64.2.5/10`. */
  address: string;
  /** UDP listen port. */
  listenPort: number;
  /** Interface MTU; undefined leaves it to wg-quick's automatic choice. */
  mtu: number | undefined;
  /** This node's public key (the private key never enters desired state). */
  publicKey: string;
}

/** One WireGuard peer this node should have. */
export interface DesiredPeer {
  /** Where the peer comes from: a cluster Node (later: an external Peer resource). */
  kind: 'node' | 'peer';
  /** The Node's (or Peer's) name. */
  name: string;
  /** The peer's public key. */
  publicKey: string;
  /** `host:port` to send to; undefined for a roaming peer. */
  endpoint: string | undefined;
  /** Sorted, normalised CIDRs: the peer's overlay host route first, then its PodCIDRs. */
  allowedIPs: string[];
  /** Persistent keepalive in seconds, 0 = off. */
  persistentKeepalive: number;
  /** Optional preshared key (base64). */
  presharedKey?: string | undefined;
}

/** One route this node should have through the WireGuard interface. */
export interface DesiredRoute {
  /** Destination CIDR (normalised). */
  dst: string;
  /** Outgoing interface. */
  dev: string;
  /** The peer (Node or Peer name) this route leads to. */
  via: string;
}

/** Everything this node wants applied, computed purely from the Node list and config. */
export interface DesiredState {
  iface: DesiredInterface;
  /** Peers sorted by name. */
  peers: DesiredPeer[];
  /** Routes sorted by destination. */
  routes: DesiredRoute[];
  /** Nodes or parts of Nodes left out, with reasons. */
  skipped: SkipReason[];
  /** The overlay address of every Node that got one (name → address). */
  addresses: Map<string, string>;
  /** The values this node should publish in its own annotations. */
  publish: Record<string, string>;
  /** Problems with this node's own settings (e.g. `endpoint = external` but no ExternalIP). */
  warnings: string[];
}
