/**
 * What each Node and external peer claims — a key, PodCIDRs or allowed IPs, and in location
 * granularity its own addresses and Kilo's allowed-location-ips — parsed once with the range
 * rules' verdict on each range, and the range policy every claim is checked against.
 */
import { ANNOTATION_PUBLIC_KEY, KILO_ALLOWED_LOCATION_IPS } from '../annotations.js';
import { AddressIndex } from './cidr-index.js';
import { addressesOf } from './endpoints.js';
import type { AdmittedPeer } from './external-peers.js';
import { isValidKey } from './keys.js';
import { compareSeniority } from './order.js';
import {
  DEFAULT_EXTERNAL_RANGES,
  DEFAULT_MIN_PREFIX,
  DEFAULT_POD_CIDRS,
  rangeProblem,
  type ProtectedOwner,
  type RangeKind,
  type RangePolicy,
} from './ranges.js';
import { quoted } from '../text.js';
import type { MembershipSettings, MeshNode, SelfIdentity, SkipReason } from '../types.js';
import { type Cidr, type Ip, hostCidr, parseCidr } from '../../net/ip.js';

/** One range a claimant asks for, parsed once, with the range rules' verdict. */
export interface ClaimedRange {
  text: string;
  /** What it is, for messages: `PodCIDR`, `allowedIPs`, `InternalIP`, Kilo's allowed-location-ips entry. */
  what: string;
  /** Which allow-list it was checked against (a Node's own address has none). */
  kind: RangeKind;
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
  /** A Node's PodCIDRs or a Peer's allowed IPs. */
  ranges: ClaimedRange[];
  /** In location granularity, what a Node's location is reached by from the others: its addresses and allowed-location-ips. */
  locationRanges: ClaimedRange[];
}

/** Every range a claimant asks for. */
export function rangesOf(c: Claimant): ClaimedRange[] {
  return c.locationRanges.length === 0 ? c.ranges : [...c.ranges, ...c.locationRanges];
}

/** Seniority of claimants: oldest first, then name, then Nodes before Peers. */
export function compareClaimants(
  a: Pick<Claimant, 'createdAt' | 'name' | 'kind'>,
  b: Pick<Claimant, 'createdAt' | 'name' | 'kind'>,
): number {
  return compareSeniority(a, b) || (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0);
}

/** Parses a list of CIDRs from the settings (invalid ones were refused by the config already). */
const cidrs = (list: readonly string[]): Cidr[] => list.map((t) => parseCidr(t)).filter((c): c is Cidr => !!c);

/** The range policy without any Node's addresses (the caller adds those): allow-lists, prefixes, protected ranges. */
export function basePolicy(settings: MembershipSettings, overlay: Cidr): RangePolicy {
  const overlay6 = settings.overlayCidr6 ? parseCidr(settings.overlayCidr6) : undefined;
  return {
    podCidrs: cidrs(settings.podCidrs ?? DEFAULT_POD_CIDRS),
    externalRanges: cidrs(settings.externalRanges ?? DEFAULT_EXTERNAL_RANGES),
    protectedRanges: cidrs(settings.protectedRanges ?? []),
    minPrefix: settings.minPrefix ?? DEFAULT_MIN_PREFIX,
    overlay,
    ...(overlay6 ? { overlay6 } : {}),
    protectedAddresses: new AddressIndex<ProtectedOwner>(),
  };
}

/**
 * The addresses of a Node no younger claim may contain: those its kubelet reports in
 * `status.addresses`. Published and forced endpoints protect nothing (anyone can write them).
 */
export function protectedOf(node: MeshNode): Array<{ ip: Ip; owner: ProtectedOwner }> {
  const out: Array<{ ip: Ip; owner: ProtectedOwner }> = [];
  for (const [kind, list] of [
    ['InternalIP', node.internalIPs],
    ['ExternalIP', node.externalIPs],
  ] as const) {
    for (const ip of addressesOf(list))
      out.push({
        ip,
        owner: { label: `the ${kind} of Node ${node.name}`, name: node.name, createdAt: node.createdAt },
      });
  }
  return out;
}

