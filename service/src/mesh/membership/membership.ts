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
import {
  ANNOTATION_ENDPOINT,
  ANNOTATION_OVERLAY_ADDRESS6,
  ANNOTATION_PUBLIC_KEY,
  KILO_FORCE_ENDPOINT,
} from '../annotations.js';
import { AddressIndex, CidrIndex } from './cidr-index.js';
import { peerCandidates, peerEndpoint } from './endpoints.js';
import { validateExternalPeer, type AdmittedPeer } from './external-peers.js';
import { isValidKey } from './keys.js';
import { byName, compareSeniority } from './order.js';
import {
  DEFAULT_MIN_PREFIX,
  DEFAULT_POD_CIDRS,
  rangeProblem,
  type ProtectedOwner,
  type RangePolicy,
} from './ranges.js';
import { quoted } from '../text.js';
import type { ExternalPeer, MembershipSettings, MeshNode, SelfIdentity, SkipReason } from '../types.js';
import {
  type Cidr,
  type Ip,
  compareCidrText,
  formatCidr,
  formatHostPort,
  hostCidr,
  parseCidr,
  parseHostPort,
  parseIp,
} from '../../net/ip.js';

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

/** One range a claimant asks for, parsed once, with the range rules' verdict. */
export interface ClaimedRange {
  text: string;
  /** Undefined when the text is not a CIDR. */
  cidr: Cidr | undefined;
  /** Why the range rules refuse it (a phrase), if they do. */
  refused: string | undefined;
}

/** A Node or a valid external peer, with everything it claims parsed once. */
export interface Claimant {
  kind: 'node' | 'peer';
  name: string;
  createdAt: number;
  node: MeshNode | undefined;
  peer: AdmittedPeer | undefined;
  /** The key it claims; undefined when it has none to claim (then `keySkip` says why). */
  key: string | undefined;
  keySkip: SkipReason | undefined;
  ranges: ClaimedRange[];
}

/** What membership decided about one claimant. */
export interface Verdict {
  skips: SkipReason[];
  member?: Member | undefined;
  peer?: AdmittedPeer | undefined;
}

/** What `judge` needs besides the claimants. */
export interface JudgeContext {
  settings: MembershipSettings;
  self: SelfIdentity | undefined;
  addresses: ReadonlyMap<string, string>;
  /** IPv6 overlay addresses (dual-stack overlay). */
  addresses6?: ReadonlyMap<string, string> | undefined;
  /** Address problems of a Node (they come first among its skips). */
  addressProblems(name: string): readonly SkipReason[];
}

const who = (c: Pick<Claimant, 'kind' | 'name'>): string => `${c.kind === 'node' ? 'Node' : 'Peer'} ${c.name}`;

/** Seniority of claimants: oldest first, then name, then Nodes before Peers. */
export function compareClaimants(
  a: Pick<Claimant, 'createdAt' | 'name' | 'kind'>,
  b: Pick<Claimant, 'createdAt' | 'name' | 'kind'>,
): number {
  return compareSeniority(a, b) || (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0);
}

/** The owner named for the API server's addresses. */
const API_SERVER: ProtectedOwner = { label: "the API server's address", name: '', createdAt: -Infinity };

/** The cluster pod CIDRs, minimum prefixes and the API server's addresses; Nodes' addresses are added by the caller. */
export function basePolicy(settings: MembershipSettings, overlay: Cidr): RangePolicy {
  const podCidrs = (settings.podCidrs ?? DEFAULT_POD_CIDRS).map((t) => parseCidr(t)).filter((c): c is Cidr => !!c);
  const overlay6 = settings.overlayCidr6 ? parseCidr(settings.overlayCidr6) : undefined;
  const policy: RangePolicy = {
    podCidrs,
    minPrefix: settings.minPrefix ?? DEFAULT_MIN_PREFIX,
    overlay,
    ...(overlay6 ? { overlay6 } : {}),
    protectedAddresses: new AddressIndex<ProtectedOwner>(),
  };
  for (const text of settings.protectedAddresses ?? []) {
    const ip = parseIp(text);
    if (ip) policy.protectedAddresses.add(ip, API_SERVER);
  }
  return policy;
}

