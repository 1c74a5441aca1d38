/**
 * The cluster-wide view of the mesh, seen from no node in particular: every Node that takes
 * part (key, overlay address, endpoint, the PodCIDRs it is routed for) and every valid external
 * Peer, with the reasons for everything left out. This is what `showconf peer` gives an external
 * peer and what `graph` draws. The rules are computeDesired's, minus what only matters to one
 * node (its own PodCIDRs, its own key).
 */
import { assignOverlayAddresses, parseOverlayCidr } from './addresses.js';
import { ANNOTATION_PUBLIC_KEY } from './annotations.js';
import { peerEndpoint } from './desired.js';
import { bySeniority } from './order.js';
import { type PeerPlan, type ValidPeer, peerContext, planPeers } from './peers.js';
import type { MeshNode, MeshPeer, SkipReason } from './types.js';
import { type Cidr, cidrsOverlap, compareCidrText, formatCidr, parseCidr } from '../net/ip.js';
import { isValidKey } from '../wireguard/keys.js';

/** One Node as every member of the mesh sees it. */
export interface NodeView {
  name: string;
  /** `metadata.creationTimestamp` in ms (Infinity when unknown), for seniority. */
  createdAt: number;
  publicKey: string;
  /** Overlay address without prefix length. */
  overlayAddress: string;
  /** `host:port` other nodes and peers dial. */
  endpoint: string;
  /** PodCIDRs routed to this Node (normalised, sorted). */
  podCIDRs: string[];
}

/** The whole mesh. */
export interface MeshView {
  /** Overlay network in CIDR form. */
  overlayCidr: string;
  /** Nodes in the mesh, sorted by name. */
  nodes: NodeView[];
  /** Valid external Peers, sorted by name. */
  peers: ValidPeer[];
  /** Nodes and Peers (or parts of them) left out, with reasons. */
  skipped: SkipReason[];
}

/** Computes the mesh as a whole from all Nodes and Peers. */
export function meshView(nodes: readonly MeshNode[], peers: readonly MeshPeer[], settings: { overlayCidr: string; listenPort: number }): MeshView {
  const overlay = parseOverlayCidr(settings.overlayCidr);
  const { addresses, problems } = assignOverlayAddresses(nodes, settings.overlayCidr);
  const skipped: SkipReason[] = [...problems];
  const keys = new Map<string, string>();
  const claimed: Array<{ cidr: Cidr; owner: string }> = [];
  const out: NodeView[] = [];
  for (const node of bySeniority(nodes)) {
    const skip = (reason: SkipReason['reason'], message: string): void => {
      skipped.push({ name: node.name, reason, message, whole: true });
    };
    const key = node.annotations[ANNOTATION_PUBLIC_KEY];
    if (key === undefined || key === '') { skip('no-public-key', 'has not published a WireGuard public key yet'); continue; }
    if (!isValidKey(key)) { skip('invalid-public-key', `published public key "${key.slice(0, 60)}" is not a base64 WireGuard key`); continue; }
    const holder = keys.get(key);
    if (holder !== undefined) { skip('duplicate-public-key', `publishes the same public key as older Node ${holder}`); continue; }
    keys.set(key, node.name);

    const cidrs: string[] = [];
    for (const text of node.podCIDRs) {
      const c = parseCidr(text);
      if (!c) { skipped.push({ name: node.name, reason: 'invalid-pod-cidr', message: `PodCIDR "${text}" is not a CIDR; dropped`, whole: false }); continue; }
      const norm = formatCidr(c);
      if (cidrsOverlap(c, overlay)) {
        skipped.push({ name: node.name, reason: 'pod-cidr-conflict', message: `PodCIDR ${norm} overlaps the overlay ${formatCidr(overlay)}; dropped`, whole: false });
        continue;
      }
      const older = claimed.find((k) => cidrsOverlap(k.cidr, c));
      if (older) {
        skipped.push({ name: node.name, reason: 'pod-cidr-conflict', message: `PodCIDR ${norm} overlaps ${formatCidr(older.cidr)} of older Node ${older.owner}; dropped`, whole: false });
        continue;
      }
      claimed.push({ cidr: c, owner: node.name });
      cidrs.push(norm);
    }

    const address = addresses.get(node.name);
    if (!address) { skip('no-overlay-address', 'got no overlay address'); continue; }
    const ep = peerEndpoint(node, settings.listenPort);
    if (ep.problem) skipped.push(ep.problem);
    if (!ep.endpoint) continue;
    out.push({ name: node.name, createdAt: node.createdAt, publicKey: key, overlayAddress: address, endpoint: ep.endpoint, podCIDRs: cidrs.sort(compareCidrText) });
  }
  const plan: PeerPlan = planPeers(peers, peerContext(nodes, addresses));
  skipped.push(...plan.skipped);
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { overlayCidr: formatCidr(overlay), nodes: out, peers: plan.peers, skipped };
}
