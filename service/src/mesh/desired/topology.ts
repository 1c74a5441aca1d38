/**
 * Topology: which location each admitted Node is in (Kilo's `location` annotation, else the
 * configured label, else a location of its own), who leads each location (the holder of the
 * location's Lease when it is a member that no other member outranks, else by rank: Kilo's
 * `leader` annotation and a reachable endpoint first, then seniority), and from that the WireGuard peers and routes one node needs for
 * `granularity = location` (leaders tunnel to leaders, members route through their leader over the
 * private network) or `cross` (tunnels only between locations). Pure: every node computes the same
 * locations and leaders from the same Nodes and Leases.
 */
import { KILO_ALLOWED_LOCATION_IPS, KILO_LEADER, KILO_LOCATION } from '../annotations.js';
import type { Member } from '../membership/membership.js';
import { rangeProblem, type RangePolicy } from '../membership/ranges.js';
import { compareSeniority } from '../membership/order.js';
import { quoted } from '../text.js';
import type { DesiredPeer, DesiredRoute, MeshNode } from '../types.js';
import {
  type Cidr,
  type Ip,
  cidrContains,
  cidrsOverlap,
  compareCidrText,
  formatCidr,
  formatIp,
  hostCidr,
  parseCidr,
  parseHostPort,
  parseIp,
} from '../../net/ip.js';

/** Who tunnels to whom. */
export type Granularity = 'full' | 'location' | 'cross';

/** The settings topology depends on (every node of a cluster should have the same ones). */
export interface TopologySettings {
  granularity: Granularity;
  /** The Node label naming a location (after the Kilo annotation). */
  locationLabel: string;
  /** Endpoints other locations can dial: `public` (no private-use address) or these CIDRs. */
  reachable: 'public' | readonly string[];
  /** Routes to the pods of the same location over the private network (false: the CNI does it). */
  localRoutes: boolean;
}

/** Addresses that are not `public` (private use, shared, loopback, link-local, unique local). */
const NOT_PUBLIC = [
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '0.0.0.0/8',
  'fc00::/7',
  'fe80::/10',
  '::/127',
].map((t) => parseCidr(t)!);

/** True when other locations can dial `ip` by the `reachable` setting. */
export function isReachable(ip: Ip, reachable: TopologySettings['reachable']): boolean {
  if (reachable === 'public') return !NOT_PUBLIC.some((c) => cidrContains(c, ip));
  return reachable.some((t) => {
    const c = parseCidr(t);
    return !!c && cidrContains(c, ip);
  });
}

/** A location: `location:<name>` for a named one, `node:<name>` for a Node on its own. */
export interface LocationId {
  id: string;
  /** What an admin calls it: the name, or the Node's name for a location of its own. */
  name: string;
  /** Where it came from. */
  source: 'annotation' | 'label' | 'node';
}

/** Longest location name accepted (a label value's limit). */
const MAX_LOCATION = 63;

/** The location of a Node: Kilo's annotation, else the label, else its own. */
export function locationOf(node: MeshNode, label: string): LocationId {
  const fromAnnotation = node.annotations[KILO_LOCATION]?.trim();
  if (fromAnnotation && fromAnnotation.length <= MAX_LOCATION && !/[\u0000-\u001f]/.test(fromAnnotation))
    return { id: `location:${fromAnnotation}`, name: fromAnnotation, source: 'annotation' };
  const fromLabel = node.labels?.[label]?.trim();
  if (fromLabel) return { id: `location:${fromLabel}`, name: fromLabel, source: 'label' };
  return { id: `node:${node.name}`, name: node.name, source: 'node' };
}

/** One admitted Node (its member entry) with what topology needs to know about it. */
export interface Placed extends Pick<
  Member,
  'name' | 'createdAt' | 'publicKey' | 'overlayAddress' | 'overlayAddress6' | 'endpoint' | 'candidates'
> {
  podCIDRs: readonly string[];
  location: LocationId;
  /** Kilo's `leader` annotation is set. */
  wantsToLead: boolean;
  /** Its endpoint can be dialled from other locations. */
  reachable: boolean;
  /** The address members of its location reach it by (its first InternalIP, IPv4 preferred). */
  privateIP: string | undefined;
  /** Its first IPv6 InternalIP, for routes to IPv6 ranges over the private network. */
  privateIP6: string | undefined;
  /** Its InternalIPs (routed to its location from other locations). */
  internalIPs: readonly string[];
  /** Kilo's `allowed-location-ips` that passed the range rules. */
  allowedLocationIPs: readonly string[];
}

