/**
 * The judgement of claimants, oldest first: each claims its key, then its PodCIDRs or allowed IPs;
 * once every claimant's are in, the Nodes' location ranges (location granularity) are claimed in
 * the same order, so a location's extra ranges never displace anyone's pods. Anything a senior
 * claimed first is refused, with one reason each.
 */
import type { Claimant, ClaimedRange } from './claims.js';
import { CidrIndex } from './cidr-index.js';
import { peerCandidates, peerEndpoint } from './endpoints.js';
import type { AdmittedPeer } from './external-peers.js';
import type { Member } from './membership.js';
import { quoted } from '../text.js';
import type { MembershipSettings, SelfIdentity, SkipReason } from '../types.js';
import { compareCidrText, formatCidr, formatHostPort, parseHostPort } from '../../net/ip.js';

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

/** Running state of one judgement over claimants, oldest first. */
interface Pass {
  ctx: JudgeContext;
  claimedKeys: Map<string, string>;
  /** Claimed ranges with the rank (seniority position) of their owner, so conflicts name the most senior. */
  claimedRanges: CidrIndex<{ rank: number; owner: string }>;
}

const who = (c: Pick<Claimant, 'kind' | 'name'>): string => `${c.kind === 'node' ? 'Node' : 'Peer'} ${c.name}`;
const bySeniorOwner = (a: { rank: number }, b: { rank: number }): number => a.rank - b.rank;

/** How a refused range is reported, by what kind of claim it was. */
const REASONS = {
  pod: { invalid: 'invalid-pod-cidr', refused: 'pod-cidr-refused', conflict: 'pod-cidr-conflict' },
  location: {
    invalid: 'invalid-location-range',
    refused: 'location-range-refused',
    conflict: 'location-range-conflict',
  },
} as const;

/** One claimant being judged: its seniority rank and the skips recorded for it so far. */
interface Judging {
  c: Claimant;
  rank: number;
  skips: SkipReason[];
}

/**
 * The ranges of one claimant that pass the range rules and that no senior claimant holds (claimed
 * now), one skip per refused range; a range that overlaps only the claimant's own earlier claim is
 * dropped silently (it is routed to the claimant already).
 */
function admitRanges(j: Judging, ranges: readonly ClaimedRange[], pass: Pass, kind: keyof typeof REASONS): string[] {
  const out: string[] = [];
  const skip = (reason: SkipReason['reason'], message: string): void => {
    j.skips.push({ name: j.c.name, reason, message, whole: false });
  };
  for (const r of ranges) {
    if (!r.cidr) {
      skip(REASONS[kind].invalid, `${r.what} ${quoted(r.text)} is not a CIDR; dropped`);
      continue;
    }
    const norm = formatCidr(r.cidr);
    if (r.refused) {
      skip(REASONS[kind].refused, `${r.what} ${norm} ${r.refused}; dropped`);
      continue;
    }
    const older = pass.claimedRanges.overlapping(r.cidr, bySeniorOwner);
    if (older?.owner.rank === j.rank) continue;
    if (older) {
      const whose = kind === 'pod' ? `older ${older.owner.owner}` : `${older.owner.owner}, claimed first`;
      skip(REASONS[kind].conflict, `${r.what} ${norm} overlaps ${formatCidr(older.cidr)} of ${whose}; dropped`);
      continue;
    }
    pass.claimedRanges.add(r.cidr, { rank: j.rank, owner: who(j.c) });
    out.push(norm);
  }
  return out.sort(compareCidrText);
}

