/**
 * The fail-closed rule set of one node, decided purely: which destinations may leave only through
 * the WireGuard interface (what the mesh carries now, what it carried before, the named pod
 * networks), which private next hops they may take instead (members of this node's location), and
 * the narrow exemptions (the API server, link-local, this node's own pods, WireGuard's own packets,
 * and the ranges of Nodes that are not in the mesh yet or are left to the cluster's network).
 */
import { ANNOTATION_PUBLIC_KEY } from '../annotations.js';
import { CidrIndex } from '../membership/cidr-index.js';
import type { DesiredPeer, DesiredRoute, DesiredState, MeshNode } from '../types.js';
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
  /** With the routes' and peers' deltas when it was derived from the previous desired state. */
  desired: Pick<DesiredState, 'peers' | 'routes' | 'topology' | 'peersDelta' | 'routesDelta'>;
  /** Every Node by name (the view's list, this node included). */
  nodes: ReadonlyMap<string, MeshNode>;
  self: MeshNode;
  settings: FirewallSettings;
  /** The rule set before this one (or the one found on the host after a restart). */
  previous?: Pick<DesiredFirewall, 'blocked'> | undefined;
  /** Names of the Nodes that publish no key (absent: found by looking at every Node). */
  keyless?: ReadonlySet<string> | undefined;
}

/** How a rule set differs from the one it was derived from: what the adapter changes, element by element. */
export interface FirewallDelta {
  from: DesiredFirewall;
  /** Blocked entries that left (or changed), and those that came (or changed). */
  removed: readonly BlockedRange[];
  added: readonly BlockedRange[];
  endpointsRemoved: readonly string[];
  endpointsAdded: readonly string[];
}

// A rule set derived from an earlier one, with what changed (the adapter then runs the delta only).
const deltas = new WeakMap<DesiredFirewall, FirewallDelta>();

