/**
 * The peers and routes of `location` and `cross` granularity for one node: every member placed in
 * its location, the locations and leaders decided, the topology's tunnels and private-network
 * routes planned, and the external peers added (on a leader; a member routes them through it).
 */
import type { Membership } from '../membership/membership.js';
import { byName } from '../membership/order.js';
import type { Liveness } from '../observations/leadership.js';
import type { DesiredPeer, DesiredRoute, MeshNode, TopologyState } from '../types.js';
import type { EntryContext, PeerSet } from './peer-set.js';
import { externalEntry, withChoice } from './peer-set.js';
import {
  decideTopology,
  gatewayFor,
  place,
  planTopology,
  type Placed,
  type TopologyPlan,
  type TopologySettings,
} from './topology.js';
import { normalizeCidr } from '../../net/ip.js';
import { guardedBy, letThrough, type GuardRange } from './guard.js';

/** What location or cross granularity needs beyond the membership. */
export interface TopologyInput {
  settings: TopologySettings;
  /** Every Node by name (locations, Kilo's annotations, InternalIPs). */
  nodes: ReadonlyMap<string, MeshNode>;
  /** Who the location Leases show alive (absent: nobody known, leaders by rank alone). */
  liveness?: Liveness | undefined;
}

/** What the located peer set of one node is built from. */
export interface LocatedInput {
  ctx: EntryContext;
  selfNode: MeshNode;
  /** This node's overlay address (it has one, or there is no desired state). */
  selfAddress: string;
  /** The endpoint this node publishes, if any. */
  ownEndpoint: string | undefined;
  membership: Membership;
  topology: TopologyInput;
}

/** The plan's peers and routes without what this node's guard holds back (one warning each). */
function guarded(
  plan: TopologyPlan,
  guard: readonly GuardRange[],
  warnings: string[],
): Pick<PeerSet, 'peers' | 'routes'> {
  if (guard.length === 0) return { peers: [...plan.peers], routes: [...plan.routes] };
  const peers = plan.peers.map((p) => {
    const allowedIPs = letThrough(p.allowedIPs, guard, (r) => `${r} (through ${p.name})`, warnings);
    return allowedIPs.length === p.allowedIPs.length ? p : { ...p, allowedIPs };
  });
  const routes = plan.routes.filter((r) => !guardedBy(r.dst, guard));
  return { peers, routes };
}

/** Peers (by name, a Node before a Peer of the same name). */
function byPeerOrder(a: DesiredPeer, b: DesiredPeer): number {
  return byName(a, b) || (a.kind === b.kind ? 0 : a.kind === 'node' ? -1 : 1);
}

/** This node placed in its location, like the members (its location ranges are routed by the others, not by itself). */
function placeSelf(i: LocatedInput): Placed {
  const { self } = i.ctx;
  const podCIDRs = i.selfNode.podCIDRs.map((t) => normalizeCidr(t)).filter((t): t is string => !!t);
  const selfAddress6 = i.membership.addresses6?.get(self.name);
  const me = {
    name: self.name,
    createdAt: i.selfNode.createdAt,
    publicKey: self.publicKey,
    overlayAddress: i.selfAddress,
    ...(selfAddress6 ? { overlayAddress6: selfAddress6 } : {}),
    endpoint: i.ownEndpoint ?? '',
    podCIDRs,
  };
  return place(me, i.selfNode, i.topology.settings);
}

/** The external peers: a peer each on a leader; on a member, routes to their ranges through its leader. */
function externalPeers(i: LocatedInput, leads: boolean, leader: Placed | undefined, set: PeerSet): void {
  for (const p of i.membership.externalPeers) {
    if (p.publicKey === i.ctx.self.publicKey) continue;
    const e = externalEntry(p, i.ctx);
    if (leads) {
      set.peers.push(e.peer);
      set.routes.push(...e.routes);
      continue;
    }
    if (!leader) continue;
    for (const dst of p.allowedIPs) {
      const gateway = gatewayFor(dst, leader);
      const what = `allowed IPs ${dst} of Peer ${p.name} (on leader ${leader.name})`;
      if (gateway) set.routes.push({ dst, gateway, via: p.name, kind: 'peer', what } satisfies DesiredRoute);
    }
  }
}

/**
 * The peer set for location or cross granularity: the topology's tunnels and private-network
 * routes, and the external peers; with where this node stands.
 */
export function locatedPeerSet(i: LocatedInput): { set: PeerSet; state: TopologyState } {
  const topo = i.topology;
  const placed = i.membership.members
    .filter((m) => topo.nodes.has(m.name))
    .map((m) => place(m, topo.nodes.get(m.name)!, topo.settings));
  const me = placeSelf(i);
  const all = [...placed, me];
  const granularity = topo.settings.granularity === 'cross' ? 'cross' : 'location';
  const topology = decideTopology({ placed: all, granularity, liveness: topo.liveness });
  const { settings } = i.ctx;
  const plan = planTopology({
    self: me,
    placed: all,
    topology,
    settings: topo.settings,
    iface: settings.interfaceName,
    keepalive: settings.persistentKeepalive,
  });
  const mine = topology.locations.find((l) => l.id === me.location.id)!;
  const leads = granularity === 'cross' || mine.leader === i.ctx.self.name;
  const warnings = [...plan.warnings];
  const set: PeerSet = { ...guarded(plan, i.ctx.guard, warnings), clones: [], warnings };
  externalPeers(
    i,
    leads,
    all.find((p) => p.name === mine.leader),
    set,
  );
  set.peers = set.peers.sort(byPeerOrder).map((p) => withChoice(p, i.ctx.choice));
  const state: TopologyState = {
    granularity,
    location: me.location.name,
    locationId: me.location.id,
    leader: mine.leader,
    why: mine.why,
    leads,
    locations: topology.locations,
  };
  return { set, state };
}
