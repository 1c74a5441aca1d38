/**
 * The rules every routed range must pass before any seniority question: a Node's PodCIDR must lie
 * inside the cluster's pod CIDRs, and no range (PodCIDR or external peer's allowedIP) may be wider
 * than the minimum prefix, overlap the overlay or a reserved range (unspecified, loopback,
 * link-local, multicast), or contain a protected address (any Node's address, the API server's).
 */
import type { AddressIndex } from './cidr-index.js';
import { compareSeniority } from './order.js';
import { type Cidr, type Family, cidrsOverlap, formatCidr, formatIp, parseCidr } from '../../net/ip.js';

/** Where pod networks live unless `[overlay] pod_cidrs` says otherwise: the private-use ranges. */
export const DEFAULT_POD_CIDRS: readonly string[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'];

/** The widest range routed to one Node or external peer, by family, unless configured. */
export const DEFAULT_MIN_PREFIX: Readonly<Record<Family, number>> = { 4: 16, 6: 48 };

/** Ranges never routed through the tunnel: unspecified, loopback, link-local, multicast (and broadcast). */
const RESERVED: ReadonlyArray<{ cidr: Cidr; what: string }> = [
  ['0.0.0.0/8', 'the unspecified range'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local addresses'],
  ['224.0.0.0/3', 'multicast and reserved addresses'],
  ['::/127', 'the unspecified and loopback addresses'],
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
  minPrefix: Readonly<Record<Family, number>>;
  overlay: Cidr;
  /** The IPv6 overlay of a dual-stack overlay. */
  overlay6?: Cidr | undefined;
  /** Addresses no range may contain, with who they belong to. */
  protectedAddresses: AddressIndex<ProtectedOwner>;
}

/** Who a protected address belongs to; the most senior owner is named. */
export interface ProtectedOwner {
  /** E.g. "the InternalIP of Node a". */
  label: string;
  name: string;
  createdAt: number;
}

/** Orders owners oldest first (the API server before any Node), then by name. */
export function seniorOwnerFirst(a: ProtectedOwner, b: ProtectedOwner): number {
  return compareSeniority(a, b);
}

/** True when `inner` lies entirely inside `outer`. */
function within(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix && cidrsOverlap(inner, outer);
}

/**
 * Why `c` may not be routed (a phrase completing "PodCIDR X …" or "allowedIPs X …"), or
 * undefined when it may. `podCidr` adds the cluster pod CIDR rule of Nodes.
 */
export function rangeProblem(c: Cidr, policy: RangePolicy, podCidr: boolean): string | undefined {
  if (podCidr && !policy.podCidrs.some((p) => within(c, p))) {
    return `is outside the cluster's pod CIDRs ([overlay] pod_cidrs = ${policy.podCidrs.map(formatCidr).join(', ') || 'none'})`;
  }
  const min = policy.minPrefix[c.family];
  if (c.prefix < min) return `is wider than /${min}, the widest range routed to one peer`;
  const reserved = reservedOverlap(c);
  if (reserved) return `overlaps ${reserved.what} (${formatCidr(reserved.cidr)})`;
  if (cidrsOverlap(c, policy.overlay)) return `overlaps the overlay ${formatCidr(policy.overlay)}`;
  if (policy.overlay6 && cidrsOverlap(c, policy.overlay6))
    return `overlaps the IPv6 overlay ${formatCidr(policy.overlay6)}`;
  const hit = policy.protectedAddresses.inside(c, seniorOwnerFirst);
  if (hit) return `contains ${formatIp(hit.ip)}, ${hit.owner.label} (its traffic would be routed into the tunnel)`;
  return undefined;
}