/** How `fw` differs from the rule set it was derived from (undefined: computed in full). */
export function firewallDelta(fw: DesiredFirewall): FirewallDelta | undefined {
  return deltas.get(fw);
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

/** The overlays of the settings, as parsed networks and as one text (the key of the cached entries). */
interface Overlays {
  text: string;
  list: ReadonlyArray<{ c: Cidr; mask: bigint }>;
}

/** The blocked entries of a route (null: inside the overlay), cached on the route object. */
function routeEntries(r: DesiredRoute, overlays: Overlays): ReadonlyArray<BlockedRange | null> {
  return cachedEntries(r, overlays, () => [{ dst: r.dst, owner: r.via, what: r.what ?? `PodCIDR of ${r.via}` }]);
}

/** The blocked entries of a peer's allowed IPs (null: inside the overlay), cached on the peer object. */
function peerEntries(p: DesiredPeer, overlays: Overlays): ReadonlyArray<BlockedRange | null> {
  const what = `allowed IPs of ${p.kind === 'peer' ? 'Peer' : 'Node'} ${p.name}`;
  return cachedEntries(p, overlays, () => p.allowedIPs.map((dst) => ({ dst, owner: p.name, what })));
}

/** The route and peer entries naming one carried range: the first route's is the one blocked, else the first peer's. */
interface Claim {
  routes: BlockedRange[];
  peers: BlockedRange[];
}

/**
 * What a rule set was computed with, so that the next one is derived from it: a change of a few
 * routes and peers costs what changed, not the mesh.
 */
interface FirewallBasis {
  /** The settings as text: another text means a computation in full. */
  key: string;
  routes: readonly DesiredRoute[];
  peers: readonly DesiredPeer[];
  /** Carried range → the entries naming it. */
  claims: Map<string, Claim>;
  /** Carried range → its entry in `carried`. */
  listed: Map<string, BlockedRange>;
  /** The carried part of `blocked`: the overlay first, then the ranges in the order they came. */
  carried: BlockedRange[];
  /** What `blocked` holds after `carried` (kept ranges and pod networks). */
  kept: BlockedRange[];
  /** Next hops and endpoints, with how many routes or peers name each. */
  hops: Map<string, number>;
  endpoints: Map<string, number>;
  /** The carried ranges indexed, built the first time kept or open ranges need it, then kept up to date. */
  index?: CidrIndex<string> | undefined;
}

// The basis of each rule set, moved to the one derived from it.
const bases = new WeakMap<object, FirewallBasis>();

function claimOf(e: BlockedRange, claims: Map<string, Claim>): Claim {
  let c = claims.get(e.dst);
  if (!c) claims.set(e.dst, (c = { routes: [], peers: [] }));
  return c;
}

function count(m: Map<string, number>, key: string, by: 1 | -1): void {
  const n = (m.get(key) ?? 0) + by;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}

/** `host:port` of every endpoint a peer may be dialled at, when it is an address. */
function peerEndpoints(p: DesiredPeer): string[] {
  const out: string[] = [];
  if (p.endpoint && addressEndpoint(p.endpoint)) out.push(p.endpoint);
  for (const e of p.candidates ?? []) if (addressEndpoint(e)) out.push(e);
  return out;
}

/** The basis of the carried ranges, next hops and endpoints of a desired state, in full. */
function fullBasis(i: FirewallInput, key: string, overlays: Overlays): FirewallBasis {
  const b: FirewallBasis = {
    key,
    routes: i.desired.routes,
    peers: i.desired.peers,
    claims: new Map(),
    listed: new Map(),
    carried: overlays.list.map((o) => ({
      dst: formatCidr(o.c),
      reason: 'carried',
      owner: 'overlay',
      what: 'the overlay',
    })),
    kept: [],
    hops: new Map(),
    endpoints: new Map(),
  };
  const claim = (e: BlockedRange | null, kind: keyof Claim): void => {
    if (!e) return;
    const c = claimOf(e, b.claims);
    c[kind].push(e);
    if (!b.listed.has(e.dst)) {
      b.listed.set(e.dst, e);
      b.carried.push(e);
    }
  };
  // Routes first: they say best what a range is (the same range from a peer is a duplicate).
  for (const r of i.desired.routes) {
    if (r.gateway) count(b.hops, r.gateway, 1);
    for (const e of routeEntries(r, overlays)) claim(e, 'routes');
  }
  for (const p of i.desired.peers) {
    for (const e of peerEndpoints(p)) count(b.endpoints, e, 1);
    for (const e of peerEntries(p, overlays)) claim(e, 'peers');
  }
  return b;
}

/** Two blocked entries that say the same. */
function sameEntry(u: BlockedRange, v: BlockedRange): boolean {
  return u.dst === v.dst && u.owner === v.owner && u.reason === v.reason && u.what === v.what;
}

/** What one derivation changed in the carried ranges and endpoints (hops: whether they changed). */
interface Derived {
  removed: BlockedRange[];
  added: BlockedRange[];
  /** Ranges no longer carried, as they were blocked. */
  left: BlockedRange[];
  hopsChanged: boolean;
  endpointsRemoved: string[];
  endpointsAdded: string[];
}

/** Applies the routes' and peers' deltas of `i` to basis `b` (in place): what the mesh carries now. */
function derive(b: FirewallBasis, i: FirewallInput, overlays: Overlays): Derived {
  const rd = i.desired as Required<FirewallInput['desired']>;
  const touched = new Set<string>();
  const hops = new Map<string, boolean>();
  const eps = new Map<string, boolean>();
  const edit = (e: BlockedRange | null, kind: keyof Claim, by: 1 | -1): void => {
    if (!e) return;
    touched.add(e.dst);
    const c = claimOf(e, b.claims);
    if (by > 0) c[kind].push(e);
    else {
      const k = c[kind].indexOf(e);
      if (k >= 0) c[kind].splice(k, 1);
      if (c.routes.length + c.peers.length === 0) b.claims.delete(e.dst);
    }
  };
  const route = (r: DesiredRoute, by: 1 | -1): void => {
    if (r.gateway) {
      if (!hops.has(r.gateway)) hops.set(r.gateway, b.hops.has(r.gateway));
      count(b.hops, r.gateway, by);
    }
    for (const e of routeEntries(r, overlays)) edit(e, 'routes', by);
  };
  const peer = (p: DesiredPeer, by: 1 | -1): void => {
    for (const e of peerEndpoints(p)) {
      if (!eps.has(e)) eps.set(e, b.endpoints.has(e));
      count(b.endpoints, e, by);
    }
    for (const e of peerEntries(p, overlays)) edit(e, 'peers', by);
  };
  for (const r of rd.routesDelta.removed) route(r, -1);
  for (const p of rd.peersDelta.removed) peer(p, -1);
  for (const r of rd.routesDelta.added) route(r, 1);
  for (const p of rd.peersDelta.added) peer(p, 1);
  return {
    ...applyClaims(b, touched),
    hopsChanged: [...hops].some(([h, was]) => was !== b.hops.has(h)),
    endpointsRemoved: [...eps].filter(([e, was]) => was && !b.endpoints.has(e)).map(([e]) => e),
    endpointsAdded: [...eps].filter(([e, was]) => !was && b.endpoints.has(e)).map(([e]) => e),
  };
}

/** Brings the carried list (a new copy when it changes), `listed` and the index in line with the claims of the `touched` ranges. */
function applyClaims(b: FirewallBasis, touched: ReadonlySet<string>): Pick<Derived, 'removed' | 'added' | 'left'> {
  const out: Pick<Derived, 'removed' | 'added' | 'left'> = { removed: [], added: [], left: [] };
  let carried: BlockedRange[] | undefined;
  for (const dst of touched) {
    const old = b.listed.get(dst);
    const c = b.claims.get(dst);
    const now = c ? (c.routes[0] ?? c.peers[0]) : undefined;
    if (old === now || (old && now && sameEntry(old, now))) continue;
    carried ??= b.carried.slice();
    const at = old ? carried.indexOf(old) : -1;
    if (old) {
      out.removed.push(old);
      b.index?.delete(cidr(dst)!);
    }
    if (now) {
      out.added.push(now);
      b.listed.set(dst, now);
      b.index?.add(cidr(dst)!, now.owner);
      if (at >= 0) carried[at] = now;
      else carried.push(now);
    } else if (old) {
      out.left.push(old);
      b.listed.delete(dst);
      carried.splice(at, 1);
    }
  }
  if (carried) b.carried = carried;
  return out;
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
  // Only Nodes without a key can be open when no member is left to the cluster's network: no scan of every Node.
  const candidates =
    local.size === 0 && i.keyless ? [...i.keyless].flatMap((name) => i.nodes.get(name) ?? []) : i.nodes.values();
  for (const n of candidates) {
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

/** The carried ranges of basis `b` indexed (built once, then kept up to date by each derivation). */
function carriedIndex(b: FirewallBasis): CidrIndex<string> {
  b.index ??= indexOf(b.carried.map((e) => ({ c: cidr(e.dst)!, owner: e.owner })));
  return b.index;
}

/**
 * What was carried before and is not now (`gone`) stays blocked (its Node deleted or skipped: the
 * machine may still be up) until another Node takes it outside the mesh. A range of a Node without
 * a key is open only if it overlaps nothing the mesh carries (else it is no legitimate claim and
 * releases nothing) and nothing still kept.
 */
function keptAndOpen(
  b: FirewallBasis,
  gone: readonly BlockedRange[],
  open: readonly ExemptRange[],
): { kept: BlockedRange[]; open: ExemptRange[] } {
  // Nothing went and nobody is outside the mesh (the usual case): no index of thousands of ranges.
  if (gone.length === 0 && open.length === 0) return { kept: [], open: [] };
  const carriedIdx = carriedIndex(b);
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

/** The cluster's pod networks, blocked as a whole when the admin named them. */
function podNetworks(s: FirewallSettings): BlockedRange[] {
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
  return pods;
}

/** The settings a basis holds for, as text. */
function settingsKey(i: FirewallInput): string {
  return JSON.stringify([i.settings, i.self.name, i.desired.topology !== undefined]);
}

/** The basis `previous` was computed with, when this input follows it (its routes' and peers' deltas start there). */
function followedBasis(i: FirewallInput, key: string): FirewallBasis | undefined {
  const b = i.previous && bases.get(i.previous);
  const { routesDelta, peersDelta, topology } = i.desired;
  if (!b || b.key !== key || topology || !routesDelta || !peersDelta) return undefined;
  return routesDelta.from === b.routes && peersDelta.from === b.peers ? b : undefined;
}

/** Lists that say the same, item by item. */
function sameList<T>(x: readonly T[], y: readonly T[], eq: (u: T, v: T) => boolean): boolean {
  return x === y || (x.length === y.length && x.every((u, k) => eq(u, y[k]!)));
}

const sameExempt = (u: ExemptRange, v: ExemptRange): boolean =>
  u.dst === v.dst && u.kind === v.kind && u.what === v.what && u.node === v.node;

/** `list` (sorted) with `removed` taken out and `added` put in place: no sort of every endpoint. */
function patchSorted(list: readonly string[], removed: readonly string[], added: readonly string[]): string[] {
  const out = list.slice();
  const at = (v: string): number => {
    let lo = 0;
    let hi = out.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (out[mid]! < v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  for (const v of removed) if (out[at(v)] === v) out.splice(at(v), 1);
  for (const v of added) out.splice(at(v), 0, v);
  return out;
}

/**
 * The rule set derived from `prev` and its basis: only the routes and peers that changed are
 * looked at; unchanged, it is `prev` itself.
 */
function derivedFirewall(
  i: FirewallInput,
  b: FirewallBasis,
  prev: DesiredFirewall,
  overlays: Overlays,
): DesiredFirewall {
  const d = derive(b, i, overlays);
  const gone = [...b.kept.filter((k) => k.reason === 'kept' && !b.claims.has(k.dst)), ...d.left];
  const { kept, open } = keptAndOpen(b, gone, openRanges(i));
  const tail = outermost([...kept, ...podNetworks(i.settings)], (x) => x.reason);
  const sameTail = sameList(b.kept, tail, sameEntry);
  const exempt = outermost([...fixedExemptions(i), ...open], () => 'exempt');
  const next: DesiredFirewall = {
    enabled: true,
    iface: i.settings.iface,
    blocked: d.removed.length + d.added.length === 0 && sameTail ? prev.blocked : b.carried.concat(tail),
    hops: d.hopsChanged ? [...b.hops.keys()].sort(compareIpText) : prev.hops,
    endpoints:
      d.endpointsRemoved.length + d.endpointsAdded.length === 0
        ? prev.endpoints
        : patchSorted(prev.endpoints, d.endpointsRemoved, d.endpointsAdded),
    exempt: sameList(prev.exempt, exempt, sameExempt) ? prev.exempt : exempt,
  };
  bases.delete(prev);
  b.routes = i.desired.routes;
  b.peers = i.desired.peers;
  const unchanged =
    next.blocked === prev.blocked &&
    sameList(next.hops, prev.hops, (u, v) => u === v) &&
    next.endpoints === prev.endpoints;
  const out = unchanged && next.exempt === prev.exempt ? prev : next;
  if (out !== prev) {
    const tailGone = sameTail ? [] : b.kept.filter((x) => !tail.some((y) => sameEntry(x, y)));
    const tailCame = sameTail ? [] : tail.filter((y) => !b.kept.some((x) => sameEntry(x, y)));
    deltas.set(out, {
      from: prev,
      removed: [...d.removed, ...tailGone],
      added: [...d.added, ...tailCame],
      endpointsRemoved: d.endpointsRemoved,
      endpointsAdded: d.endpointsAdded,
    });
  }
  b.kept = tail;
  bases.set(out, b);
  return out;
}

/** The whole rule set, computed in full (and its basis, for the next one). */
function fullFirewall(i: FirewallInput, key: string, overlays: Overlays): DesiredFirewall {
  const s = i.settings;
  const b = fullBasis(i, key, overlays);
  const gone = (i.previous?.blocked ?? []).filter(
    (x) => x.reason !== 'pod-network' && x.owner !== 'overlay' && !b.listed.has(x.dst),
  );
  const { kept, open } = keptAndOpen(b, gone, openRanges(i));
  b.kept = outermost([...kept, ...podNetworks(s)], (x) => x.reason);
  const out: DesiredFirewall = {
    enabled: true,
    iface: s.iface,
    // Carried ranges never nest (membership gives an overlapping range to one claimant; overlay
    // addresses are left to the overlay): in the order of the routes and peers, no sort per change.
    blocked: b.carried.concat(b.kept),
    hops: [...b.hops.keys()].sort(compareIpText),
    endpoints: [...b.endpoints.keys()].sort(),
    exempt: outermost([...fixedExemptions(i), ...open], () => 'exempt'),
  };
  const prev = i.previous as DesiredFirewall | undefined;
  const kept2 = prev && 'hops' in prev && sameFirewall(prev, out) ? prev : out;
  bases.set(kept2, b);
  return kept2;
}

/**
 * The rule set of one node: a pure function of its desired state, the Node list, the settings and
 * the rule set before. Derived from the one before when the desired state was (one change costs
 * what it changed); the same rule set as before is the very same object.
 */
export function firewallFor(i: FirewallInput): DesiredFirewall {
  const s = i.settings;
  if (!s.enabled) return { enabled: false, iface: s.iface, blocked: [], hops: [], endpoints: [], exempt: [] };
  const list = overlaysOf(s);
  const overlays = { text: list.map((o) => formatCidr(o.c)).join(), list };
  const key = settingsKey(i);
  const b = followedBasis(i, key);
  return b ? derivedFirewall(i, b, i.previous as DesiredFirewall, overlays) : fullFirewall(i, key, overlays);
}

/** Orders addresses by family, then value. */
function compareIpText(a: string, b: string): number {
  return compareDst(hostCidr(parseIp(a)!), hostCidr(parseIp(b)!));
}

/** True when two rule sets are the same (then the step keeps the earlier object: no deep comparison, no adapter work). */
export function sameFirewall(a: DesiredFirewall, b: DesiredFirewall): boolean {
  if (a === b) return true;
  // Derived from `a` with something changed (unchanged, it would be `a` itself).
  if (deltas.get(b)?.from === a) return false;
  return (
    a.enabled === b.enabled &&
    a.iface === b.iface &&
    sameList(a.blocked, b.blocked, sameEntry) &&
    sameList(a.hops, b.hops, (u, v) => u === v) &&
    sameList(a.endpoints, b.endpoints, (u, v) => u === v) &&
    sameList(a.exempt, b.exempt, sameExempt)
  );
}
