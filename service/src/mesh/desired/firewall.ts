/**
 * The fail-closed rule set of one node, decided purely: which destinations may leave only through
 * the WireGuard interface (what the mesh carries now, what it carried before, the named pod
 * networks), which private next hops they may take instead (members of this node's location), and
 * the narrow exemptions (the API server, link-local, this node's own pods, WireGuard's own packets,
 * and the ranges of Nodes that are not in the mesh yet or are left to the cluster's network).
 */
import { ANNOTATION_PUBLIC_KEY } from '../annotations.js';
import { CidrIndex } from '../membership/cidr-index.js';
import type { DesiredState, MeshNode } from '../types.js';
import {
  type Cidr,
  cidrsOverlap,
  formatCidr,
  hostCidr,
  parseCidr,
  parseHostPort,
  parseIp,
  prefixMask,
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
  /**
   * What is carried, in the order of the routes and peers (the overlay first), then what is kept and
   * the pod networks, sorted by address; no range inside another of the same reason and family.
   */
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

/** Orders CIDR texts by family, then address, then prefix (parsed once each, through the cache). */
function compareDst(a: string, b: string): number {
  const x = cidr(a);
  const y = cidr(b);
  if (!x || !y) return x ? -1 : y ? 1 : a < b ? -1 : a > b ? 1 : 0;
  if (x.family !== y.family) return x.family - y.family;
  if (x.network !== y.network) return x.network < y.network ? -1 : 1;
  return x.prefix - y.prefix;
}

/** The entries of `list` with no other entry of the same group (`group`) containing them; sorted. */
function outermost<T extends { dst: string }>(list: readonly T[], group: (t: T) => string): T[] {
  const decorated: Array<{ t: T; c: Cidr; g: string }> = [];
  for (const t of list) {
    const c = cidr(t.dst);
    if (c) decorated.push({ t, c, g: `${group(t)}/${c.family}` });
  }
  const byAddress = (a: { c: Cidr }, b: { c: Cidr }): number =>
    a.c.family !== b.c.family
      ? a.c.family - b.c.family
      : a.c.network < b.c.network
        ? -1
        : a.c.network > b.c.network
          ? 1
          : a.c.prefix - b.c.prefix;
  decorated.sort((a, b) => (a.g < b.g ? -1 : a.g > b.g ? 1 : byAddress(a, b)));
  const out: Array<{ t: T; c: Cidr }> = [];
  let cover: { g: string; c: Cidr } | undefined;
  for (const d of decorated) {
    // Sorted by address then prefix, a range inside another comes right after the one covering it.
    if (cover && cover.g === d.g && d.c.prefix >= cover.c.prefix && cidrsOverlap(d.c, cover.c)) continue;
    cover = d;
    out.push(d);
  }
  return out.sort(byAddress).map((d) => d.t);
}

/** The overlays as networks and masks, for a quick "inside the overlay" test. */
function overlaysOf(s: FirewallSettings): Array<{ c: Cidr; mask: bigint }> {
  const out: Array<{ c: Cidr; mask: bigint }> = [];
  for (const o of [s.overlayCidr, ...(s.overlayCidr6 ? [s.overlayCidr6] : [])]) {
    const c = cidr(o);
    if (c) out.push({ c, mask: prefixMask(c.family, c.prefix) });
  }
  return out;
}

/** A route's or peer's blocked entries (null: inside the overlay), cached by object: unchanged members cost nothing. */
const entriesOf = new WeakMap<object, { overlays: string; entries: Array<BlockedRange | null> }>();

/** The entries of `dsts` for `owner`, cached on `key` (a route or a peer object) for these overlays. */
function cachedEntries(
  key: object,
  overlays: { text: string; list: ReadonlyArray<{ c: Cidr; mask: bigint }> },
  make: () => Array<{ dst: string; owner: string; what: string }>,
): Array<BlockedRange | null> {
  const hit = entriesOf.get(key);
  if (hit && hit.overlays === overlays.text) return hit.entries;
  const entries = make().map((e) => {
    const c = cidr(e.dst);
    // A peer's overlay addresses lie inside the overlay, which is blocked as a whole.
    const inside =
      c &&
      overlays.list.some(
        (o) => o.c.family === c.family && o.c.prefix <= c.prefix && (c.network & o.mask) === o.c.network,
      );
    return inside || !c ? null : { ...e, reason: 'carried' as const };
  });
  entriesOf.set(key, { overlays: overlays.text, entries });
  return entries;
}

/** The ranges the mesh carries now, and the next hops it takes on the private network. */
function carried(i: FirewallInput): { blocked: BlockedRange[]; hops: Set<string> } {
  const list = overlaysOf(i.settings);
  const overlays = { text: list.map((o) => formatCidr(o.c)).join(), list };
  const blocked: BlockedRange[] = list.map((o) => ({
    dst: formatCidr(o.c),
    reason: 'carried',
    owner: 'overlay',
    what: 'the overlay',
  }));
  const hops = new Set<string>();
  const seen = new Set<string>();
  const push = (entries: ReadonlyArray<BlockedRange | null>): void => {
    for (const e of entries)
      if (e && !seen.has(e.dst)) {
        seen.add(e.dst);
        blocked.push(e);
      }
  };
  // Routes first: they say best what a range is (the same range from a peer is a duplicate).
  for (const r of i.desired.routes) {
    if (r.gateway) hops.add(r.gateway);
    push(cachedEntries(r, overlays, () => [{ dst: r.dst, owner: r.via, what: r.what ?? `PodCIDR of ${r.via}` }]));
  }
  for (const p of i.desired.peers) {
    const what = `allowed IPs of ${p.kind === 'peer' ? 'Peer' : 'Node'} ${p.name}`;
    push(cachedEntries(p, overlays, () => p.allowedIPs.map((dst) => ({ dst, owner: p.name, what }))));
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

/** An index of `ranges` by CIDR (the first owner of identical CIDRs kept). */
function indexOf<T>(ranges: Iterable<{ c: Cidr; owner: T }>): CidrIndex<T> {
  const idx = new CidrIndex<T>();
  for (const r of ranges) idx.add(r.c, r.owner);
  return idx;
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
  const gone = (i.previous?.blocked ?? []).filter(
    (b) => b.reason !== 'pod-network' && b.owner !== 'overlay' && !nowKeys.has(b.dst),
  );
  // Nothing went and nobody is outside the mesh (the usual case): no index of thousands of ranges.
  if (gone.length === 0 && open.length === 0) return { kept: [], open: [] };
  const carriedIdx = indexOf(now.map((b) => ({ c: cidr(b.dst)!, owner: b.owner })));
  const legit = open
    .map((o) => ({ c: cidr(o.dst)!, owner: o.node ?? '', o }))
    .filter((o) => !carriedIdx.overlapping(o.c));
  const legitIdx = new CidrIndex<string[]>();
  for (const o of legit) {
    const owners = legitIdx.exact(o.c);
    if (owners) owners.push(o.owner);
    else legitIdx.add(o.c, [o.owner]);
  }
  const kept: BlockedRange[] = [];
  for (const b of gone) {
    const c = cidr(b.dst);
    if (!c || [...carriedIdx.allOverlapping(c)].some((o) => o.cidr.prefix <= c.prefix)) continue;
    if ([...legitIdx.allOverlapping(c)].some((o) => o.owner.some((n) => n !== b.owner))) continue;
    kept.push({ ...b, reason: 'kept', what: b.reason === 'kept' ? b.what : `${b.what} (no longer in the mesh)` });
  }
  const keptIdx = indexOf(kept.map((b) => ({ c: cidr(b.dst)!, owner: b.owner })));
  return { kept, open: legit.filter((o) => !keptIdx.overlapping(o.c)).map((o) => o.o) };
}

/** Whether an endpoint text is `address:port` (a name is not where WireGuard's packets go), cached. */
const isAddressEndpoint = new Map<string, boolean>();
function addressEndpoint(e: string): boolean {
  let ok = isAddressEndpoint.get(e);
  if (ok === undefined) {
    if (isAddressEndpoint.size > 100_000) isAddressEndpoint.clear();
    const hp = parseHostPort(e);
    ok = hp !== undefined && parseIp(hp.host) !== undefined;
    isAddressEndpoint.set(e, ok);
  }
  return ok;
}

/** `host:port` of every endpoint a peer may be dialled at, when it is an address. */
function endpointsOf(i: FirewallInput): string[] {
  const out = new Set<string>();
  for (const p of i.desired.peers) {
    if (p.endpoint && addressEndpoint(p.endpoint)) out.add(p.endpoint);
    for (const e of p.candidates ?? []) if (addressEndpoint(e)) out.add(e);
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
    // Carried ranges never nest (membership gives an overlapping range to one claimant; overlay
    // addresses are left to the overlay): in the order of the routes and peers, no sort per change.
    blocked: [...now.blocked, ...outermost([...kept, ...pods], (b) => b.reason)],
    hops: [...now.hops].sort(compareIpText),
    endpoints: endpointsOf(i),
    exempt: outermost([...fixedExemptions(i), ...open], () => 'exempt'),
  };
}

/** Orders addresses by family, then value. */
function compareIpText(a: string, b: string): number {
  return compareDst(hostCidr(parseIp(a)!), hostCidr(parseIp(b)!));
}

/** True when two rule sets are the same (then the step keeps the earlier object: no deep comparison, no adapter work). */
export function sameFirewall(a: DesiredFirewall, b: DesiredFirewall): boolean {
  const sameList = <T>(x: readonly T[], y: readonly T[], eq: (u: T, v: T) => boolean): boolean =>
    x.length === y.length && x.every((u, k) => eq(u, y[k]!));
  return (
    a.enabled === b.enabled &&
    a.iface === b.iface &&
    sameList(
      a.blocked,
      b.blocked,
      (u, v) => u.dst === v.dst && u.owner === v.owner && u.reason === v.reason && u.what === v.what,
    ) &&
    sameList(a.hops, b.hops, (u, v) => u === v) &&
    sameList(a.endpoints, b.endpoints, (u, v) => u === v) &&
    sameList(
      a.exempt,
      b.exempt,
      (u, v) => u.dst === v.dst && u.kind === v.kind && u.what === v.what && u.node === v.node,
    )
  );
}