/** A location, its members and its leader. */
export interface LocationView {
  location: LocationId;
  /** Member names, oldest first. */
  members: string[];
  leader: string;
  /** Why that node leads, one phrase. */
  why: string;
  /** Who should take the Lease when it is free, best first (a holder whose Lease ran out left out). */
  candidates: string[];
}

/** The topology of the mesh. */
export interface Topology {
  granularity: Granularity;
  /** Locations sorted by id. */
  locations: LocationView[];
  /** Node name → its location id. */
  locationOf: ReadonlyMap<string, string>;
  /** Problems found (refused allowed-location-ips, a leader without a private address), one sentence each. */
  warnings: string[];
}

/** An endpoint's address, if it is one. */
function endpointIp(endpoint: string): Ip | undefined {
  const hp = parseHostPort(endpoint);
  return hp ? parseIp(hp.host) : undefined;
}

/** The first InternalIP, IPv4 preferred (or of the family asked for). */
function privateIPOf(node: MeshNode, family?: 4 | 6): string | undefined {
  const ips = node.internalIPs.map((t) => parseIp(t)).filter((ip): ip is Ip => !!ip);
  const pick = family ? ips.find((ip) => ip.family === family) : (ips.find((ip) => ip.family === 4) ?? ips[0]);
  return pick ? formatIp(pick) : undefined;
}

/** Kilo's allowed-location-ips of a Node that pass the range rules; the rest are warned about. */
function allowedLocationIPs(node: MeshNode, policy: RangePolicy, warnings: string[]): string[] {
  const raw = node.annotations[KILO_ALLOWED_LOCATION_IPS];
  if (!raw) return [];
  const out: string[] = [];
  for (const text of raw
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)) {
    const c = parseCidr(text);
    const problem = !c || !text.includes('/') ? 'is not a CIDR' : rangeProblem(c, policy, false);
    if (problem)
      warnings.push(`Node ${node.name}: ${KILO_ALLOWED_LOCATION_IPS} entry ${quoted(text)} ${problem}: not routed`);
    else out.push(formatCidr(c!));
  }
  return out;
}

/** An admitted Node (or this node) placed in its location. */
export function place(
  m: Pick<
    Member,
    'name' | 'createdAt' | 'publicKey' | 'overlayAddress' | 'overlayAddress6' | 'endpoint' | 'candidates' | 'podCIDRs'
  >,
  node: MeshNode,
  settings: TopologySettings,
  policy: RangePolicy,
  warnings: string[],
): Placed {
  const ip = endpointIp(m.endpoint);
  return {
    name: m.name,
    createdAt: m.createdAt,
    publicKey: m.publicKey,
    overlayAddress: m.overlayAddress,
    ...(m.overlayAddress6 ? { overlayAddress6: m.overlayAddress6 } : {}),
    endpoint: m.endpoint,
    ...(m.candidates ? { candidates: m.candidates } : {}),
    podCIDRs: m.podCIDRs,
    location: locationOf(node, settings.locationLabel),
    wantsToLead: node.annotations[KILO_LEADER] !== undefined,
    reachable: !!ip && isReachable(ip, settings.reachable),
    privateIP: privateIPOf(node),
    privateIP6: privateIPOf(node, 6),
    internalIPs: node.internalIPs.filter((t) => parseIp(t)),
    allowedLocationIPs: allowedLocationIPs(node, policy, warnings),
  };
}

/** Rank of a leader candidate, best first: Kilo's order (annotated and reachable, annotated, reachable, any). */
function rank(p: Placed): number {
  if (p.wantsToLead) return p.reachable ? 0 : 1;
  return p.reachable ? 2 : 3;
}

const RANK_WHY = [
  `annotated ${KILO_LEADER} and reachable from other locations`,
  `annotated ${KILO_LEADER} (but not reachable from other locations)`,
  'the senior node reachable from other locations',
  'the senior node (none is reachable from other locations)',
];

/** Candidates of a location in the order they should lead (best rank, then seniority). */
export function leaderOrder(members: readonly Placed[]): Placed[] {
  return [...members].sort((a, b) => rank(a) - rank(b) || compareSeniority(a, b));
}

/**
 * Decides locations and leaders. `holders` are the live Lease holders by location id (checked by
 * the caller for liveness); a holder leads against members of its own rank (so a returning node
 * does not take the role back), not against a better rank, and one that is not a member of that
 * location is ignored. `lapsed`
 * names, by location, a holder whose Lease ran out: it does not lead again by rank until it holds
 * the Lease again (while another member of the location can lead).
 */