/** The range policy for a whole Node list, with every Node's addresses protected. */
export function policyFor(nodes: readonly MeshNode[], settings: MembershipSettings, overlay: Cidr): RangePolicy {
  const policy = basePolicy(settings, overlay);
  for (const node of nodes) for (const p of protectedOf(node)) policy.protectedAddresses.add(p.ip, p.owner);
  return policy;
}

/** One claimed range, parsed and checked. */
function claimed(
  text: string,
  what: string,
  check: { policy: RangePolicy; kind: RangeKind; by: MeshNode | AdmittedPeer },
) {
  const cidr = parseCidr(text);
  const by = { name: check.by.name, createdAt: check.by.createdAt, ...('podCIDRs' in check.by ? {} : { peer: true }) };
  return {
    text,
    what,
    kind: check.kind,
    cidr,
    refused: cidr ? rangeProblem(cidr, check.policy, check.kind, by) : undefined,
  };
}

/** What a Node's location is reached by from the other locations: its addresses, and Kilo's allowed-location-ips. */
function locationRangesOf(node: MeshNode, policy: RangePolicy, kilo: boolean): ClaimedRange[] {
  const own = addressesOf(node.internalIPs).map((ip) =>
    claimed(hostCidr(ip), 'InternalIP', { policy, kind: 'node-address', by: node }),
  );
  const extra = (kilo ? (node.annotations[KILO_ALLOWED_LOCATION_IPS] ?? '') : '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      const r = claimed(t, `${KILO_ALLOWED_LOCATION_IPS} entry`, { policy, kind: 'external', by: node });
      return t.includes('/') ? r : { ...r, cidr: undefined };
    });
  return [...own, ...extra];
}

/** The key a Node claims, or why it claims none (the viewing node claims its own key). */
function nodeKey(node: MeshNode, self: SelfIdentity | undefined): { key?: string; skip?: SkipReason } {
  if (node.name === self?.name) return { key: self.publicKey };
  const published = node.annotations[ANNOTATION_PUBLIC_KEY];
  const skip = (reason: SkipReason['reason'], message: string) => ({
    skip: { name: node.name, reason, message, whole: true },
  });
  if (published === undefined || published === '')
    return skip('no-public-key', 'has not published a WireGuard public key yet');
  if (!isValidKey(published))
    return skip('invalid-public-key', `published public key ${quoted(published)} is not a base64 WireGuard key`);
  return { key: published };
}

/**
 * Makes the claimant of a Node; in location granularity (`claim.claimLocationRanges`) its
 * location's ranges too, Kilo's allowed-location-ips only while Kilo's annotations are trusted.
 */
export function nodeClaimant(
  node: MeshNode,
  policy: RangePolicy,
  self: SelfIdentity | undefined,
  claim: Pick<MembershipSettings, 'claimLocationRanges' | 'kiloAnnotations'> = {},
): Claimant {
  const { key, skip } = nodeKey(node, self);
  return {
    kind: 'node',
    name: node.name,
    createdAt: node.createdAt,
    node,
    peer: undefined,
    key,
    keySkip: skip,
    ranges: node.podCIDRs.map((text) => claimed(text, 'PodCIDR', { policy, kind: 'pod', by: node })),
    locationRanges: claim.claimLocationRanges ? locationRangesOf(node, policy, claim.kiloAnnotations !== false) : [],
  };
}

/** Makes the claimant of a valid external peer. */
export function peerClaimant(peer: AdmittedPeer, policy: RangePolicy): Claimant {
  return {
    kind: 'peer',
    name: peer.name,
    createdAt: peer.createdAt,
    node: undefined,
    peer,
    key: peer.publicKey,
    keySkip: undefined,
    ranges: peer.allowedIPs.map((text) => claimed(text, 'allowedIPs', { policy, kind: 'external', by: peer })),
    locationRanges: [],
  };
}
