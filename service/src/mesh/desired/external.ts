/**
 * What an external Peer needs from the mesh — one WireGuard peer per node (full mesh, `cross`) or
 * per location leader carrying its whole location (`location`), the extra ranges on exactly one of
 * them, and a route per range — from the verdicts, topology and endpoint choice the nodes decide
 * by, for `wg-overlay showconf peer` and `wg-overlay connect`.
 */
import type { AdmittedPeer } from '../membership/external-peers.js';
import { overlayHosts, type Member, type Membership } from '../membership/membership.js';
import { byName, compareSeniority } from '../membership/order.js';
import type { Liveness } from '../observations/leadership.js';
import type { DesiredPeer, DesiredRoute, LocationView, MeshNode } from '../types.js';
import { compareCidrText } from '../../net/ip.js';
import { letThrough, type GuardRange } from './guard.js';
import { withChoice, type EndpointChoice } from './peer-set.js';
import {
  clusterTopology,
  leaderEndpoints,
  locationRanges,
  place,
  type Placed,
  type TopologySettings,
} from './topology.js';

/** What the plan of an external Peer is made from. */
export interface ExternalPlanInput {
  /** The membership as an operator sees it (decided without a viewing node). */
  membership: Membership;
  /** The Peer's name. */
  name: string;
  /** The interface its routes go through. */
  iface: string;
  /** Extra ranges routed into the cluster through one node (e.g. the service CIDR). */
  extra?: readonly string[];
  /** The node that carries them (default: the oldest; with locations, its location's leader does). */
  via?: string | undefined;
  /** With `granularity = location` or `cross`: the topology settings, every Node, and who the leader Leases show alive. */
  topology?: { settings: TopologySettings; nodes: ReadonlyMap<string, MeshNode>; liveness?: Liveness } | undefined;
  /** What the Peer's host never routes into the tunnel (its own subnets, the API server). */
  guard?: readonly GuardRange[];
  /** Endpoints failover chose. */
  choice?: EndpointChoice | undefined;
  /** Keepalive towards the nodes (default: the Peer's own `persistentKeepalive`). */
  keepalive?: number | undefined;
}

/** The plan of an external Peer. */
export interface ExternalPlan {
  /** The Peer as the mesh admitted it. */
  peer: AdmittedPeer;
  /** One per node (or location leader), by name; a node's own ranges sorted, then the extra ranges. */
  peers: DesiredPeer[];
  /** Every range of every peer through the interface, peer by peer. */
  routes: DesiredRoute[];
  /** The node that carries the extra ranges. */
  via: string;
  /** Ranges the guard held back, one sentence each. */
  warnings: string[];
  /** With `granularity = location`: the locations and their leaders. */
  locations?: LocationView[] | undefined;
}

/** Why there is no plan: the Peer is skipped or missing, no node is in the mesh, or `via` names no node. */
export interface ExternalPlanProblem {
  problem: 'skipped' | 'missing' | 'no-nodes' | 'no-such-via';
  message: string;
}

/** One tunnel the Peer dials: a node, and the ranges it carries with what each is. */
interface Tunnel {
  target: Pick<Member, 'name' | 'publicKey' | 'endpoint' | 'candidates'>;
  ranges: ReadonlyMap<string, string>;
  location?: string | undefined;
  /** The names of the nodes whose ranges it carries (for `via`). */
  carries: readonly string[];
}

/** Full mesh and `cross`: a tunnel to every member, carrying its overlay addresses and PodCIDRs. */
function memberTunnels(members: readonly Member[]): Tunnel[] {
  return members.map((m) => {
    const ranges = new Map<string, string>();
    for (const h of overlayHosts(m)) ranges.set(h, `overlay address ${h} of ${m.name}`);
    for (const c of m.podCIDRs) ranges.set(c, `PodCIDR ${c} of ${m.name}`);
    return { target: m, ranges, carries: [m.name] };
  });
}