/** The addresses of a Node no range may contain, with what each is (published endpoints only when believed). */
export function protectedOf(node: MeshNode, settings: MembershipSettings): Array<{ ip: Ip; owner: ProtectedOwner }> {
  const published =
    settings.publishedEndpoints === 'any'
      ? parseHostPort(node.annotations[ANNOTATION_ENDPOINT] ?? '')?.host
      : undefined;
  const forced = parseHostPort(node.annotations[KILO_FORCE_ENDPOINT] ?? '')?.host;
  const out: Array<{ ip: Ip; owner: ProtectedOwner }> = [];
  for (const [kind, list] of [
    ['InternalIP', node.internalIPs],
    ['ExternalIP', node.externalIPs],
    ['published endpoint', published ? [published] : []],
    ['forced endpoint', forced ? [forced] : []],
  ] as const) {
    for (const text of list) {
      const ip = parseIp(text);
      if (ip)
        out.push({
          ip,
          owner: { label: `the ${kind} of Node ${node.name}`, name: node.name, createdAt: node.createdAt },
        });
    }
  }
  return out;
}

/** Makes the claimant of a Node (the viewing node claims its own key). */
export function nodeClaimant(node: MeshNode, policy: RangePolicy, self: SelfIdentity | undefined): Claimant {
  const isSelf = node.name === self?.name;
  const published = node.annotations[ANNOTATION_PUBLIC_KEY];
  let key: string | undefined = isSelf ? self!.publicKey : published;
  let keySkip: SkipReason | undefined;
  if (!isSelf && (published === undefined || published === ''))
    keySkip = {
      name: node.name,
      reason: 'no-public-key',
      message: 'has not published a WireGuard public key yet',
      whole: true,
    };
  else if (!isSelf && !isValidKey(published!))
    keySkip = {
      name: node.name,
      reason: 'invalid-public-key',
      message: `published public key ${quoted(published!)} is not a base64 WireGuard key`,
      whole: true,
    };
  if (keySkip) key = undefined;
  const ranges = node.podCIDRs.map((text) => {
    const cidr = parseCidr(text);
    return { text, cidr, refused: cidr ? rangeProblem(cidr, policy, true) : undefined };
  });
  return { kind: 'node', name: node.name, createdAt: node.createdAt, node, peer: undefined, key, keySkip, ranges };
}

/** Makes the claimant of a valid external peer. */
export function peerClaimant(peer: AdmittedPeer, policy: RangePolicy): Claimant {
  const ranges = peer.allowedIPs.map((text) => {
    const cidr = parseCidr(text)!;
    return { text, cidr, refused: rangeProblem(cidr, policy, false) };
  });
  return {
    kind: 'peer',
    name: peer.name,
    createdAt: peer.createdAt,
    node: undefined,
    peer,
    key: peer.publicKey,
    keySkip: undefined,
    ranges,
  };
}

/** Running state of one judgement over claimants, oldest first. */
interface Pass {
  ctx: JudgeContext;
  claimedKeys: Map<string, string>;
  /** Claimed ranges with the rank (seniority position) of their owner, so conflicts name the most senior. */
  claimedRanges: CidrIndex<{ rank: number; owner: string }>;
}

const bySeniorOwner = (a: { rank: number }, b: { rank: number }): number => a.rank - b.rank;

/** A Node's PodCIDRs that may be routed to it: those that pass the range rules and no senior claimant holds. */
function admitPodCidrs(c: Claimant, rank: number, pass: Pass, skips: SkipReason[]): string[] {
  const cidrs: string[] = [];
  for (const r of c.ranges) {
    if (!r.cidr) {
      skips.push({
        name: c.name,
        reason: 'invalid-pod-cidr',
        message: `PodCIDR ${quoted(r.text)} is not a CIDR; dropped`,
        whole: false,
      });
      continue;
    }
    const norm = formatCidr(r.cidr);
    if (r.refused) {
      skips.push({
        name: c.name,
        reason: 'pod-cidr-refused',
        message: `PodCIDR ${norm} ${r.refused}; dropped`,
        whole: false,
      });
      continue;
    }
    const older = pass.claimedRanges.overlapping(r.cidr, bySeniorOwner);
    if (older) {
      skips.push({
        name: c.name,
        reason: 'pod-cidr-conflict',
        message: `PodCIDR ${norm} overlaps ${formatCidr(older.cidr)} of older ${older.owner.owner}; dropped`,
        whole: false,
      });
      continue;
    }
    pass.claimedRanges.add(r.cidr, { rank, owner: who(c) });
    cidrs.push(norm);
  }
  return cidrs.sort(compareCidrText);
}

/** An external peer's ranges: all pass the range rules and no senior claimant holds any, or it is left out. */
function admitPeerRanges(c: Claimant, rank: number, pass: Pass, skips: SkipReason[]): boolean {
  for (const r of c.ranges) {
    const message = r.refused ? `allowedIPs ${r.text} ${r.refused}` : undefined;
    const older = message ? undefined : pass.claimedRanges.overlapping(r.cidr!, bySeniorOwner);
    if (message || older) {
      skips.push({
        name: c.name,
        kind: 'peer',
        reason: message ? 'allowed-ips-refused' : 'allowed-ips-conflict',
        message: message ?? `allowedIPs ${r.text} overlaps ${formatCidr(older!.cidr)} of older ${older!.owner.owner}`,
        whole: true,
      });
      return false;
    }
  }
  for (const r of c.ranges) pass.claimedRanges.add(r.cidr!, { rank, owner: who(c) });
  return true;
}

