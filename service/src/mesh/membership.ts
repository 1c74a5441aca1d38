/**
 * Membership: the one pure function that decides which Nodes and external peers are in the mesh,
 * with which overlay address, ranges and endpoint, and why anything (or any part) is left out.
 * The daemon, `showconf`, `graph` and `status` all use it. Every verdict follows from the Node and
 * Peer lists and the cluster-wide settings alone: ranges must pass the range rules, and every
 * conflict over a key or a range goes to the senior claimant (oldest first, then name, Nodes and
 * Peers alike), so every node reaches the same verdicts and a younger claimant never displaces an
 * older one.
 */
import { assignOverlayAddresses, parseOverlayCidr } from './addresses.js';
import { ANNOTATION_ENDPOINT, ANNOTATION_PUBLIC_KEY } from './annotations.js';
import { AddressIndex, CidrIndex } from './cidr-index.js';
import { peerEndpoint } from './endpoints.js';
import { validateExternalPeer, type AdmittedPeer } from './external-peers.js';
import { isValidKey } from './keys.js';
import { compareSeniority } from './order.js';
import { DEFAULT_MIN_PREFIX, DEFAULT_POD_CIDRS, rangeProblem, type RangePolicy } from './ranges.js';
import { quoted } from './text.js';
import type { ExternalPeer, MembershipSettings, MeshNode, SelfIdentity, SkipReason } from './types.js';
import { type Cidr, compareCidrText, formatCidr, formatHostPort, parseCidr, parseHostPort, parseIp } from '../net/ip.js';

export type { MembershipSettings } from './types.js';

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
  /** Admitted external peers, sorted by name (endpoints resolved when the settings resolve names). */
  externalPeers: AdmittedPeer[];
  /** The overlay address of every Node that got one (name → address). */
  addresses: Map<string, string>;
  /** Nodes and external peers (or parts of them) left out, with reasons. */
  skipped: SkipReason[];
}

/** A Node or a valid external peer, in the one seniority order. */
type Claimant = { kind: 'node'; name: string; createdAt: number; node: MeshNode } | { kind: 'peer'; name: string; createdAt: number; peer: AdmittedPeer };

/** Running state of one pass over the claimants, oldest first. */
interface Pass {
  self: SelfIdentity | undefined;
  settings: MembershipSettings;
  policy: RangePolicy;
  claimedKeys: Map<string, string>;
  claimedRanges: CidrIndex<string>;
  skipped: SkipReason[];
}

const who = (c: Claimant): string => `${c.kind === 'node' ? 'Node' : 'Peer'} ${c.name}`;

/** The range rules' inputs: cluster pod CIDRs, minimum prefix, overlay, and every protected address. */
function rangePolicy(nodes: readonly MeshNode[], settings: MembershipSettings, overlay: Cidr): RangePolicy {
  const protectedAddresses = new AddressIndex<string>();
  for (const text of settings.protectedAddresses ?? []) {
    const ip = parseIp(text);
    if (ip) protectedAddresses.add(ip, 'the API server\'s address');
  }
  for (const node of nodes) {
    const published = settings.publishedEndpoints === 'any' ? parseHostPort(node.annotations[ANNOTATION_ENDPOINT] ?? '')?.host : undefined;
    for (const [kind, list] of [['InternalIP', node.internalIPs], ['ExternalIP', node.externalIPs], ['published endpoint', published ? [published] : []]] as const) {
      for (const text of list) {
        const ip = parseIp(text);
        if (ip) protectedAddresses.add(ip, `the ${kind} of Node ${node.name}`);
      }
    }
  }
  const podCidrs = (settings.podCidrs ?? DEFAULT_POD_CIDRS).map((t) => parseCidr(t)).filter((c): c is Cidr => !!c);
  return { podCidrs, minPrefix: settings.minPrefix ?? DEFAULT_MIN_PREFIX, overlay, protectedAddresses };
}

/** Checks a claimant's key; returns it, or undefined after recording why the claimant is left out. */
function admitKey(c: Claimant, pass: Pass): string | undefined {
  const skip = (reason: SkipReason['reason'], message: string): undefined => {
    pass.skipped.push({ name: c.name, ...(c.kind === 'peer' ? { kind: 'peer' as const } : {}), reason, message, whole: true });
    return undefined;
  };
  const isSelf = c.kind === 'node' && c.name === pass.self?.name;
  const key = c.kind === 'peer' ? c.peer.publicKey : isSelf ? pass.self!.publicKey : c.node.annotations[ANNOTATION_PUBLIC_KEY];
  if (c.kind === 'node' && !isSelf) {
    if (key === undefined || key === '') return skip('no-public-key', 'has not published a WireGuard public key yet');
    if (!isValidKey(key)) return skip('invalid-public-key', `published public key ${quoted(key)} is not a base64 WireGuard key`);
  }
  const holder = pass.claimedKeys.get(key!);
  if (holder !== undefined) {
    return skip('duplicate-public-key', c.kind === 'node' ? `publishes the same public key as older ${holder}` : `duplicate public key: older ${holder} already uses ${key}`);
  }
  pass.claimedKeys.set(key!, who(c));
  return key;
}

