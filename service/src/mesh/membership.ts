/**
 * Membership: the one pure function that decides which Nodes and external peers are in the mesh,
 * with which overlay address, PodCIDRs and endpoint, and why anything (or any part) is left out.
 * The daemon, `showconf`, `graph` and `status` all use it; conflicts are decided by seniority
 * (oldest first, then name), so every node reaches the same verdicts from the same lists.
 */
import { assignOverlayAddresses, parseOverlayCidr } from './addresses.js';
import { ANNOTATION_PUBLIC_KEY } from './annotations.js';
import { peerEndpoint } from './endpoints.js';
import { admitExternalPeers, externalPeerContext, type AdmittedPeer } from './external-peers.js';
import { isValidKey } from './keys.js';
import { bySeniority } from './order.js';
import type { ExternalPeer, MeshNode, SelfIdentity, SkipReason } from './types.js';
import { type Cidr, cidrsOverlap, compareCidrText, formatCidr, parseCidr } from '../net/ip.js';

/** One Node admitted to the mesh, as every member sees it. */
export interface Member {
  name: string;
  /** `metadata.creationTimestamp` in ms (Infinity when unknown), for seniority. */
  createdAt: number;
  publicKey: string;
  /** Overlay address without prefix length. */
  overlayAddress: string;
  /** `host:port` other nodes and external peers dial. */
  endpoint: string;
  /** PodCIDRs routed to this Node (normalised, sorted). */
  podCIDRs: string[];
}

/** The verdicts on every Node and external peer. */
export interface Membership {
  /** The overlay network, normalised. */
  overlay: Cidr;
  /** Admitted Nodes, sorted by name; without the viewing node when one was given. */
  members: Member[];
  /** Admitted external peers, sorted by name. */
  externalPeers: AdmittedPeer[];
  /** The overlay address of every Node that got one (name → address). */
  addresses: Map<string, string>;
  /** Nodes and external peers (or parts of them) left out, with reasons. */
  skipped: SkipReason[];
  /** Problems that concern the viewing node itself (e.g. another Node publishes its key). */
  warnings: string[];
}

/** The settings membership depends on. */
export interface MembershipSettings {
  overlayCidr: string;
  listenPort: number;
}

/** Running state of one pass over the Nodes, oldest first. */
interface Pass {
  self: SelfIdentity | undefined;
  overlay: Cidr;
  ownPodCidrs: Cidr[];
  claimedKeys: Map<string, string>;
  claimedCidrs: Array<{ cidr: Cidr; owner: string }>;
  skipped: SkipReason[];
  warnings: string[];
  selfSeen: boolean;
}

/** Checks a Node's published key; returns the key, or undefined after recording why it is left out. */
function admitKey(node: MeshNode, pass: Pass): string | undefined {
  const skip = (reason: SkipReason['reason'], message: string): undefined => {
    pass.skipped.push({ name: node.name, reason, message, whole: true });
    return undefined;
  };
  const isSelf = node.name === pass.self?.name;
  const key = isSelf ? pass.self!.publicKey : node.annotations[ANNOTATION_PUBLIC_KEY];
  if (!isSelf) {
    if (key === undefined || key === '') return skip('no-public-key', 'has not published a WireGuard public key yet');
    if (!isValidKey(key)) return skip('invalid-public-key', `published public key "${key.slice(0, 60)}" is not a base64 WireGuard key`);
    if (key === pass.self?.publicKey) {
      if (!pass.selfSeen) pass.warnings.push(`older Node ${node.name} publishes this node's public key (a cloned machine?): rotate one of the keys`);
      return skip('own-public-key', `published this node's own public key`);
    }
  }
  // Other Nodes with the viewing node's key were skipped above, so a holder here is never about it.
  const holder = pass.claimedKeys.get(key!);
  if (holder !== undefined) return skip('duplicate-public-key', `publishes the same public key as older Node ${holder}`);
  pass.claimedKeys.set(key!, node.name);
  return key;
}

