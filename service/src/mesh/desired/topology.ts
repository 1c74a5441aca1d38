/**
 * Topology: which location each admitted Node is in (Kilo's `location` annotation, else the
 * configured label, else a location of its own), who leads each location (the holder of the
 * location's Lease when it is a member that no other member outranks, else by rank: Kilo's
 * `leader` annotation and a reachable endpoint first, then seniority), and from that the WireGuard peers and routes one node needs for
 * `granularity = location` (leaders tunnel to leaders, members route through their leader over the
 * private network) or `cross` (tunnels only between locations). Pure: every node computes the same
 * locations and leaders from the same Nodes and Leases.
 */
import { KILO_LEADER, KILO_LOCATION } from '../annotations.js';
import { canonicalEndpoint, firstAddress } from '../membership/endpoints.js';
import { overlayHosts, type Member } from '../membership/membership.js';
import { byName, compareSeniority, compareText } from '../membership/order.js';
import { chooseLeader, NO_LIVENESS, type Liveness } from '../observations/leadership.js';
import { hasUnsafe } from '../text.js';
import { nodePeer } from './peer-set.js';
import type { DesiredPeer, DesiredRoute, LocationView, MeshNode } from '../types.js';
import { type Ip, cidrContains, compareCidrText, formatIp, hostCidr, parseCidr, parseIp } from '../../net/ip.js';

/** Who tunnels to whom. */
export type Granularity = 'full' | 'location' | 'cross';

