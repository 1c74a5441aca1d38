/**
 * The fail-closed rule set of one node, decided purely: which destinations may leave only through
 * the WireGuard interface (what the mesh carries now, what it carried before, the named pod
 * networks), which private next hops they may take instead (members of this node's location), and
 * the narrow exemptions (the API server, link-local, this node's own pods, WireGuard's own packets,
 * and the ranges of Nodes that are not in the mesh yet or are left to the cluster's network).
 */
import { ANNOTATION_PUBLIC_KEY } from '../annotations.js';
import type { DesiredState, MeshNode } from '../types.js';
import {
  type Cidr,
  cidrsOverlap,
  compareCidrText,
  formatCidr,
  hostCidr,
  parseCidr,
  parseHostPort,
  parseIp,
} from '../../net/ip.js';

/** Why a destination may leave only through the tunnel (the `reason` label of the drop metric). */
export type BlockReason = 'carried' | 'kept' | 'pod-network';

/** Every reason, in the order the rules test them. */
export const BLOCK_REASONS: readonly BlockReason[] = ['carried', 'kept', 'pod-network'];

/** One range that may leave only through the tunnel (or a private next hop of this node's location). */
export interface BlockedRange {
  /** Normalised CIDR. */
  dst: string;
  reason: BlockReason;
  /** The Node or Peer the mesh carries it for (or carried it for); `overlay` or `pod-network` for the ranges as a whole. */
  owner: string;
  /** What it is, for `status`. */
  what: string;
}

/** Why a range is let through whatever interface it leaves by. */
export type ExemptKind = 'api-server' | 'link-local' | 'own-pods' | 'not-in-mesh' | 'local-network';

/** One range let through whatever interface it leaves by. */
export interface ExemptRange {
  dst: string;
  kind: ExemptKind;
  /** One phrase for `status`. */
  what: string;
  /** The Node whose range it is, for open ranges. */
  node?: string | undefined;
}

/** The rule set this node wants. */
export interface DesiredFirewall {
  /** False: `[wireguard] fail_closed = off`, the rule set is removed. */
  enabled: boolean;
  /** The interface blocked traffic may leave by. */
  iface: string;
  /** Sorted by family, then address; no range inside another of the same reason and family. */
  blocked: BlockedRange[];
  /** Next hops on the private network (members of this node's location) blocked traffic may take, sorted. */
  hops: string[];
  /** WireGuard's own packets: `host:port` of every peer endpoint this node may dial, sorted. */
  endpoints: string[];
  /** Sorted like `blocked`. */
  exempt: ExemptRange[];
}

/** The part of the settings the rule set depends on. */
export interface FirewallSettings {
  /** `[wireguard] fail_closed`. */
  enabled: boolean;
  iface: string;
  overlayCidr: string;
  overlayCidr6?: string | undefined;
  /** `[overlay] pod_cidrs` when the admin named them (absent: the private-use default, not blocked as a whole). */
  podNetworks?: readonly string[] | undefined;
  /** The API server's addresses as this node reaches them. */
  apiAddresses: readonly string[];
  /** `[mesh] local_routes` (location and cross granularity). */
  localRoutes: boolean;
}

/** What the rule set of one node is computed from. */
export interface FirewallInput {
  desired: Pick<DesiredState, 'peers' | 'routes' | 'topology'>;
  /** Every Node by name (the view's list, this node included). */
  nodes: ReadonlyMap<string, MeshNode>;
  self: MeshNode;
  settings: FirewallSettings;
  /** The rule set before this one (or the one found on the host after a restart). */
  previous?: Pick<DesiredFirewall, 'blocked'> | undefined;
}

const LINK_LOCAL = ['169.254.0.0/16', 'fe80::/10'];

