/**
 * The rules every routed range must pass before any question of who claimed it first: a Node's
 * PodCIDR must lie inside the cluster's pod CIDRs, an external peer's allowed IP or a location's
 * extra range inside the ranges external routes may take; no range may be wider than the minimum
 * prefix, overlap the overlay, a reserved range or a range the admin protects, or contain an
 * address a senior Node owns (a younger Node's address protects nothing against an older claim).
 */
import type { AddressIndex } from './cidr-index.js';
import { compareSeniority } from './order.js';
import { type Cidr, type Family, cidrsOverlap, formatCidr, formatIp, parseCidr } from '../../net/ip.js';

/** The private-use ranges: where pod networks and external routes live unless configured otherwise. */
export const PRIVATE_RANGES: readonly string[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'];

/** Where pod networks live unless `[overlay] pod_cidrs` says otherwise: the private-use ranges. */
export const DEFAULT_POD_CIDRS: readonly string[] = PRIVATE_RANGES;

/** Where external peers' allowed IPs and Kilo's allowed-location-ips must lie unless `[peers] allowed_ranges` says otherwise. */
export const DEFAULT_EXTERNAL_RANGES: readonly string[] = PRIVATE_RANGES;

/** The widest range routed to one Node or external peer, by family, unless configured. */
export const DEFAULT_MIN_PREFIX: Readonly<Record<Family, number>> = { 4: 16, 6: 48 };

/** Ranges never routed through the tunnel: nothing a Node or Peer names may overlap them. */
const RESERVED: ReadonlyArray<{ cidr: Cidr; what: string }> = [
  ['0.0.0.0/8', 'the unspecified range'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local addresses (the cloud metadata service among them)'],
  ['224.0.0.0/3', 'multicast and reserved addresses'],
  ['::/127', 'the unspecified and loopback addresses'],
  ['::ffff:0:0/96', 'IPv4-mapped addresses'],
  ['64:ff9b::/96', 'the NAT64 prefix'],
  ['64:ff9b:1::/48', 'the local-use NAT64 prefix'],
  ['2002::/16', '6to4 addresses'],
  ['fe80::/10', 'link-local addresses'],
  ['ff00::/8', 'multicast'],
].map(([text, what]) => ({ cidr: parseCidr(text!)!, what: what! }));

/** The reserved range (and what it is) that `c` overlaps, if any. */
export function reservedOverlap(c: Cidr): { cidr: Cidr; what: string } | undefined {
  return RESERVED.find((r) => cidrsOverlap(r.cidr, c));
}

/** The checks shared by every range, built once per membership decision. */
export interface RangePolicy {
  /** A Node's PodCIDR must lie inside one of these (`[overlay] pod_cidrs`). */
  podCidrs: readonly Cidr[];
  /** An external peer's allowed IPs and a location's extra ranges must lie inside one of these (`[peers] allowed_ranges`). */
  externalRanges: readonly Cidr[];
  /** Ranges no route may overlap, whoever claims it (`[overlay] protected`: the API server, metadata, databases …). */
  protectedRanges: readonly Cidr[];
  minPrefix: Readonly<Record<Family, number>>;
  overlay: Cidr;
  /** The IPv6 overlay of a dual-stack overlay. */
  overlay6?: Cidr | undefined;
  /** Every Node's own addresses, with who they belong to: each protects against claims younger than its owner. */
  protectedAddresses: AddressIndex<ProtectedOwner>;
}

/** Who a protected address belongs to. */
export interface ProtectedOwner {
  /** E.g. "the InternalIP of Node a". */
  label: string;
  name: string;
  createdAt: number;
}

/** What a range is claimed as: the allow-list it must lie in differs. */
export type RangeKind = 'pod' | 'external' | 'node-address';

/** Who claims a range (a Node, or an external peer): its seniority decides which protected addresses it may contain. */
export interface Claimer {
  name: string;
  createdAt: number;
  /** An external peer: no Node's address is its own. */
  peer?: boolean;
}

/** True when `inner` lies entirely inside `outer`. */
export function within(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix && cidrsOverlap(inner, outer);
}

/** The allow-list a kind of range must lie in, with the setting that names it; none for a Node's own address. */
function allowList(kind: RangeKind, policy: RangePolicy): { ranges: readonly Cidr[]; what: string } | undefined {
  if (kind === 'pod') return { ranges: policy.podCidrs, what: "the cluster's pod CIDRs ([overlay] pod_cidrs" };
  if (kind === 'external')
    return { ranges: policy.externalRanges, what: 'the ranges external routes may take ([peers] allowed_ranges' };
  return undefined;
}

/** The address inside `c` whose owner is older than `by` (the most senior one), if any. */
function seniorAddressInside(
  c: Cidr,
  policy: RangePolicy,
  by: Claimer,
): { ip: string; owner: ProtectedOwner } | undefined {
  let found: { ip: string; owner: ProtectedOwner } | undefined;
  for (const hit of policy.protectedAddresses.allInside(c)) {
    if ((!by.peer && hit.owner.name === by.name) || compareSeniority(hit.owner, by) >= 0) continue;
    if (!found || compareSeniority(hit.owner, found.owner) < 0) found = { ip: formatIp(hit.ip), owner: hit.owner };
  }
  return found;
}

/**
 * Why `c` may not be routed for claimer `by` (a phrase completing "PodCIDR X …" or "allowedIPs
 * X …"), or undefined when it may.
 */
export function rangeProblem(c: Cidr, policy: RangePolicy, kind: RangeKind, by: Claimer): string | undefined {
  const allowed = allowList(kind, policy);
  const outside =
    allowed && !allowed.ranges.some((p) => within(c, p))
      ? `is outside ${allowed.what} = ${allowed.ranges.map(formatCidr).join(', ') || 'none'})`
      : undefined;
  // The cluster's pod networks are checked first (the usual mistake); external ranges last, after
  // the reasons that name what the range would have hit.
  if (kind === 'pod' && outside) return outside;
  const min = policy.minPrefix[c.family];
  if (c.prefix < min) return `is wider than /${min}, the widest range routed to one peer`;
  const reserved = reservedOverlap(c);
  if (reserved) return `overlaps ${reserved.what} (${formatCidr(reserved.cidr)})`;
  if (cidrsOverlap(c, policy.overlay)) return `overlaps the overlay ${formatCidr(policy.overlay)}`;
  if (policy.overlay6 && cidrsOverlap(c, policy.overlay6))
    return `overlaps the IPv6 overlay ${formatCidr(policy.overlay6)}`;
  const guarded = policy.protectedRanges.find((p) => cidrsOverlap(p, c));
  if (guarded) return `overlaps ${formatCidr(guarded)}, which [overlay] protected keeps out of the tunnel`;
  const hit = seniorAddressInside(c, policy, by);
  if (hit)
    return `contains ${hit.ip}, ${hit.owner.label}, an older claim (its traffic would be routed into the tunnel)`;
  return outside;
}