export function decideTopology(
  placed: readonly Placed[],
  granularity: Granularity,
  holders: ReadonlyMap<string, string>,
  warnings: string[] = [],
  lapsed: ReadonlyMap<string, string> = new Map(),
): Topology {
  const byLocation = new Map<string, Placed[]>();
  for (const p of placed) {
    const list = byLocation.get(p.location.id);
    if (list) list.push(p);
    else byLocation.set(p.location.id, [p]);
  }
  const locations: LocationView[] = [];
  for (const [id, members] of [...byLocation].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    members.sort(compareSeniority);
    const holder = holders.get(id);
    const held = holder !== undefined ? members.find((m) => m.name === holder) : undefined;
    const order = leaderOrder(members);
    const candidates = order.filter((m) => m.name !== lapsed.get(id));
    const best = candidates[0] ?? order[0]!;
    // A holder that took the Lease before better members joined (a node that starts first, alone
    // in its view), or whose endpoint stopped being reachable, gives way to a better rank.
    const keeps = held !== undefined && rank(held) <= rank(best);
    const leader = keeps ? held : best;
    const why = keeps
      ? `holds the location's leader Lease (${RANK_WHY[rank(held)]})`
      : `${RANK_WHY[rank(best)]!}${held ? `, above the Lease holder ${held.name}` : lapsed.has(id) ? `, after ${lapsed.get(id)} stopped renewing its Lease` : ''}`;
    locations.push({
      location: members[0]!.location,
      members: members.map((m) => m.name),
      leader: leader.name,
      why,
      candidates: (candidates.length > 0 ? candidates : order).map((m) => m.name),
    });
  }
  return { granularity, locations, locationOf: new Map(placed.map((p) => [p.name, p.location.id])), warnings };
}

/** What one node needs for a topology: its peers and routes. */
export interface TopologyPlan {
  peers: DesiredPeer[];
  routes: DesiredRoute[];
  /** Problems, one sentence each (a leader with no private address to route through). */
  warnings: string[];
}

/**
 * The ranges a location is reached by from another one (its members' pods, overlay and private
 * addresses, and allowed location IPs), sorted, each with what it is (for logs) in `what`.
 */
function locationRanges(members: readonly Placed[], exclude: ReadonlySet<string>, what: Map<string, string>): string[] {
  const add = (range: string, kind: string, m: Placed): void => {
    if (!what.has(range)) what.set(range, `${kind} ${range} of ${m.name}`);
  };
  for (const m of members) {
    for (const h of overlayHostsOf(m)) add(h, 'overlay address', m);
    for (const c of m.podCIDRs) add(c, 'PodCIDR', m);
    for (const ip of m.internalIPs) {
      const h = hostCidr(parseIp(ip)!);
      if (!exclude.has(h)) add(h, 'InternalIP', m);
    }
    for (const c of m.allowedLocationIPs) add(c, `${KILO_ALLOWED_LOCATION_IPS} entry`, m);
  }
  return [...what.keys()].sort(compareCidrText);
}

/** Drops ranges that overlap one already taken (first come, first kept), so no two peers claim one address. */
function keepDisjoint(ranges: readonly string[], taken: Cidr[]): string[] {
  const out: string[] = [];
  for (const t of ranges) {
    const c = parseCidr(t)!;
    if (taken.some((x) => cidrsOverlap(x, c))) continue;
    taken.push(c);
    out.push(t);
  }
  return out;
}

/** A node's overlay addresses as host routes (IPv4, and IPv6 with a dual-stack overlay). */
function overlayHostsOf(m: Pick<Placed, 'overlayAddress' | 'overlayAddress6'>): string[] {
  return [hostCidr(parseIp(m.overlayAddress)!), ...(m.overlayAddress6 ? [hostCidr(parseIp(m.overlayAddress6)!)] : [])];
}

/** The next hop on the private network for a range: `to`'s InternalIP of the range's family (none: no route). */
export function gatewayFor(range: string, to: Pick<Placed, 'privateIP' | 'privateIP6'>): string | undefined {
  if (parseCidr(range)?.family === 6)
    return to.privateIP6 ?? (to.privateIP && parseIp(to.privateIP)?.family === 6 ? to.privateIP : undefined);
  return to.privateIP && parseIp(to.privateIP)?.family === 4 ? to.privateIP : undefined;
}

/** Routes for `ranges` through `to` over the private network, each through its family's address (and, for logs, `describe`d). */
function viaPrivate(ranges: readonly string[], to: Placed, describe?: (dst: string) => string): DesiredRoute[] {
  const out: DesiredRoute[] = [];
  for (const dst of ranges) {
    const gateway = gatewayFor(dst, to);
    if (gateway) out.push({ dst, gateway, via: to.name, ...(describe ? { what: describe(dst) } : {}) });
  }
  return out;
}