/** Parsed once per CIDR text: the core sees the same few thousand ranges at every step. */
const parsed = new Map<string, Cidr | undefined>();
function cidr(text: string): Cidr | undefined {
  let c = parsed.get(text);
  if (c === undefined && !parsed.has(text)) {
    if (parsed.size > 200_000) parsed.clear();
    c = parseCidr(text);
    parsed.set(text, c);
  }
  return c;
}

/** Orders ranges by family, then address, then prefix. */
function byDst<T extends { dst: string }>(a: T, b: T): number {
  return compareCidrText(a.dst, b.dst);
}

/** The entries of `list` with no other entry of the same group (`group`) containing them; sorted. */
function outermost<T extends { dst: string }>(list: readonly T[], group: (t: T) => string): T[] {
  const sorted = [...list].sort((a, b) => group(a).localeCompare(group(b)) || byDst(a, b));
  const out: T[] = [];
  let cover: { g: string; c: Cidr } | undefined;
  for (const t of sorted) {
    const c = cidr(t.dst);
    if (!c) continue;
    const g = `${group(t)}/${c.family}`;
    // Sorted by address then prefix, a range inside another comes right after the one covering it.
    if (cover && cover.g === g && c.prefix >= cover.c.prefix && cidrsOverlap(c, cover.c)) continue;
    cover = { g, c };
    out.push(t);
  }
  return out.sort(byDst);
}

/** The ranges the mesh carries now, and the next hops it takes on the private network. */
function carried(i: FirewallInput): { blocked: BlockedRange[]; hops: Set<string> } {
  const blocked: BlockedRange[] = [];
  const hops = new Set<string>();
  const overlays = [i.settings.overlayCidr, ...(i.settings.overlayCidr6 ? [i.settings.overlayCidr6] : [])];
  for (const o of overlays) {
    const c = cidr(o);
    if (c) blocked.push({ dst: formatCidr(c), reason: 'carried', owner: 'overlay', what: 'the overlay' });
  }
  // Routes first: they say best what a range is (the same range from a peer is dropped as a duplicate).
  for (const r of i.desired.routes) {
    if (r.gateway) hops.add(r.gateway);
    blocked.push({ dst: r.dst, reason: 'carried', owner: r.via, what: r.what ?? `PodCIDR of ${r.via}` });
  }
  for (const p of i.desired.peers) {
    const what = `allowed IPs of ${p.kind === 'peer' ? 'Peer' : 'Node'} ${p.name}`;
    for (const dst of p.allowedIPs) blocked.push({ dst, reason: 'carried', owner: p.name, what });
  }
  return { blocked, hops };
}

/** This node's own PodCIDRs, the API server, link-local. */
function fixedExemptions(i: FirewallInput): ExemptRange[] {
  const out: ExemptRange[] = [];
  for (const t of i.self.podCIDRs) {
    const c = cidr(t);
    if (c) out.push({ dst: formatCidr(c), kind: 'own-pods', what: `this node's own pods (PodCIDR of ${i.self.name})` });
  }
  for (const a of i.settings.apiAddresses) {
    const ip = parseIp(a);
    if (ip)
      out.push({ dst: hostCidr(ip), kind: 'api-server', what: 'the API server (so that this node can always rejoin)' });
  }
  for (const dst of LINK_LOCAL) out.push({ dst, kind: 'link-local', what: 'link-local' });
  return out;
}

/**
 * PodCIDRs the mesh does not carry and must not cut off: those of Nodes that never published a key
 * (wg-overlay not rolled out there yet), and with `local_routes = false` those of the members of
 * this node's location (left to the cluster's own network).
 */