/** An external peer's ranges: all pass the range rules and no senior claimant holds any, or it is left out. */
function admitPeerRanges(j: Judging, pass: Pass): boolean {
  for (const r of j.c.ranges) {
    const message = r.refused ? `allowedIPs ${r.text} ${r.refused}` : undefined;
    const older = message ? undefined : pass.claimedRanges.overlapping(r.cidr!, bySeniorOwner);
    if (message || older) {
      j.skips.push({
        name: j.c.name,
        kind: 'peer',
        reason: message ? 'allowed-ips-refused' : 'allowed-ips-conflict',
        message: message ?? `allowedIPs ${r.text} overlaps ${formatCidr(older!.cidr)} of older ${older!.owner.owner}`,
        whole: true,
      });
      return false;
    }
  }
  for (const r of j.c.ranges) pass.claimedRanges.add(r.cidr!, { rank: j.rank, owner: who(j.c) });
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

/** Claims the key of a claimant; false (with the skip recorded) when a senior claimant holds it. */
function claimKey(j: Judging, pass: Pass): boolean {
  const { c } = j;
  const holder = pass.claimedKeys.get(c.key!);
  if (holder === undefined) {
    pass.claimedKeys.set(c.key!, who(c));
    return true;
  }
  const message =
    c.kind === 'node'
      ? `publishes the same public key as older ${holder}`
      : `duplicate public key: older ${holder} already uses ${c.key}`;
  j.skips.push({
    name: c.name,
    ...(c.kind === 'peer' ? { kind: 'peer' as const } : {}),
    reason: 'duplicate-public-key',
    message,
    whole: true,
  });
  return false;
}

/** A Node's member entry (without its location ranges, claimed later), or undefined with the reason recorded. */
function memberOf(j: Judging, podCIDRs: string[], pass: Pass): Member | undefined {
  const { c, skips } = j;
  const { settings } = pass.ctx;
  const overlayAddress = pass.ctx.addresses.get(c.name);
  if (!overlayAddress) {
    if (!skips.some((s) => s.reason === 'no-overlay-address'))
      skips.push({ name: c.name, reason: 'no-overlay-address', message: 'got no overlay address', whole: true });
    return undefined;
  }
  const ep = peerEndpoint(c.node!, settings.listenPort, settings.publishedEndpoints);
  if (ep.problem) skips.push(ep.problem);
  if (!ep.endpoint) return undefined;
  const overlayAddress6 = pass.ctx.addresses6?.get(c.name);
  const candidates = peerCandidates(c.node!, ep.endpoint, settings.listenPort);
  return {
    name: c.name,
    createdAt: c.createdAt,
    publicKey: c.key!,
    overlayAddress,
    ...(overlayAddress6 ? { overlayAddress6 } : {}),
    endpoint: ep.endpoint,
    ...(candidates.length > 1 ? { candidates } : {}),
    podCIDRs,
  };
}

/** The verdict on one claimant, given the keys and ranges its seniors claimed; `claims` tells whether its location ranges may be claimed next. */
function judgeOne(j: Judging, pass: Pass): { verdict: Verdict; claims: boolean } {
  const { c, skips } = j;
  if (c.kind === 'node') skips.push(...pass.ctx.addressProblems(c.name));
  if (c.keySkip) {
    skips.push(c.keySkip);
    return { verdict: { skips }, claims: false };
  }
  if (!claimKey(j, pass)) return { verdict: { skips }, claims: false };
  if (c.kind === 'peer') {
    const peer = admitPeerRanges(j, pass) ? resolveEndpoint(c.peer!, pass.ctx.settings, skips) : undefined;
    return { verdict: { skips, peer }, claims: false };
  }
  const podCIDRs = admitRanges(j, c.ranges, pass, 'pod');
  if (c.name === pass.ctx.self?.name) return { verdict: { skips }, claims: true };
  const member = memberOf(j, podCIDRs, pass);
  return { verdict: { skips, member }, claims: member !== undefined };
}

/**
 * Decides claimants that conflict with nobody outside them, oldest first: each claims its key and
 * then its ranges, and anything a senior claimed first is refused; then, in the same order, the
 * Nodes' location ranges.
 */
export function judge(claimants: readonly Claimant[], ctx: JudgeContext): Map<Claimant, Verdict> {
  const pass: Pass = { ctx, claimedKeys: new Map(), claimedRanges: new CidrIndex() };
  const out = new Map<Claimant, Verdict>();
  const located: Array<{ j: Judging; verdict: Verdict }> = [];
  claimants.forEach((c, rank) => {
    const j: Judging = { c, rank, skips: [] };
    const { verdict, claims } = judgeOne(j, pass);
    out.set(c, verdict);
    if (claims && c.locationRanges.length > 0) located.push({ j, verdict });
  });
  // The Nodes' own addresses first, then the extra ranges annotations name: an address a Node's
  // kubelet reports is never taken by another Node's allowed-location-ips.
  const kept = new Map<Verdict, string[]>();
  for (const phase of ['node-address', 'external'] as const) {
    for (const { j, verdict } of located) {
      const ranges = j.c.locationRanges.filter((r) => r.kind === phase);
      kept.set(verdict, [...(kept.get(verdict) ?? []), ...admitRanges(j, ranges, pass, 'location')]);
    }
  }
  for (const { j, verdict } of located) {
    if (!verdict.member) continue;
    const what = new Map(j.c.locationRanges.filter((r) => r.cidr).map((r) => [formatCidr(r.cidr!), r.what]));
    const locationRanges = kept
      .get(verdict)!
      .sort(compareCidrText)
      .map((dst) => ({ dst, what: what.get(dst)! }));
    verdict.member = { ...verdict.member, locationRanges };
  }
  return out;
}
