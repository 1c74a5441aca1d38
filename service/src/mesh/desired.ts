/**
 * Desired state: what one node should have applied — its WireGuard interface, one peer per
 * member and admitted external peer, routes to their ranges, and the annotations it publishes —
 * derived purely from the membership verdicts and the settings.
 */
import { ANNOTATION_ENDPOINT, ANNOTATION_OVERLAY_ADDRESS, ANNOTATION_PUBLIC_KEY } from './annotations.js';
import { selfEndpoint } from './endpoints.js';
import type { AdmittedPeer } from './external-peers.js';
import { decideMembership, type Member, type Membership } from './membership.js';
import type { DesiredPeer, DesiredRoute, DesiredState, ExternalPeer, MeshNode, MeshSettings, SelfIdentity } from './types.js';
import { type Cidr, cidrsOverlap, compareCidrText, formatCidr, hostCidr, parseCidr, parseIp } from '../net/ip.js';

export type { MeshSettings, SelfIdentity } from './types.js';

/** Thrown when this node cannot have a desired state yet (its Node is missing or got no address). */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotReadyError';
  }
}

/** One peer with its routes (and any warning about this node's own pods), cached per member or external peer object. */
interface PeerEntry {
  context: string;
  peer: DesiredPeer;
  routes: DesiredRoute[];
  warnings: string[];
}

// Unchanged members and external peers keep their objects, so their WireGuard peers and routes
// are reused as they are: desired state for one changed Node costs one new entry, not the mesh.
const entries = new WeakMap<object, PeerEntry>();

/** The peer and routes of a member (its PodCIDRs that overlap this node's own are held back, with a warning). */
function memberEntry(m: Member, own: readonly Cidr[], context: string, settings: MeshSettings): PeerEntry {
  const cached = entries.get(m);
  if (cached?.context === context) return cached;
  const warnings: string[] = [];
  // Local safety, not a verdict: this node's own pods are never sent into the tunnel.
  const podCIDRs = m.podCIDRs.filter((t) => {
    const clash = own.find((o) => cidrsOverlap(o, parseCidr(t)!));
    if (clash) warnings.push(`PodCIDR ${t} of Node ${m.name} overlaps this node's own PodCIDR ${formatCidr(clash)}: not routed from this node`);
    return !clash;
  });
  const entry: PeerEntry = {
    context,
    peer: { kind: 'node', name: m.name, publicKey: m.publicKey, endpoint: m.endpoint, allowedIPs: [hostCidr(parseIp(m.overlayAddress)!), ...podCIDRs].sort(compareCidrText), persistentKeepalive: settings.persistentKeepalive },
    routes: podCIDRs.map((dst) => ({ dst, dev: settings.interfaceName, via: m.name })),
    warnings,
  };
  entries.set(m, entry);
  return entry;
}

/** The peer and routes of an admitted external peer. */
function externalEntry(p: AdmittedPeer, context: string, settings: MeshSettings): PeerEntry {
  const cached = entries.get(p);
  if (cached?.context === context) return cached;
  const entry: PeerEntry = {
    context,
    peer: { kind: 'peer', name: p.name, publicKey: p.publicKey, endpoint: p.endpoint, allowedIPs: [...p.allowedIPs], persistentKeepalive: p.persistentKeepalive, ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}) },
    routes: p.allowedIPs.map((dst) => ({ dst, dev: settings.interfaceName, via: p.name, kind: 'peer' as const })),
    warnings: [],
  };
  entries.set(p, entry);
  return entry;
}

/**
 * The WireGuard peers (by name, Nodes before Peers of the same name) and routes (peer by peer) for
 * the members and admitted external peers of a membership.
 */
function peersAndRoutes(self: SelfIdentity, selfNode: MeshNode, membership: Membership, settings: MeshSettings): { peers: DesiredPeer[]; routes: DesiredRoute[]; clones: string[]; warnings: string[] } {
  const own = selfNode.podCIDRs.map((t) => parseCidr(t)).filter((c): c is Cidr => !!c);
  const context = `${settings.interfaceName}|${settings.persistentKeepalive}|${own.map(formatCidr).join(',')}`;
  const peers: DesiredPeer[] = [];
  const routes: DesiredRoute[] = [];
  const clones: string[] = [];
  const warnings: string[] = [];
  const take = (e: PeerEntry): void => {
    peers.push(e.peer);
    for (const r of e.routes) routes.push(r);
    if (e.warnings.length > 0) warnings.push(...e.warnings);
  };
  // A Node or Peer with this node's own key cannot be a peer of it. Both lists are sorted by
  // name; merged in one pass, a Node before a Peer of the same name.
  const external = membership.externalPeers.filter((p) => p.publicKey !== self.publicKey);
  let j = 0;
  for (const m of membership.members) {
    if (m.publicKey === self.publicKey) {
      clones.push(`Node ${m.name} publishes this node's public key (a cloned machine?): rotate one of the keys`);
      continue;
    }
    while (j < external.length && external[j]!.name < m.name) take(externalEntry(external[j++]!, context, settings));
    take(memberEntry(m, own, context, settings));
  }
  while (j < external.length) take(externalEntry(external[j++]!, context, settings));
  return { peers, routes, clones, warnings };
}

/**
 * The desired state of node `self` from a membership decided with `self` as the viewing node;
 * throws NotReadyError when its Node is missing or got no overlay address.
 */
export function desiredFor(self: SelfIdentity, selfNode: MeshNode | undefined, membership: Membership, settings: MeshSettings): DesiredState {
  if (!selfNode) throw new NotReadyError(`Node ${self.name} does not exist in the cluster yet`);
  const selfAddress = membership.addresses.get(self.name);
  if (!selfAddress) {
    const why = membership.skipped.find((p) => p.name === self.name && p.whole)?.message ?? 'no overlay address';
    throw new NotReadyError(`Node ${self.name} has no overlay address: ${why}`);
  }
  const { peers, routes, clones, warnings: held } = peersAndRoutes(self, selfNode, membership, settings);
  const warnings = clones;
  for (const p of membership.externalPeers) {
    if (p.publicKey === self.publicKey) warnings.push(`Peer ${p.name} uses this node's public key: fix the Peer resource`);
  }
  const publish: Record<string, string> = {
    [ANNOTATION_PUBLIC_KEY]: self.publicKey,
    [ANNOTATION_OVERLAY_ADDRESS]: selfAddress,
  };
  const own = selfEndpoint(selfNode, settings.endpoint, settings.listenPort, settings.resolved);
  if (own.endpoint) publish[ANNOTATION_ENDPOINT] = own.endpoint;
  if (own.warning) warnings.push(own.warning);
  for (const w of held) warnings.push(w);
  return {
    iface: {
      name: settings.interfaceName,
      address: `${selfAddress}/${membership.overlay.prefix}`,
      listenPort: settings.listenPort,
      mtu: settings.mtu,
      publicKey: self.publicKey,
    },
    peers,
    routes,
    skipped: membership.skipped,
    addresses: membership.addresses,
    publish,
    warnings,
  };
}

/**
 * Computes what node `self` should have applied from all Nodes and external peers; throws
 * NotReadyError when it cannot yet.
 */
export function computeDesired(self: SelfIdentity, nodes: readonly MeshNode[], settings: MeshSettings, externalPeers: readonly ExternalPeer[] = []): DesiredState {
  const membership = decideMembership(nodes, externalPeers, settings, self);
  return desiredFor(self, nodes.find((n) => n.name === self.name), membership, settings);
}