/** `location`: a tunnel to every location's leader, carrying its whole location; and the locations. */
function leaderTunnels(i: ExternalPlanInput, topo: NonNullable<ExternalPlanInput['topology']>) {
  const members = i.membership.members.filter((m) => topo.nodes.has(m.name));
  const topology = clusterTopology({ members, nodes: topo.nodes, settings: topo.settings, liveness: topo.liveness });
  const placed = new Map<string, Placed>(
    members.map((m) => [m.name, place(m, topo.nodes.get(m.name)!, topo.settings)]),
  );
  const endpoints = leaderEndpoints(topology, placed);
  const tunnels = topology.locations.map((loc): Tunnel => {
    const what = new Map<string, string>();
    const list = locationRanges(
      loc.members.map((n) => placed.get(n)!),
      endpoints,
      what,
    );
    const ranges = new Map(list.map((r) => [r, `${what.get(r)!} (location ${loc.name}, led by ${loc.leader})`]));
    return { target: placed.get(loc.leader)!, ranges, location: loc.name, carries: loc.members };
  });
  return { tunnels, locations: topology.locations };
}

/** The tunnel that carries the extra ranges: the one carrying `via`, else the one carrying the oldest member. */
function viaTunnel(i: ExternalPlanInput, tunnels: readonly Tunnel[]): Tunnel | ExternalPlanProblem {
  const members = i.membership.members;
  const name = i.via ?? [...members].sort(compareSeniority)[0]!.name;
  const t = tunnels.find((x) => x.carries.includes(name));
  if (t) return t;
  return {
    problem: 'no-such-via',
    message: `--via ${name}: no such Node in the mesh (nodes: ${members.map((x) => x.name).join(', ')})`,
  };
}

/** The WireGuard peer and the routes of one tunnel. */
function tunnelPeer(
  t: Tunnel,
  o: { i: ExternalPlanInput; peer: AdmittedPeer; extra: readonly string[]; warnings: string[] },
): { peer: DesiredPeer; routes: DesiredRoute[] } {
  const what = new Map(t.ranges);
  for (const c of o.extra) if (!what.has(c)) what.set(c, `extra range ${c}`);
  const own = [...t.ranges.keys()].sort(compareCidrText);
  const wanted = [...own, ...o.extra.filter((c) => !t.ranges.has(c))];
  const allowedIPs = letThrough(
    wanted,
    o.i.guard ?? [],
    (r) => `${what.get(r)!} (through ${t.target.name})`,
    o.warnings,
  );
  const peer: DesiredPeer = withChoice(
    {
      kind: 'node',
      name: t.target.name,
      publicKey: t.target.publicKey,
      endpoint: t.target.endpoint,
      ...(t.target.candidates ? { candidates: t.target.candidates } : {}),
      allowedIPs,
      persistentKeepalive: o.i.keepalive ?? o.peer.persistentKeepalive,
      ...(o.peer.presharedKey ? { presharedKey: o.peer.presharedKey } : {}),
      ...(t.location ? { location: t.location } : {}),
    },
    o.i.choice,
  );
  const routes = allowedIPs.map((dst) => ({ dst, dev: o.i.iface, via: t.target.name, what: `${what.get(dst)!}` }));
  return { peer, routes };
}

/** The plan of external Peer `name`, or why there is none. */
export function planExternalPeer(i: ExternalPlanInput): ExternalPlan | ExternalPlanProblem {
  const { membership, name } = i;
  const skipped = membership.skipped.find((s) => s.kind === 'peer' && s.name === name && s.whole);
  if (skipped) return { problem: 'skipped', message: `Peer ${name} is skipped by every node: ${skipped.message}` };
  const peer = membership.externalPeers.find((p) => p.name === name);
  if (!peer) return { problem: 'missing', message: `Peer ${name} does not exist` };
  const members = membership.members.filter((m) => m.publicKey !== peer.publicKey);
  if (members.length === 0) return { problem: 'no-nodes', message: 'no Node is in the mesh yet' };
  const located = i.topology?.settings.granularity === 'location' ? leaderTunnels(i, i.topology) : undefined;
  const tunnels = located?.tunnels ?? memberTunnels(members);
  const via = viaTunnel(i, tunnels);
  if ('problem' in via) return via;
  const warnings: string[] = [];
  const peers: DesiredPeer[] = [];
  const routes: DesiredRoute[] = [];
  for (const t of [...tunnels].sort((a, b) => byName(a.target, b.target))) {
    const extra = t === via ? (i.extra ?? []).filter((c) => !peer.allowedIPs.includes(c)) : [];
    const out = tunnelPeer(t, { i, peer, extra, warnings });
    peers.push(out.peer);
    routes.push(...out.routes);
  }
  return { peer, peers, routes, via: via.target.name, warnings, locations: located?.locations };
}
