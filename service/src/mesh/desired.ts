/**
 * Desired state: what one node should have applied — its WireGuard interface, one peer per
 * member and admitted external peer, routes to their ranges, and the annotations it publishes —
 * derived purely from the membership verdicts and the settings.
 */
import { ANNOTATION_ENDPOINT, ANNOTATION_OVERLAY_ADDRESS, ANNOTATION_PUBLIC_KEY } from './annotations.js';
import { selfEndpoint } from './endpoints.js';
import { decideMembership, type Membership } from './membership.js';
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

/** The WireGuard peers and routes for the members and admitted external peers of a membership. */
function peersAndRoutes(self: SelfIdentity, selfNode: MeshNode, membership: Membership, settings: MeshSettings, warnings: string[]): { peers: DesiredPeer[]; routes: DesiredRoute[] } {
  const peers: DesiredPeer[] = [];
  const routes: DesiredRoute[] = [];
  const dev = settings.interfaceName;
  const own = selfNode.podCIDRs.map((t) => parseCidr(t)).filter((c): c is Cidr => !!c);
  for (const member of membership.members) {
    if (member.publicKey === self.publicKey) continue; // a Node with this node's own key cannot be a peer of it
    // Local safety, not a verdict: this node's own pods are never sent into the tunnel.
    const m = { ...member, podCIDRs: member.podCIDRs.filter((t) => {
      const clash = own.find((o) => cidrsOverlap(o, parseCidr(t)!));
      if (clash) warnings.push(`PodCIDR ${t} of Node ${member.name} overlaps this node's own PodCIDR ${formatCidr(clash)}: not routed from this node`);
      return !clash;
    }) };
    peers.push({
      kind: 'node',
      name: m.name,
      publicKey: m.publicKey,
      endpoint: m.endpoint,
      allowedIPs: [hostCidr(parseIp(m.overlayAddress)!), ...m.podCIDRs].sort(compareCidrText),
      persistentKeepalive: settings.persistentKeepalive,
    });
    for (const dst of m.podCIDRs) routes.push({ dst, dev, via: m.name });
  }
  for (const p of membership.externalPeers) {
    if (p.publicKey === self.publicKey) continue;
    peers.push({
      kind: 'peer',
      name: p.name,
      publicKey: p.publicKey,
      endpoint: p.endpoint,
      allowedIPs: [...p.allowedIPs],
      persistentKeepalive: p.persistentKeepalive,
      ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}),
    });
    for (const dst of p.allowedIPs) routes.push({ dst, dev, via: p.name, kind: 'peer' });
  }
  peers.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0));
  routes.sort((a, b) => compareCidrText(a.dst, b.dst));
  return { peers, routes };
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
  const warnings = membership.members.filter((m) => m.publicKey === self.publicKey)
    .map((m) => `Node ${m.name} publishes this node's public key (a cloned machine?): rotate one of the keys`);
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
  return {
    iface: {
      name: settings.interfaceName,
      address: `${selfAddress}/${membership.overlay.prefix}`,
      listenPort: settings.listenPort,
      mtu: settings.mtu,
      publicKey: self.publicKey,
    },
    ...peersAndRoutes(self, selfNode, membership, settings, warnings),
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