function openRanges(i: FirewallInput): ExemptRange[] {
  const out: ExemptRange[] = [];
  const topo = i.desired.topology;
  const local = new Set<string>();
  if (topo && !i.settings.localRoutes)
    for (const m of topo.locations.find((l) => l.id === topo.locationId)?.members ?? []) local.add(m);
  for (const n of i.nodes.values()) {
    if (n.name === i.self.name) continue;
    const why = !n.annotations[ANNOTATION_PUBLIC_KEY]
      ? ({
          kind: 'not-in-mesh',
          what: `PodCIDR of Node ${n.name}, which has not published a key (no wg-overlay there yet)`,
        } as const)
      : local.has(n.name)
        ? ({ kind: 'local-network', what: `PodCIDR of ${n.name} in this location (local_routes = false)` } as const)
        : undefined;
    if (!why) continue;
    for (const t of n.podCIDRs) {
      const c = cidr(t);
      if (c) out.push({ dst: formatCidr(c), ...why, node: n.name });
    }
  }
  return out;
}

/**
 * What was carried before and is not now stays blocked (its Node deleted or skipped: the machine
 * may still be up) until another Node takes it outside the mesh. A range of a Node without a key
 * is open only if it overlaps nothing the mesh carries (else it is no legitimate claim and
 * releases nothing) and nothing still kept.
 */
function keptAndOpen(
  i: FirewallInput,
  now: readonly BlockedRange[],
  open: readonly ExemptRange[],
): { kept: BlockedRange[]; open: ExemptRange[] } {
  const nowKeys = new Set(now.map((b) => b.dst));
  const carriedCidrs = now.map((b) => cidr(b.dst)!);
  const legit = open
    .map((o) => ({ c: cidr(o.dst)!, owner: o.node ?? '', o }))
    .filter((o) => !carriedCidrs.some((c) => cidrsOverlap(c, o.c)));
  const kept: BlockedRange[] = [];
  for (const b of i.previous?.blocked ?? []) {
    if (b.reason === 'pod-network' || b.owner === 'overlay' || nowKeys.has(b.dst)) continue;
    const c = cidr(b.dst);
    if (!c || carriedCidrs.some((o) => o.prefix <= c.prefix && cidrsOverlap(o, c))) continue;
    if (legit.some((o) => o.owner !== b.owner && cidrsOverlap(o.c, c))) continue;
    kept.push({ ...b, reason: 'kept', what: b.reason === 'kept' ? b.what : `${b.what} (no longer in the mesh)` });
  }
  const keptCidrs = kept.map((b) => cidr(b.dst)!);
  return { kept, open: legit.filter((o) => !keptCidrs.some((c) => cidrsOverlap(c, o.c))).map((o) => o.o) };
}

/** `host:port` of every endpoint a peer may be dialled at, when it is an address. */
function endpointsOf(i: FirewallInput): string[] {
  const out = new Set<string>();
  for (const p of i.desired.peers)
    for (const e of [p.endpoint, ...(p.candidates ?? [])]) {
      const hp = e ? parseHostPort(e) : undefined;
      if (hp && parseIp(hp.host)) out.add(e!);
    }
  return [...out].sort();
}

/** The rule set of one node: a pure function of its desired state, the Node list, the settings and the rule set before. */
export function firewallFor(i: FirewallInput): DesiredFirewall {
  const s = i.settings;
  if (!s.enabled) return { enabled: false, iface: s.iface, blocked: [], hops: [], endpoints: [], exempt: [] };
  const now = carried(i);
  const { kept, open } = keptAndOpen(i, now.blocked, openRanges(i));
  const pods: BlockedRange[] = [];
  for (const t of s.podNetworks ?? []) {
    const c = cidr(t);
    if (c)
      pods.push({
        dst: formatCidr(c),
        reason: 'pod-network',
        owner: 'pod-network',
        what: "the cluster's pod networks",
      });
  }
  return {
    enabled: true,
    iface: s.iface,
    blocked: outermost([...now.blocked, ...kept, ...pods], (b) => b.reason),
    hops: [...now.hops].sort(compareIpText),
    endpoints: endpointsOf(i),
    exempt: outermost([...fixedExemptions(i), ...open], () => 'exempt'),
  };
}

/** Orders addresses by family, then value. */
function compareIpText(a: string, b: string): number {
  return compareCidrText(hostCidr(parseIp(a)!), hostCidr(parseIp(b)!));
}