/**
 * A Node's PodCIDRs that may be routed to it: never the overlay, never the viewing node's own
 * PodCIDRs, never a range an older Node claimed (the viewing node keeps its own regardless).
 */
function admitPodCidrs(node: MeshNode, pass: Pass): string[] {
  const isSelf = node.name === pass.self?.name;
  const cidrs: string[] = [];
  for (const text of node.podCIDRs) {
    const c = parseCidr(text);
    if (!c) { pass.skipped.push({ name: node.name, reason: 'invalid-pod-cidr', message: `PodCIDR "${text}" is not a CIDR; dropped`, whole: false }); continue; }
    const norm = formatCidr(c);
    const dropped = (message: string): void => {
      pass.skipped.push({ name: node.name, reason: 'pod-cidr-conflict', message: `PodCIDR ${norm} ${message}; dropped`, whole: false });
    };
    if (cidrsOverlap(c, pass.overlay)) { dropped(`overlaps the overlay ${formatCidr(pass.overlay)}`); continue; }
    if (!isSelf && pass.ownPodCidrs.some((own) => cidrsOverlap(own, c))) { dropped(`overlaps this node's own PodCIDR`); continue; }
    const older = pass.claimedCidrs.find((k) => cidrsOverlap(k.cidr, c));
    if (older) {
      if (!isSelf) { dropped(`overlaps ${formatCidr(older.cidr)} of older Node ${older.owner}`); continue; }
    } else {
      pass.claimedCidrs.push({ cidr: c, owner: node.name });
    }
    cidrs.push(norm);
  }
  return cidrs.sort(compareCidrText);
}

/**
 * Decides the mesh from all Nodes and external peers. With `self` (the daemon's view) that node
 * uses its own key, is not listed among the members, and its own PodCIDRs are never routed to
 * another Node; without it (the operator commands' view) every admitted Node is a member.
 */
export function decideMembership(nodes: readonly MeshNode[], externalPeers: readonly ExternalPeer[], settings: MembershipSettings, self?: SelfIdentity): Membership {
  const overlay = parseOverlayCidr(settings.overlayCidr);
  const { addresses, problems } = assignOverlayAddresses(nodes, settings.overlayCidr);
  const selfNode = self ? nodes.find((n) => n.name === self.name) : undefined;
  const pass: Pass = {
    self,
    overlay,
    ownPodCidrs: (selfNode?.podCIDRs ?? []).map((c) => parseCidr(c)).filter((c): c is Cidr => !!c),
    claimedKeys: new Map(),
    claimedCidrs: [],
    skipped: [...problems],
    warnings: [],
    selfSeen: false,
  };
  const members: Member[] = [];
  for (const node of bySeniority(nodes)) {
    const isSelf = node.name === self?.name;
    pass.selfSeen ||= isSelf;
    const publicKey = admitKey(node, pass);
    if (publicKey === undefined) continue;
    const podCIDRs = admitPodCidrs(node, pass);
    if (isSelf) continue;
    const overlayAddress = addresses.get(node.name);
    if (!overlayAddress) { pass.skipped.push({ name: node.name, reason: 'no-overlay-address', message: 'got no overlay address', whole: true }); continue; }
    const ep = peerEndpoint(node, settings.listenPort);
    if (ep.problem) pass.skipped.push(ep.problem);
    if (!ep.endpoint) continue;
    members.push({ name: node.name, createdAt: node.createdAt, publicKey, overlayAddress, endpoint: ep.endpoint, podCIDRs });
  }
  // External peers are checked against every Node (not only the members) so every node skips the same ones.
  const verdicts = admitExternalPeers(externalPeers, externalPeerContext(nodes, addresses, self));
  pass.skipped.push(...verdicts.skipped);
  members.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { overlay, members, externalPeers: verdicts.peers, addresses, skipped: pass.skipped, warnings: pass.warnings };
}