/** The settings topology depends on (every node of a cluster should have the same ones). */
export interface TopologySettings {
  granularity: Granularity;
  /** The Node label naming a location (after the Kilo annotation). */
  locationLabel: string;
  /** A Node label whose presence makes a node a preferred leader, like Kilo's leader annotation. */
  leaderLabel?: string | undefined;
  /** False: Kilo's location and leader annotations (which a node's kubelet may write) are ignored. */
  kiloAnnotations?: boolean | undefined;
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

/** The location of a Node: Kilo's annotation (while trusted), else the label, else its own. */
export function locationOf(node: MeshNode, label: string, kilo = true): LocationId {
  const fromAnnotation = kilo ? node.annotations[KILO_LOCATION]?.trim() : undefined;
  if (fromAnnotation && fromAnnotation.length <= MAX_LOCATION && !hasUnsafe(fromAnnotation))
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
  /** What else its location is reached by (its addresses, allowed-location-ips), as membership admitted them. */
  locationRanges: ReadonlyArray<{ dst: string; what: string }>;
}

/** The topology of the mesh. */
export interface Topology {
  granularity: Granularity;
  /** Locations sorted by id. */
  locations: LocationView[];
  /** Node name → its location id. */
  locationOf: ReadonlyMap<string, string>;
  /** Problems found (a leader without a private address), one sentence each. */
  warnings: string[];
}

/** The first InternalIP, IPv4 preferred (or of the family asked for). */
function privateIPOf(node: MeshNode, family?: 4 | 6): string | undefined {
  const ip = firstAddress(node.internalIPs, family);
  return ip ? formatIp(ip) : undefined;
}

/** The fields of a member (or of this node) that topology carries. */
export type PlaceableMember = Pick<
  Member,
  | 'name'
  | 'createdAt'
  | 'publicKey'
  | 'overlayAddress'
  | 'overlayAddress6'
  | 'endpoint'
  | 'candidates'
  | 'podCIDRs'
  | 'locationRanges'
>;

/** An admitted Node (or this node) placed in its location. */
export function place(m: PlaceableMember, node: MeshNode, settings: TopologySettings): Placed {
  const ip = canonicalEndpoint(m.endpoint)?.ip;
  return {
    name: m.name,
    createdAt: m.createdAt,
    publicKey: m.publicKey,
    overlayAddress: m.overlayAddress,
    ...(m.overlayAddress6 ? { overlayAddress6: m.overlayAddress6 } : {}),
    endpoint: m.endpoint,
    ...(m.candidates ? { candidates: m.candidates } : {}),
    podCIDRs: m.podCIDRs,
    location: locationOf(node, settings.locationLabel, settings.kiloAnnotations !== false),
    wantsToLead:
      (settings.kiloAnnotations !== false && node.annotations[KILO_LEADER] !== undefined) ||
      (!!settings.leaderLabel && node.labels?.[settings.leaderLabel] !== undefined),
    reachable: !!ip && isReachable(ip, settings.reachable),
    privateIP: privateIPOf(node),
    privateIP6: privateIPOf(node, 6),
    locationRanges: m.locationRanges ?? [],
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

/** What deciding locations and leaders takes. */
export interface TopologyDecision {
  /** Every admitted Node, and the viewing node, placed. */
  placed: readonly Placed[];
  granularity: Granularity;
  /** Who the location Leases show alive (default: nobody known, leaders by rank alone). */
  liveness?: Liveness;
  warnings?: string[];
}

/** The leader of one location (by the one leader rule) and why it leads. */
function leaderOf(order: readonly Placed[], alive: ReadonlySet<string>, lapsed: ReadonlySet<string>): LeaderVerdict {
  const name = chooseLeader(
    order.map((m) => m.name),
    alive,
    lapsed,
  );
  const leader = order.find((m) => m.name === name)!;
  if (alive.has(name)) {
    const above = order.slice(0, order.indexOf(leader)).filter((m) => rank(m) <= rank(leader));
    const note = above.length > 0 ? ` (${above.map((m) => m.name).join(', ')}, ranked above, not alive)` : '';
    return { leader, why: `${RANK_WHY[rank(leader)]!}, alive${note}` };
  }
  const gone = order.filter((m) => lapsed.has(m.name)).map((m) => m.name);
  return {
    leader,
    why: `${RANK_WHY[rank(leader)]!}${gone.length > 0 ? `, after ${gone.join(', ')} stopped renewing` : ''}`,
  };
}

interface LeaderVerdict {
  leader: Placed;
  why: string;
}

/**
 * Decides locations and leaders from the Node list alone: each location is led by the first of its
 * members in rank order (Kilo's: annotated and reachable, annotated, reachable, any; then
 * seniority) that the Leases show alive; while nobody is seen alive, by the first that did not stop
 * (a member that wrote itself into a Lease is only alive: it leads nobody it does not outrank).
 */
export function decideTopology(d: TopologyDecision): Topology {
  const liveness = d.liveness ?? NO_LIVENESS;
  const byLocation = new Map<string, Placed[]>();
  for (const p of d.placed) {
    const list = byLocation.get(p.location.id);
    if (list) list.push(p);
    else byLocation.set(p.location.id, [p]);
  }
  const locations: LocationView[] = [];
  for (const [id, members] of [...byLocation].sort(([a], [b]) => compareText(a, b))) {
    members.sort(compareSeniority);
    const alive = liveness.alive.get(id) ?? new Set<string>();
    const lapsed = liveness.lapsed.get(id) ?? new Set<string>();
    const order = leaderOrder(members);
    const { leader, why } = leaderOf(order, alive, lapsed);
    const names = (list: readonly Placed[]): string[] => list.map((m) => m.name);
    locations.push({
      ...members[0]!.location,
      members: names(members),
      leader: leader.name,
      why,
      order: names(order),
      alive: names(order.filter((m) => alive.has(m.name))),
      lapsed: names(order.filter((m) => lapsed.has(m.name))),
    });
  }
  const locationOf = new Map(d.placed.map((p) => [p.name, p.location.id]));
  return { granularity: d.granularity, locations, locationOf, warnings: d.warnings ?? [] };
}

/** What one node needs for a topology: its peers and routes. */
export interface TopologyPlan {
  peers: DesiredPeer[];
  routes: DesiredRoute[];
  /** Problems, one sentence each (a leader with no private address to route through). */
  warnings: string[];
}

/**
 * The ranges a location is reached by from another one (its members' pods, overlay addresses, and
 * the location ranges membership admitted), sorted, each with what it is (for logs) in `what`;
 * a leader's endpoint is never routed into the tunnel.
 */
export function locationRanges(
  members: readonly Placed[],
  exclude: ReadonlySet<string>,
  what: Map<string, string>,
): string[] {
  const add = (range: string, kind: string, m: Placed): void => {
    if (!what.has(range)) what.set(range, `${kind} ${range} of ${m.name}`);
  };
  for (const m of members) {
    for (const h of overlayHosts(m)) add(h, 'overlay address', m);
    for (const c of m.podCIDRs) add(c, 'PodCIDR', m);
    for (const r of m.locationRanges) if (!exclude.has(r.dst)) add(r.dst, r.what, m);
  }
  return [...what.keys()].sort(compareCidrText);
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
  return viaPrivate([...overlayHosts(m), ...(settings.localRoutes ? m.podCIDRs : [])], m);
}

/** What planning one node's topology takes. */
export interface TopologyPlanInput {
  /** This node, placed. */
  self: Placed;
  /** Every admitted Node and this node, placed. */
  placed: readonly Placed[];
  /** From `decideTopology` over `placed`. */
  topology: Topology;
  settings: TopologySettings;
  /** The WireGuard interface routes into the tunnel name. */
  iface: string;
  keepalive: number;
}

/** The tunnels of `cross` granularity: one to every node of another location, carrying its pods and overlay addresses. */
function crossPlan(i: TopologyPlanInput, others: readonly Placed[], plan: TopologyPlan): TopologyPlan {
  for (const m of others) {
    if (m.location.id === i.self.location.id) continue;
    const allowed = [...overlayHosts(m), ...m.podCIDRs].sort(compareCidrText);
    plan.peers.push(nodePeer(m, allowed, i.keepalive, m.location.name));
    for (const c of m.podCIDRs) plan.routes.push({ dst: c, dev: i.iface, via: m.name });
  }
  return plan;
}

/** The host routes of the location leaders' endpoints, which must never be routed into the tunnel. */
export function leaderEndpoints(topology: Topology, byName: ReadonlyMap<string, Placed>): Set<string> {
  const out = new Set<string>();
  for (const l of topology.locations) {
    const ip = canonicalEndpoint(byName.get(l.leader)?.endpoint ?? '')?.ip;
    if (ip) out.add(hostCidr(ip));
  }
  return out;
}

/**
 * The peers and routes of node `self` for `location` or `cross` granularity: with `location`,
 * leaders tunnel to the other locations' leaders and members route through their own leader.
 */
export function planTopology(i: TopologyPlanInput): TopologyPlan {
  const { self, topology, iface } = i;
  const plan: TopologyPlan = { peers: [], routes: [], warnings: [] };
  const placed = new Map(i.placed.map((p) => [p.name, p]));
  const others = i.placed.filter((p) => p.name !== self.name && p.publicKey !== self.publicKey);
  const sameLocation = others.filter((p) => p.location.id === self.location.id);
  for (const m of sameLocation) plan.routes.push(...localRoutes(m, i.settings));
  if (i.settings.granularity === 'cross') return crossPlan(i, others, plan);
  const mine = topology.locations.find((l) => l.id === self.location.id);
  const leaderOfMine = mine ? placed.get(mine.leader) : undefined;
  const iLead = !mine || mine.leader === self.name;
  const endpoints = leaderEndpoints(topology, placed);
  for (const loc of topology.locations) {
    if (loc.id === self.location.id) continue;
    const leader = placed.get(loc.leader)!;
    const members = loc.members.map((n) => placed.get(n)!).filter((p) => p.publicKey !== self.publicKey);
    const what = new Map<string, string>();
    const ranges = locationRanges(members, endpoints, what);
    if (iLead) {
      plan.peers.push(nodePeer(leader, ranges, i.keepalive, loc.name));
      // Overlay addresses are on the interface's own network already; the rest needs a route.
      const overlay = new Set(members.flatMap(overlayHosts));
      for (const r of ranges)
        if (!overlay.has(r)) plan.routes.push({ dst: r, dev: iface, via: leader.name, what: what.get(r)! });
    } else if (leaderOfMine) {
      const describe = (r: string): string => `${what.get(r)!} (location ${loc.name}, led by ${leader.name})`;
      plan.routes.push(...viaPrivate(ranges, leaderOfMine, describe));
    }
  }
  if (!iLead && !leaderOfMine?.privateIP && !leaderOfMine?.privateIP6 && topology.locations.length > 1) {
    plan.warnings.push(
      `the leader of this node's location, ${mine?.leader ?? '?'}, has no InternalIP to route other locations ` +
        'through: they are unreachable from this node',
    );
  }
  plan.peers.sort(byName);
  return plan;
}

/** What the cluster's topology, as an operator sees it, is decided from. */
export interface ClusterTopologyInput {
  /** Members of a membership decided without a viewing node. */
  members: readonly Member[];
  nodes: ReadonlyMap<string, MeshNode>;
  settings: TopologySettings;
  liveness?: Liveness;
}

/** The topology of the whole cluster as an operator sees it: every admitted Node placed and the locations decided. */
export function clusterTopology(i: ClusterTopologyInput): Topology {
  const placed = i.members.filter((m) => i.nodes.has(m.name)).map((m) => place(m, i.nodes.get(m.name)!, i.settings));
  return decideTopology({ placed, granularity: i.settings.granularity, liveness: i.liveness });
}