/** The routes to a member of the same location over the private network (its overlay addresses always, its pods if asked). */
function localRoutes(m: Placed, settings: TopologySettings): DesiredRoute[] {
  return viaPrivate([...overlayHostsOf(m), ...(settings.localRoutes ? m.podCIDRs : [])], m);
}

/** The peer of a Node, as in a full mesh. */
function nodePeer(m: Placed, allowedIPs: string[], keepalive: number, location?: string): DesiredPeer {
  return {
    kind: 'node',
    name: m.name,
    publicKey: m.publicKey,
    endpoint: m.endpoint,
    ...(m.candidates ? { candidates: m.candidates } : {}),
    allowedIPs,
    persistentKeepalive: keepalive,
    ...(location ? { location } : {}),
  };
}

/**
 * The peers and routes of node `self` for `location` or `cross` granularity. `placed` holds every
 * admitted Node and this node; `topology` came from `decideTopology` over them.
 */
export function planTopology(
  self: Placed,
  placed: readonly Placed[],
  topology: Topology,
  settings: TopologySettings,
  iface: string,
  keepalive: number,
): TopologyPlan {
  const peers: DesiredPeer[] = [];
  const routes: DesiredRoute[] = [];
  const warnings: string[] = [];
  const byName = new Map(placed.map((p) => [p.name, p]));
  const others = placed.filter((p) => p.name !== self.name && p.publicKey !== self.publicKey);
  const sameLocation = others.filter((p) => p.location.id === self.location.id);
  for (const m of sameLocation) routes.push(...localRoutes(m, settings));
  if (settings.granularity === 'cross') {
    for (const m of others) {
      if (m.location.id === self.location.id) continue;
      const allowed = [...overlayHostsOf(m), ...m.podCIDRs].sort(compareCidrText);
      peers.push(nodePeer(m, allowed, keepalive, m.location.name));
      for (const c of m.podCIDRs) routes.push({ dst: c, dev: iface, via: m.name });
    }
    return { peers, routes, warnings };
  }
  // location: leaders tunnel to the other locations' leaders; members route through their leader.
  const mine = topology.locations.find((l) => l.location.id === self.location.id);
  const leaderOfMine = mine ? byName.get(mine.leader) : undefined;
  const iLead = !mine || mine.leader === self.name;
  const endpoints = new Set(
    topology.locations
      .map((l) => byName.get(l.leader)?.endpoint)
      .filter((e): e is string => !!e)
      .map((e) => endpointIp(e))
      .filter((ip): ip is Ip => !!ip)
      .map(hostCidr),
  );
  const taken: Cidr[] = [self, ...sameLocation]
    .flatMap((p) => [...overlayHostsOf(p), ...p.podCIDRs])
    .map((t) => parseCidr(t)!);
  for (const loc of topology.locations) {
    if (loc.location.id === self.location.id) continue;
    const leader = byName.get(loc.leader)!;
    const members = loc.members.map((n) => byName.get(n)!).filter((p) => p.publicKey !== self.publicKey);
    const what = new Map<string, string>();
    const ranges = keepDisjoint(locationRanges(members, endpoints, what), taken);
    if (iLead) {
      peers.push(nodePeer(leader, ranges, keepalive, loc.location.name));
      // Overlay addresses are on the interface's own network already; the rest needs a route.
      const overlay = new Set(members.flatMap(overlayHostsOf));
      for (const r of ranges)
        if (!overlay.has(r)) routes.push({ dst: r, dev: iface, via: leader.name, what: what.get(r)! });
    } else if (leaderOfMine) {
      routes.push(
        ...viaPrivate(
          ranges,
          leaderOfMine,
          (r) => `${what.get(r)!} (location ${loc.location.name}, led by ${leader.name})`,
        ),
      );
    }
  }
  if (!iLead && !leaderOfMine?.privateIP && !leaderOfMine?.privateIP6 && topology.locations.length > 1) {
    warnings.push(
      `the leader of this node's location, ${mine?.leader ?? '?'}, has no InternalIP to route other locations through: they are unreachable from this node`,
    );
  }
  return { peers: peers.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)), routes, warnings };
}

/**
 * The topology of the whole cluster as an operator sees it: every admitted Node placed (from a
 * membership decided without a viewing node) and the locations decided.
 */
export function clusterTopology(
  members: readonly Member[],
  nodes: ReadonlyMap<string, MeshNode>,
  settings: TopologySettings,
  policy: RangePolicy,
  holders: ReadonlyMap<string, string>,
  lapsed?: ReadonlyMap<string, string>,
): Topology {
  const warnings: string[] = [];
  const placed = members
    .filter((m) => nodes.has(m.name))
    .map((m) => place(m, nodes.get(m.name)!, settings, policy, warnings));
  return decideTopology(placed, settings.granularity, holders, warnings, lapsed);
}
