/**
 * Desired state: what one node should have applied — its WireGuard interface, one peer per
 * member and admitted external peer, routes to their ranges, and the annotations it publishes —
 * derived purely from the membership verdicts and the settings.
 */
import {
  ANNOTATION_ENDPOINT,
  ANNOTATION_OVERLAY_ADDRESS,
  ANNOTATION_OVERLAY_ADDRESS6,
  ANNOTATION_PUBLIC_KEY,
  KILO_PERSISTENT_KEEPALIVE,
} from '../annotations.js';
import { selfEndpoint } from '../membership/endpoints.js';
import { decideMembership, type Membership } from '../membership/membership.js';
import type { DesiredState, ExternalPeer, MeshNode, MeshSettings, SelfIdentity, TopologyState } from '../types.js';
import { locatedPeerSet, type TopologyInput } from './located.js';
import { entryContext, fullMeshPeerSet, recordBasis, type EndpointChoice, type PeerSet } from './peer-set.js';

export type { MeshSettings, SelfIdentity } from '../types.js';
export type { EndpointChoice } from './peer-set.js';
export type { TopologyInput } from './located.js';

/** Thrown when this node cannot have a desired state yet (its Node is missing or got no address). */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotReadyError';
  }
}

/**
 * The settings with this node's own keepalive: Kilo's `persistent-keepalive` annotation on its
 * Node (seconds, 0-65535), when present, takes the place of `[wireguard] persistent_keepalive`.
 */
function withOwnKeepalive(selfNode: MeshNode, settings: MeshSettings): MeshSettings {
  const text = selfNode.annotations[KILO_PERSISTENT_KEEPALIVE];
  if (text === undefined || !/^\d{1,5}$/.test(text) || Number(text) > 65535) return settings;
  return Number(text) === settings.persistentKeepalive ? settings : { ...settings, persistentKeepalive: Number(text) };
}

/** What the desired state of one node is computed from. */
export interface DesiredInput {
  self: SelfIdentity;
  /** This node's Node (undefined: not registered yet, which is NotReady). */
  selfNode: MeshNode | undefined;
  /** A membership decided with `self` as the viewing node. */
  membership: Membership;
  settings: MeshSettings;
  /** The desired state built from the engine's membership just before this one: the peers and routes are derived from it. */
  previous?: DesiredState | undefined;
  /** With location or cross granularity. */
  topology?: TopologyInput | undefined;
  /** Endpoints failover chose. */
  choice?: EndpointChoice | undefined;
}

/** This node's overlay address, or NotReadyError with why it has none. */
function selfAddressOf(i: DesiredInput): string {
  const address = i.membership.addresses.get(i.self.name);
  if (address) return address;
  const why = i.membership.skipped.find((p) => p.name === i.self.name && p.whole)?.message ?? 'no overlay address';
  throw new NotReadyError(`Node ${i.self.name} has no overlay address: ${why}`);
}

/** The annotations this node publishes, and warnings about its own settings. */
function published(
  i: DesiredInput,
  address: string,
  own: { endpoint?: string; warning?: string },
): Record<string, string> {
  const address6 = i.membership.addresses6?.get(i.self.name);
  return {
    [ANNOTATION_PUBLIC_KEY]: i.self.publicKey,
    [ANNOTATION_OVERLAY_ADDRESS]: address,
    ...(address6 ? { [ANNOTATION_OVERLAY_ADDRESS6]: address6 } : {}),
    ...(own.endpoint ? { [ANNOTATION_ENDPOINT]: own.endpoint } : {}),
  };
}

/** The warnings of a desired state: cloned keys, Peers with this node's key, its own endpoint, the peer set's. */
function warningsOf(i: DesiredInput, set: PeerSet, ownWarning: string | undefined): string[] {
  const warnings = [...set.clones];
  for (const p of i.membership.externalPeers) {
    if (p.publicKey === i.self.publicKey)
      warnings.push(`Peer ${p.name} uses this node's public key: fix the Peer resource`);
  }
  if (ownWarning) warnings.push(ownWarning);
  return [...warnings, ...set.warnings];
}

/**
 * The desired state of node `self` from a membership decided with `self` as the viewing node;
 * throws NotReadyError when its Node is missing or got no overlay address.
 */
export function desiredFor(input: DesiredInput): DesiredState {
  const { self, selfNode, membership } = input;
  if (!selfNode) throw new NotReadyError(`Node ${self.name} does not exist in the cluster yet`);
  const settings = withOwnKeepalive(selfNode, input.settings);
  const address = selfAddressOf(input);
  const own = selfEndpoint(selfNode, settings.endpoint, settings.listenPort, settings.resolved);
  const ctx = entryContext(self, selfNode, settings, input.choice);
  let set: PeerSet;
  let topology: TopologyState | undefined;
  if (input.topology && input.topology.settings.granularity !== 'full') {
    ({ set, state: topology } = locatedPeerSet({
      ctx,
      selfNode,
      selfAddress: address,
      ownEndpoint: own.endpoint,
      membership,
      topology: input.topology,
    }));
  } else set = fullMeshPeerSet(membership, ctx, input.previous);
  const address6 = membership.addresses6?.get(self.name);
  const desired: DesiredState = {
    iface: {
      name: settings.interfaceName,
      address: `${address}/${membership.overlay.prefix}`,
      ...(address6 && membership.overlay6 ? { address6: `${address6}/${membership.overlay6.prefix}` } : {}),
      listenPort: settings.listenPort,
      mtu: settings.mtu,
      publicKey: self.publicKey,
    },
    peers: set.peers,
    routes: set.routes,
    skipped: membership.skipped,
    addresses: membership.addresses,
    publish: published(input, address, own),
    warnings: warningsOf(input, set, own.warning),
    ...(set.peersDelta ? { peersDelta: set.peersDelta, routesDelta: set.routesDelta } : {}),
    ...(topology ? { topology } : {}),
  };
  recordBasis(desired, set);
  return desired;
}

/**
 * Computes what node `self` should have applied from all Nodes and external peers; throws
 * NotReadyError when it cannot yet.
 */
export function computeDesired(
  self: SelfIdentity,
  nodes: readonly MeshNode[],
  settings: MeshSettings,
  externalPeers: readonly ExternalPeer[] = [],
): DesiredState {
  const membership = decideMembership(nodes, externalPeers, settings, self);
  return desiredFor({ self, selfNode: nodes.find((n) => n.name === self.name), membership, settings });
}
