/**
 * What this node never routes into the tunnel, whatever the verdicts say: its own PodCIDRs, the
 * API server's addresses as it reaches them, and its on-link underlay subnets. These are this
 * node's own view, not verdicts (other nodes may see them otherwise); a range they overlap is left
 * out here with a warning, and kept everywhere else.
 */
import type { MeshNode, MeshSettings } from '../types.js';
import { type Cidr, cidrsOverlap, formatCidr, hostCidr, parseCidr, parseIp } from '../../net/ip.js';

/** One guarded range, with what it is (for the warning). */
export interface GuardRange {
  cidr: Cidr;
  what: string;
}

/** The guard of this node: its own PodCIDRs, the API server's addresses, its on-link subnets. */
export function localGuard(selfNode: MeshNode, settings: MeshSettings): GuardRange[] {
  const out: GuardRange[] = [];
  for (const t of selfNode.podCIDRs) {
    const c = parseCidr(t);
    if (c) out.push({ cidr: c, what: `this node's own PodCIDR ${formatCidr(c)}` });
  }
  return [...out, ...hostGuard(settings.localGuard ?? {}, 'node')];
}

/** The guard of a host (a node, or a machine joining as an external Peer): the API server's addresses and its on-link subnets. */
export function hostGuard(
  facts: { apiAddresses?: readonly string[]; onLink?: readonly string[] },
  host: 'node' | 'host' = 'host',
): GuardRange[] {
  const out: GuardRange[] = [];
  for (const t of facts.apiAddresses ?? []) {
    const ip = parseIp(t);
    if (ip)
      out.push({ cidr: parseCidr(hostCidr(ip))!, what: `the API server's address ${t} (as this ${host} reaches it)` });
  }
  for (const t of facts.onLink ?? []) {
    const c = parseCidr(t);
    if (c) out.push({ cidr: c, what: `this ${host}'s on-link subnet ${formatCidr(c)}` });
  }
  return out;
}

/** The guard as text, for cache keys (an entry built under another guard is rebuilt). */
export function guardKey(guard: readonly GuardRange[]): string {
  return guard.map((g) => formatCidr(g.cidr)).join(',');
}

/** The guarded range a range overlaps, if any. */
export function guardedBy(range: string, guard: readonly GuardRange[]): GuardRange | undefined {
  const c = parseCidr(range);
  return c ? guard.find((g) => cidrsOverlap(g.cidr, c)) : undefined;
}

/** The ranges the guard lets through; a warning for each one it holds back (`named` says what a range is, e.g. "PodCIDR X of Node b"). */
export function letThrough(
  ranges: readonly string[],
  guard: readonly GuardRange[],
  named: (range: string) => string,
  warnings: string[],
): string[] {
  return ranges.filter((r) => {
    const g = guardedBy(r, guard);
    if (g) warnings.push(`${named(r)} overlaps ${g.what}: not routed from here`);
    return !g;
  });
}