/** A Node's PodCIDRs that may be routed to it: those that pass the range rules and no senior claimant holds. */
function admitPodCidrs(node: MeshNode, pass: Pass): string[] {
  const cidrs: string[] = [];
  for (const text of node.podCIDRs) {
    const c = parseCidr(text);
    if (!c) { pass.skipped.push({ name: node.name, reason: 'invalid-pod-cidr', message: `PodCIDR ${quoted(text)} is not a CIDR; dropped`, whole: false }); continue; }
    const norm = formatCidr(c);
    const problem = rangeProblem(c, pass.policy, true);
    if (problem) { pass.skipped.push({ name: node.name, reason: 'pod-cidr-refused', message: `PodCIDR ${norm} ${problem}; dropped`, whole: false }); continue; }
    const older = pass.claimedRanges.overlapping(c);
    if (older) {
      pass.skipped.push({ name: node.name, reason: 'pod-cidr-conflict', message: `PodCIDR ${norm} overlaps ${formatCidr(older.cidr)} of older ${older.owner}; dropped`, whole: false });
      continue;
    }
    pass.claimedRanges.add(c, `Node ${node.name}`);
    cidrs.push(norm);
  }
  return cidrs.sort(compareCidrText);
}

/** An external peer's ranges: all pass the range rules and no senior claimant holds any, or it is left out. */
function admitPeerRanges(peer: AdmittedPeer, pass: Pass): boolean {
  const cidrs = peer.allowedIPs.map((t) => parseCidr(t)!);
  let problem: { reason: SkipReason['reason']; message: string } | undefined;
  for (const [i, c] of cidrs.entries()) {
    const refused = rangeProblem(c, pass.policy, false);
    if (refused) { problem = { reason: 'allowed-ips-refused', message: `allowedIPs ${peer.allowedIPs[i]} ${refused}` }; break; }
    const older = pass.claimedRanges.overlapping(c);
    if (older) { problem = { reason: 'allowed-ips-conflict', message: `allowedIPs ${peer.allowedIPs[i]} overlaps ${formatCidr(older.cidr)} of older ${older.owner}` }; break; }
  }
  if (problem) {
    pass.skipped.push({ name: peer.name, kind: 'peer', ...problem, whole: true });
    return false;
  }
  for (const c of cidrs) pass.claimedRanges.add(c, `Peer ${peer.name}`);
  return true;
}

/** An external peer's endpoint with its DNS name resolved (when the settings resolve names), or undefined after recording why not. */
function resolveEndpoint(peer: AdmittedPeer, pass: Pass): AdmittedPeer | undefined {
  const resolved = pass.settings.resolved;
  if (!peer.endpointName || !resolved) return peer;
  const address = resolved.get(peer.endpointName);
  if (address === undefined) {
    pass.skipped.push({ name: peer.name, kind: 'peer', reason: 'unresolved-endpoint', message: `endpoint name ${quoted(peer.endpointName)} does not resolve (yet); the Peer is left out until it does`, whole: true });
    return undefined;
  }
  return { ...peer, endpoint: formatHostPort(address, parseHostPort(peer.endpoint!)!.port) };
}

/** Validates the external peers on their own (Kilo's rules); the valid ones become claimants. */
function peerClaimants(externalPeers: readonly ExternalPeer[], skipped: SkipReason[]): Claimant[] {
  const out: Claimant[] = [];
  for (const raw of externalPeers) {
    const v = validateExternalPeer(raw);
    if (v.ok) out.push({ kind: 'peer', name: v.peer.name, createdAt: v.peer.createdAt, peer: v.peer });
    else skipped.push(v.skip);
  }
  return out;
}

/**
 * Decides the mesh from all Nodes and external peers. With `self` (the daemon's view) that node
 * uses its own key (the same it publishes) and is not listed among the members; without it (the
 * operator commands' view) every admitted Node is a member. The verdicts are the same either way.
 */
export function decideMembership(nodes: readonly MeshNode[], externalPeers: readonly ExternalPeer[], settings: MembershipSettings, self?: SelfIdentity): Membership {
  const overlay = parseOverlayCidr(settings.overlayCidr);
  const { addresses, problems } = assignOverlayAddresses(nodes, settings.overlayCidr);
  const pass: Pass = {
    self, settings, policy: rangePolicy(nodes, settings, overlay), claimedKeys: new Map(), claimedRanges: new CidrIndex(),
    skipped: [...problems],
  };
  const invalidPeers: SkipReason[] = [];
  const claimants: Claimant[] = [...nodes.map((node): Claimant => ({ kind: 'node', name: node.name, createdAt: node.createdAt, node })), ...peerClaimants(externalPeers, invalidPeers)];
  claimants.sort((a, b) => compareSeniority(a, b) || (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0));
  const members: Member[] = [];
  const admittedPeers: AdmittedPeer[] = [];
  for (const c of claimants) {
    const isSelf = c.kind === 'node' && c.name === self?.name;
    const publicKey = admitKey(c, pass);
    if (publicKey === undefined) continue;
    if (c.kind === 'peer') {
      const peer = admitPeerRanges(c.peer, pass) ? resolveEndpoint(c.peer, pass) : undefined;
      if (peer) admittedPeers.push(peer);
      continue;
    }
    const podCIDRs = admitPodCidrs(c.node, pass);
    if (isSelf) continue;
    const overlayAddress = addresses.get(c.name);
    if (!overlayAddress) { pass.skipped.push({ name: c.name, reason: 'no-overlay-address', message: 'got no overlay address', whole: true }); continue; }
    const ep = peerEndpoint(c.node, settings.listenPort, settings.publishedEndpoints);
    if (ep.problem) pass.skipped.push(ep.problem);
    if (!ep.endpoint) continue;
    members.push({ name: c.name, createdAt: c.createdAt, publicKey, overlayAddress, endpoint: ep.endpoint, podCIDRs });
  }
  pass.skipped.push(...invalidPeers);
  const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return { overlay, members: members.sort(byName), externalPeers: admittedPeers.sort(byName), addresses, skipped: pass.skipped };
}