/** An external peer's endpoint with its DNS name resolved (when the settings resolve names), or undefined after recording why not. */
function resolveEndpoint(
  peer: AdmittedPeer,
  settings: MembershipSettings,
  skips: SkipReason[],
): AdmittedPeer | undefined {
  const resolved = settings.resolved;
  if (!peer.endpointName || !resolved) return peer;
  const address = resolved.get(peer.endpointName);
  if (address === undefined) {
    skips.push({
      name: peer.name,
      kind: 'peer',
      reason: 'unresolved-endpoint',
      message: `endpoint name ${quoted(peer.endpointName)} does not resolve (yet); the Peer is left out until it does`,
      whole: true,
    });
    return undefined;
  }
  return { ...peer, endpoint: formatHostPort(address, parseHostPort(peer.endpoint!)!.port) };
}

/** The verdict on one claimant, given the keys and ranges its seniors claimed. */
function judgeOne(c: Claimant, rank: number, pass: Pass): Verdict {
  const skips: SkipReason[] = c.kind === 'node' ? [...pass.ctx.addressProblems(c.name)] : [];
  if (c.keySkip) return { skips: [...skips, c.keySkip] };
  const holder = pass.claimedKeys.get(c.key!);
  if (holder !== undefined) {
    const message =
      c.kind === 'node'
        ? `publishes the same public key as older ${holder}`
        : `duplicate public key: older ${holder} already uses ${c.key}`;
    return {
      skips: [
        ...skips,
        {
          name: c.name,
          ...(c.kind === 'peer' ? { kind: 'peer' as const } : {}),
          reason: 'duplicate-public-key',
          message,
          whole: true,
        },
      ],
    };
  }
  pass.claimedKeys.set(c.key!, who(c));
  if (c.kind === 'peer') {
    const peer = admitPeerRanges(c, rank, pass, skips) ? resolveEndpoint(c.peer!, pass.ctx.settings, skips) : undefined;
    return { skips, peer };
  }
  const podCIDRs = admitPodCidrs(c, rank, pass, skips);
  if (c.name === pass.ctx.self?.name) return { skips };
  const overlayAddress = pass.ctx.addresses.get(c.name);
  if (!overlayAddress) {
    if (!skips.some((s) => s.reason === 'no-overlay-address'))
      skips.push({ name: c.name, reason: 'no-overlay-address', message: 'got no overlay address', whole: true });
    return { skips };
  }
  const ep = peerEndpoint(c.node!, pass.ctx.settings.listenPort, pass.ctx.settings.publishedEndpoints);
  if (ep.problem) skips.push(ep.problem);
  if (!ep.endpoint) return { skips };
  const overlayAddress6 = pass.ctx.addresses6?.get(c.name);
  const candidates = peerCandidates(c.node!, ep.endpoint, pass.ctx.settings.listenPort);
  return {
    skips,
    member: {
      name: c.name,
      createdAt: c.createdAt,
      publicKey: c.key!,
      overlayAddress,
      ...(overlayAddress6 ? { overlayAddress6 } : {}),
      endpoint: ep.endpoint,
      ...(candidates.length > 1 ? { candidates } : {}),
      podCIDRs,
    },
  };
}

/**
 * Decides claimants that conflict with nobody outside them, oldest first: each claims its key and
 * then its ranges, and anything a senior claimed first is refused.
 */
export function judge(claimants: readonly Claimant[], ctx: JudgeContext): Map<Claimant, Verdict> {
  const pass: Pass = { ctx, claimedKeys: new Map(), claimedRanges: new CidrIndex() };
  const out = new Map<Claimant, Verdict>();
  claimants.forEach((c, rank) => out.set(c, judgeOne(c, rank, pass)));
  return out;
}

/** The range policy for a whole Node list, with every Node's addresses protected. */
export function policyFor(nodes: readonly MeshNode[], settings: MembershipSettings, overlay: Cidr): RangePolicy {
  const policy = basePolicy(settings, overlay);
  for (const node of nodes) for (const p of protectedOf(node, settings)) policy.protectedAddresses.add(p.ip, p.owner);
  return policy;
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
  const claimants = nodes.map((n) => nodeClaimant(n, policy, self));
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
