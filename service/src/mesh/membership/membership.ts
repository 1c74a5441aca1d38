/**
 * Membership: the one pure function that decides which Nodes and external peers are in the mesh,
 * with which overlay address, ranges and endpoint, and why anything (or any part) is left out.
 * The daemon, `showconf`, `graph` and `status` all use it. Every verdict follows from the Node and
 * Peer lists and the cluster-wide settings alone: ranges must pass the range rules, and every
 * conflict over a key or a range goes to the senior claimant (oldest first, then name, Nodes and
 * Peers alike), so every node reaches the same verdicts and a younger claimant never displaces an
 * older one. The incremental engine (engine.ts) reaches the same verdicts by running `judge` on
 * only the claimants a change touches.
 */
import { assignOverlayAddresses, parseOverlayCidr } from './addresses.js';
import { ANNOTATION_OVERLAY_ADDRESS6 } from '../annotations.js';
import { compareClaimants, nodeClaimant, peerClaimant, policyFor } from './claims.js';
import { validateExternalPeer, type AdmittedPeer } from './external-peers.js';
import { judge } from './judge.js';
import { byName } from './order.js';
import type { RangePolicy } from './ranges.js';
import type { ExternalPeer, MembershipSettings, MeshNode, SelfIdentity, SkipReason } from '../types.js';
import { type Cidr, hostCidr, parseIp } from '../../net/ip.js';

export type { MembershipSettings } from '../types.js';

/** One Node admitted to the mesh, as every member sees it. */
export interface Member {
  name: string;
  /** `metadata.creationTimestamp` in ms (Infinity when unknown), for seniority. */
  createdAt: number;
  publicKey: string;
  /** Overlay address without prefix length. */
  overlayAddress: string;
  /** IPv6 overlay address (dual-stack overlay) without prefix length. */
  overlayAddress6?: string | undefined;
  /** `host:port` other nodes and external peers dial. */
  endpoint: string;
  /** With more than one: every endpoint that may be dialled, best first (`endpoint` first), for failover. */
  candidates?: string[] | undefined;
  /** PodCIDRs routed to this Node (normalised, sorted). */
  podCIDRs: string[];
  /** In location granularity: what its location is reached by from the others (its addresses, allowed-location-ips). */
  locationRanges?: ReadonlyArray<{ dst: string; what: string }> | undefined;
}

/** A member's overlay addresses as host routes (IPv4, and IPv6 with a dual-stack overlay). */
export function overlayHosts(m: { overlayAddress: string; overlayAddress6?: string | undefined }): string[] {
  return [hostCidr(parseIp(m.overlayAddress)!), ...(m.overlayAddress6 ? [hostCidr(parseIp(m.overlayAddress6)!)] : [])];
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
  addresses: ReadonlyMap<string, string>;
  /** The IPv6 overlay, with a dual-stack overlay. */
  overlay6?: Cidr | undefined;
  /** The IPv6 overlay address of every Node that got one, with a dual-stack overlay. */
  addresses6?: ReadonlyMap<string, string> | undefined;
  /** Nodes and external peers (or parts of them) left out, with reasons, claimant by claimant oldest first. */
  skipped: SkipReason[];
  /** From the incremental engine: what changed since the membership it handed out before. */
  changes?: MembershipChanges | undefined;
  /** The range rules it judged by (pod CIDRs, minimum prefixes, protected addresses). */
  policy?: RangePolicy | undefined;
}

/** What changed between two memberships of one incremental engine. */
export interface MembershipChanges {
  /** The engine that handed out both (an object only compared by identity). */
  engine: object;
  /** Which of the engine's memberships this one is (1, 2, …). */
  version: number;
  /** Names of the Nodes whose member entry came, went or changed (every other member is the same object). */
  nodes: ReadonlySet<string>;
  /** True when the admitted external peers may have changed. */
  peers: boolean;
}

/**
 * Decides the mesh from all Nodes and external peers. With `self` (the daemon's view) that node
 * uses its own key (the same it publishes) and is not listed among the members; without it (the
 * operator commands' view) every admitted Node is a member. The verdicts are the same either way.
 */
export function decideMembership(
  nodes: readonly MeshNode[],
  externalPeers: readonly ExternalPeer[],
  settings: MembershipSettings,
  self?: SelfIdentity,
): Membership {
  const overlay = parseOverlayCidr(settings.overlayCidr);
  const { addresses, problems: problems4 } = assignOverlayAddresses(nodes, settings.overlayCidr);
  const six = settings.overlayCidr6
    ? assignOverlayAddresses(nodes, settings.overlayCidr6, ANNOTATION_OVERLAY_ADDRESS6)
    : undefined;
  const problems = [...problems4, ...(six?.problems ?? []).map(asIPv6Problem)];
  const policy = policyFor(nodes, settings, overlay);
  const invalidPeers: SkipReason[] = [];
  const claimants = nodes.map((n) => nodeClaimant(n, policy, self, settings));
  for (const raw of externalPeers) {
    const v = validateExternalPeer(raw);
    if (v.ok) claimants.push(peerClaimant(v.peer, policy));
    else invalidPeers.push(v.skip);
  }
  claimants.sort(compareClaimants);
  const problemsOf = new Map<string, SkipReason[]>();
  for (const p of problems) problemsOf.set(p.name, [...(problemsOf.get(p.name) ?? []), p]);
  const verdicts = judge(claimants, {
    settings,
    self,
    addresses,
    addresses6: six?.addresses,
    addressProblems: (name) => problemsOf.get(name) ?? [],
  });
  const members: Member[] = [];
  const admittedPeers: AdmittedPeer[] = [];
  const skipped: SkipReason[] = [];
  for (const c of claimants) {
    const v = verdicts.get(c)!;
    skipped.push(...v.skips);
    if (v.member) members.push(v.member);
    if (v.peer) admittedPeers.push(v.peer);
  }
  skipped.push(...invalidPeers);
  return {
    overlay,
    members: members.sort(byName),
    externalPeers: admittedPeers.sort(byName),
    addresses,
    skipped,
    policy,
    ...(six ? { overlay6: parseOverlayCidr(settings.overlayCidr6!), addresses6: six.addresses } : {}),
  };
}

/** A problem with a Node's IPv6 overlay address: only that address is missing, the Node stays in the mesh. */
export function asIPv6Problem(p: SkipReason): SkipReason {
  return {
    ...p,
    whole: false,
    message: `IPv6 overlay: ${p.message}${p.reason === 'no-overlay-address' ? '; the node is reached over IPv4 only' : ''}`,
  };
}
