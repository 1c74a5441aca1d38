/**
 * Desired state: what one node should have applied — its WireGuard interface, one peer per
 * member and admitted external peer, routes to their ranges, and the annotations it publishes —
 * derived purely from the membership verdicts and the settings.
 */
import {
  ANNOTATION_ENDPOINT,
  ANNOTATION_OVERLAY_ADDRESS,
  ANNOTATION_OVERLAY_ADDRESS6,
  ANNOTATION_PUBLIC_KEY,
  KILO_PERSISTENT_KEEPALIVE,
} from '../annotations.js';
import { selfEndpoint } from '../membership/endpoints.js';
import type { AdmittedPeer } from '../membership/external-peers.js';
import { decideMembership, type Member, type Membership } from '../membership/membership.js';
import { decideTopology, gatewayFor, place, planTopology, type TopologySettings } from './topology.js';
import type {
  DesiredPeer,
  DesiredRoute,
  DesiredState,
  ExternalPeer,
  ListDelta,
  MeshNode,
  MeshSettings,
  SelfIdentity,
  TopologyState,
} from '../types.js';
import {
  type Cidr,
  cidrsOverlap,
  compareCidrText,
  formatCidr,
  hostCidr,
  normalizeCidr,
  parseCidr,
  parseIp,
} from '../../net/ip.js';

export type { MeshSettings, SelfIdentity } from '../types.js';

/** Thrown when this node cannot have a desired state yet (its Node is missing or got no address). */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotReadyError';
  }
}

/** One peer with its routes (and any warning about this node's own pods), cached per member or external peer object. */
interface PeerEntry {
  context: string;
  peer: DesiredPeer;
  routes: DesiredRoute[];
  warnings: string[];
}

// Unchanged members and external peers keep their objects, so their WireGuard peers and routes
// are reused as they are: desired state for one changed Node costs one new entry, not the mesh.
const entries = new WeakMap<object, PeerEntry>();

/** A member's overlay addresses as host routes (IPv4, and IPv6 with a dual-stack overlay). */
export function overlayHosts(m: { overlayAddress: string; overlayAddress6?: string | undefined }): string[] {
  return [hostCidr(parseIp(m.overlayAddress)!), ...(m.overlayAddress6 ? [hostCidr(parseIp(m.overlayAddress6)!)] : [])];
}

/** The peer and routes of a member (its PodCIDRs that overlap this node's own are held back, with a warning). */
function memberEntry(m: Member, own: readonly Cidr[], context: string, settings: MeshSettings): PeerEntry {
  const cached = entries.get(m);
  if (cached?.context === context) return cached;
  const warnings: string[] = [];
  // Local safety, not a verdict: this node's own pods are never sent into the tunnel.
  const podCIDRs = m.podCIDRs.filter((t) => {
    const clash = own.find((o) => cidrsOverlap(o, parseCidr(t)!));
    if (clash)
      warnings.push(
        `PodCIDR ${t} of Node ${m.name} overlaps this node's own PodCIDR ${formatCidr(clash)}: not routed from this node`,
      );
    return !clash;
  });
  const entry: PeerEntry = {
    context,
    peer: {
      kind: 'node',
      name: m.name,
      publicKey: m.publicKey,
      endpoint: m.endpoint,
      ...(m.candidates ? { candidates: m.candidates } : {}),
      allowedIPs: [...overlayHosts(m), ...podCIDRs].sort(compareCidrText),
      persistentKeepalive: settings.persistentKeepalive,
    },
    routes: podCIDRs.map((dst) => ({ dst, dev: settings.interfaceName, via: m.name })),
    warnings,
  };
  entries.set(m, entry);
  return entry;
}

/** Endpoints chosen by failover instead of a Node's best candidate. */
export interface EndpointChoice {
  /** Node name → the candidate in use (only Nodes not on their best one). */
  chosen: ReadonlyMap<string, string>;
  /** Names whose choice changed since the previous desired state. */
  changed: ReadonlySet<string>;
}

// A peer with another endpoint, kept per peer object and endpoint, so it too is reused unchanged.
const rerouted = new WeakMap<DesiredPeer, { endpoint: string; peer: DesiredPeer }>();

/** The peer with the endpoint failover chose for it (the same object when it has none). */
function withChoice(peer: DesiredPeer, choice: EndpointChoice | undefined): DesiredPeer {
  const endpoint = choice?.chosen.get(peer.name);
  if (endpoint === undefined || endpoint === peer.endpoint || peer.kind !== 'node') return peer;
  const cached = rerouted.get(peer);
  if (cached?.endpoint === endpoint) return cached.peer;
  const out = { ...peer, endpoint };
  rerouted.set(peer, { endpoint, peer: out });
  return out;
}

/** The peer and routes of an admitted external peer. */
function externalEntry(p: AdmittedPeer, context: string, settings: MeshSettings): PeerEntry {
  const cached = entries.get(p);
  if (cached?.context === context) return cached;
  const entry: PeerEntry = {
    context,
    peer: {
      kind: 'peer',
      name: p.name,
      publicKey: p.publicKey,
      endpoint: p.endpoint,
      allowedIPs: [...p.allowedIPs],
      persistentKeepalive: p.persistentKeepalive,
      ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}),
    },
    routes: p.allowedIPs.map((dst) => ({ dst, dev: settings.interfaceName, via: p.name, kind: 'peer' as const })),
    warnings: [],
  };
  entries.set(p, entry);
  return entry;
}

/** The peers, routes and warnings of a desired state. */
interface PeerSet {
  peers: DesiredPeer[];
  routes: DesiredRoute[];
  /** Warnings about members with this node's key. */
  clones: string[];
  /** Warnings of the peer entries (PodCIDRs held back). */
  warnings: string[];
  peersDelta?: ListDelta<DesiredPeer>;
  routesDelta?: ListDelta<DesiredRoute>;
}

/** The entry context: what, besides the member itself, a peer entry depends on. */
function entryContext(selfNode: MeshNode, settings: MeshSettings): { own: Cidr[]; context: string } {
  const own = selfNode.podCIDRs.map((t) => parseCidr(t)).filter((c): c is Cidr => !!c);
  return { own, context: `${settings.interfaceName}|${settings.persistentKeepalive}|${own.map(formatCidr).join(',')}` };
}

/**
 * The WireGuard peers (by name, Nodes before Peers of the same name) and routes (peer by peer) for
 * the members and admitted external peers of a membership.
 */
function peersAndRoutes(
  self: SelfIdentity,
  membership: Membership,
  own: readonly Cidr[],
  context: string,
  settings: MeshSettings,
  choice?: EndpointChoice,
): PeerSet {
  const peers: DesiredPeer[] = [];
  const routes: DesiredRoute[] = [];
  const clones: string[] = [];
  const warnings: string[] = [];
  const take = (e: PeerEntry): void => {
    peers.push(withChoice(e.peer, choice));
    for (const r of e.routes) routes.push(r);
    if (e.warnings.length > 0) warnings.push(...e.warnings);
  };
  // A Node or Peer with this node's own key cannot be a peer of it. Both lists are sorted by
  // name; merged in one pass, a Node before a Peer of the same name.
  const external = membership.externalPeers.filter((p) => p.publicKey !== self.publicKey);
  let j = 0;
  for (const m of membership.members) {
    if (m.publicKey === self.publicKey) {
      clones.push(`Node ${m.name} publishes this node's public key (a cloned machine?): rotate one of the keys`);
      continue;
    }
    while (j < external.length && external[j]!.name < m.name) take(externalEntry(external[j++]!, context, settings));
    take(memberEntry(m, own, context, settings));
  }
  while (j < external.length) take(externalEntry(external[j++]!, context, settings));
  return { peers, routes, clones, warnings };
}

/** What a desired state was built from, for deriving the next one from it. */
interface Basis {
  engine: object;
  version: number;
  context: string;
  selfKey: string;
  /** False when it has clone or entry warnings (then the next one is built in full). */
  clean: boolean;
}

const bases = new WeakMap<DesiredState, Basis>();

/**
 * First index in `items` (sorted by name, a Node before a Peer of the same name) whose name is not
 * smaller than `name`: where the Node `name` is, or would be.
 */
function lowerBound<T>(items: readonly T[], name: string, nameOf: (item: T) => string): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (nameOf(items[mid]!) < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const peerName = (p: DesiredPeer): string => p.name;
const routeVia = (r: DesiredRoute): string => r.via;
const memberName = (m: Member): string => m.name;

/** Binary search of a member by name. */
function findMember(members: readonly Member[], name: string): Member | undefined {
  const i = lowerBound(members, name, memberName);
  return members[i]?.name === name ? members[i] : undefined;
}

/**
 * The peer set of `previous` with only the changed Nodes' entries replaced (each found by binary
 * search): one event costs what it changed. Undefined when it must be built in full (a Node with
 * this node's key, a warning, external peers that changed).
 */
function patchPeerSet(
  self: SelfIdentity,
  membership: Membership,
  own: readonly Cidr[],
  context: string,
  settings: MeshSettings,
  previous: DesiredState,
  names: ReadonlySet<string>,
  choice?: EndpointChoice,
): PeerSet | undefined {
  if (names.size === 0) {
    return {
      peers: previous.peers,
      routes: previous.routes,
      clones: [],
      warnings: [],
      peersDelta: { from: previous.peers, removed: [], added: [] },
      routesDelta: { from: previous.routes, removed: [], added: [] },
    };
  }
  const peers = previous.peers.slice();
  const routes = previous.routes.slice();
  const delta = {
    peersRemoved: [] as DesiredPeer[],
    peersAdded: [] as DesiredPeer[],
    routesRemoved: [] as DesiredRoute[],
    routesAdded: [] as DesiredRoute[],
  };
  for (const name of names) {
    const i = lowerBound(peers, name, peerName);
    if (peers[i]?.name === name && peers[i]!.kind === 'node') delta.peersRemoved.push(...peers.splice(i, 1));
    const r = lowerBound(routes, name, routeVia);
    let n = 0;
    while (routes[r + n]?.via === name && routes[r + n]!.kind !== 'peer') n += 1;
    if (n > 0) delta.routesRemoved.push(...routes.splice(r, n));
    const m = findMember(membership.members, name);
    if (!m) continue;
    if (m.publicKey === self.publicKey) return undefined;
    const e = memberEntry(m, own, context, settings);
    if (e.warnings.length > 0) return undefined;
    const peer = withChoice(e.peer, choice);
    peers.splice(i, 0, peer);
    routes.splice(r, 0, ...e.routes);
    delta.peersAdded.push(peer);
    delta.routesAdded.push(...e.routes);
  }
  return {
    peers,
    routes,
    clones: [],
    warnings: [],
    peersDelta: { from: previous.peers, removed: delta.peersRemoved, added: delta.peersAdded },
    routesDelta: { from: previous.routes, removed: delta.routesRemoved, added: delta.routesAdded },
  };
}

/** The peer set: derived from `previous` when the membership follows the one it was built from, else in full. */
function peerSet(
  self: SelfIdentity,
  membership: Membership,
  selfNode: MeshNode,
  settings: MeshSettings,
  previous: DesiredState | undefined,
  choice?: EndpointChoice,
): { set: PeerSet; basis: Basis | undefined } {
  const { own, context } = entryContext(selfNode, settings);
  const ch = membership.changes;
  const before = previous ? bases.get(previous) : undefined;
  const follows =
    !!ch &&
    !!before &&
    before.clean &&
    !ch.peers &&
    before.engine === ch.engine &&
    before.version === ch.version - 1 &&
    before.context === context &&
    before.selfKey === self.publicKey;
  const names = choice && choice.changed.size > 0 ? new Set([...(ch?.nodes ?? []), ...choice.changed]) : ch?.nodes;
  const set =
    (follows ? patchPeerSet(self, membership, own, context, settings, previous!, names!, choice) : undefined) ??
    peersAndRoutes(self, membership, own, context, settings, choice);
  const basis = ch
    ? {
        engine: ch.engine,
        version: ch.version,
        context,
        selfKey: self.publicKey,
        clean: set.clones.length === 0 && set.warnings.length === 0,
      }
    : undefined;
  return { set, basis };
}

/**
 * The settings with this node's own keepalive: Kilo's `persistent-keepalive` annotation on its
 * Node (seconds, 0-65535), when present, takes the place of `[wireguard] persistent_keepalive`.
 */
function withOwnKeepalive(selfNode: MeshNode, settings: MeshSettings): MeshSettings {
  const text = selfNode.annotations[KILO_PERSISTENT_KEEPALIVE];
  if (text === undefined || !/^\d{1,5}$/.test(text) || Number(text) > 65535) return settings;
  return Number(text) === settings.persistentKeepalive ? settings : { ...settings, persistentKeepalive: Number(text) };
}

/** What location or cross granularity needs beyond the membership. */
export interface TopologyInput {
  settings: TopologySettings;
  /** Every Node by name (locations, Kilo's annotations, InternalIPs). */
  nodes: ReadonlyMap<string, MeshNode>;
  /** Live holders of the locations' leader Leases, by location id. */
  holders: ReadonlyMap<string, string>;
  /** Holders whose Lease ran out, by location id (they do not lead by rank meanwhile). */
  lapsed?: ReadonlyMap<string, string>;
}

/** Peers (by name, a Node before a Peer of the same name). */
const byPeerOrder = (a: DesiredPeer, b: DesiredPeer): number =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : a.kind === b.kind ? 0 : a.kind === 'node' ? -1 : 1;

/**
 * The peer set for location or cross granularity: the topology's tunnels and private-network
 * routes, and the external peers (on a leader; a member routes them through its leader).
 */
function topologyPeerSet(
  self: SelfIdentity,
  selfNode: MeshNode,
  selfAddress: string,
  ownEndpoint: string | undefined,
  membership: Membership,
  settings: MeshSettings,
  topo: TopologyInput,
): { set: PeerSet; state: TopologyState } {
  const warnings: string[] = [];
  const policy = membership.policy!;
  const placed = membership.members
    .filter((m) => topo.nodes.has(m.name))
    .map((m) => place(m, topo.nodes.get(m.name)!, topo.settings, policy, warnings));
  const podCIDRs = selfNode.podCIDRs.map((t) => normalizeCidr(t)).filter((t): t is string => !!t);
  const selfAddress6 = membership.addresses6?.get(self.name);
  const me = place(
    {
      name: self.name,
      createdAt: selfNode.createdAt,
      publicKey: self.publicKey,
      overlayAddress: selfAddress,
      ...(selfAddress6 ? { overlayAddress6: selfAddress6 } : {}),
      endpoint: ownEndpoint ?? '',
      podCIDRs,
    },
    selfNode,
    topo.settings,
    policy,
    warnings,
  );
  const all = [...placed, me];
  const granularity = topo.settings.granularity === 'cross' ? 'cross' : 'location';
  const topology = decideTopology(all, granularity, topo.holders, warnings, topo.lapsed);
  const plan = planTopology(me, all, topology, topo.settings, settings.interfaceName, settings.persistentKeepalive);
  const mine = topology.locations.find((l) => l.location.id === me.location.id)!;
  const leads = granularity === 'cross' || mine.leader === self.name;
  const leader = all.find((p) => p.name === mine.leader);
  const { context } = entryContext(selfNode, settings);
  const peers = [...plan.peers];
  const routes = [...plan.routes];
  for (const p of membership.externalPeers) {
    if (p.publicKey === self.publicKey) continue;
    const e = externalEntry(p, context, settings);
    if (leads) {
      peers.push(e.peer);
      routes.push(...e.routes);
    } else if (leader) {
      for (const dst of p.allowedIPs) {
        const gateway = gatewayFor(dst, leader);
        if (gateway)
          routes.push({
            dst,
            gateway,
            via: p.name,
            kind: 'peer',
            what: `allowed IPs ${dst} of Peer ${p.name} (on leader ${leader.name})`,
          });
      }
    }
  }
  const state: TopologyState = {
    granularity,
    location: me.location.name,
    locationId: me.location.id,
    leader: mine.leader,
    why: mine.why,
    leads,
    locations: topology.locations.map((l) => ({
      id: l.location.id,
      name: l.location.name,
      members: l.members,
      leader: l.leader,
      why: l.why,
      candidates: l.candidates,
    })),
  };
  return {
    set: { peers: peers.sort(byPeerOrder), routes, clones: [], warnings: [...warnings, ...plan.warnings] },
    state,
  };
}

/**
 * The desired state of node `self` from a membership decided with `self` as the viewing node;
 * throws NotReadyError when its Node is missing or got no overlay address. Given the `previous`
 * desired state, built from the engine's membership just before this one, the peers and routes
 * are derived from it (with `peersDelta` and `routesDelta` saying what changed).
 */
export function desiredFor(
  self: SelfIdentity,
  selfNode: MeshNode | undefined,
  membership: Membership,
  configured: MeshSettings,
  previous?: DesiredState,
  topo?: TopologyInput,
  choice?: EndpointChoice,
): DesiredState {
  if (!selfNode) throw new NotReadyError(`Node ${self.name} does not exist in the cluster yet`);
  const settings = withOwnKeepalive(selfNode, configured);
  const selfAddress = membership.addresses.get(self.name);
  if (!selfAddress) {
    const why = membership.skipped.find((p) => p.name === self.name && p.whole)?.message ?? 'no overlay address';
    throw new NotReadyError(`Node ${self.name} has no overlay address: ${why}`);
  }
  const own = selfEndpoint(selfNode, settings.endpoint, settings.listenPort, settings.resolved);
  const located =
    topo && topo.settings.granularity !== 'full'
      ? topologyPeerSet(self, selfNode, selfAddress, own.endpoint, membership, settings, topo)
      : undefined;
  if (located && choice) located.set.peers = located.set.peers.map((p) => withChoice(p, choice));
  const { set, basis } = located
    ? { set: located.set, basis: undefined }
    : peerSet(self, membership, selfNode, settings, previous, choice);
  const warnings = [...set.clones];
  for (const p of membership.externalPeers) {
    if (p.publicKey === self.publicKey)
      warnings.push(`Peer ${p.name} uses this node's public key: fix the Peer resource`);
  }
  const selfAddress6 = membership.addresses6?.get(self.name);
  const publish: Record<string, string> = {
    [ANNOTATION_PUBLIC_KEY]: self.publicKey,
    [ANNOTATION_OVERLAY_ADDRESS]: selfAddress,
    ...(selfAddress6 ? { [ANNOTATION_OVERLAY_ADDRESS6]: selfAddress6 } : {}),
  };
  if (own.endpoint) publish[ANNOTATION_ENDPOINT] = own.endpoint;
  if (own.warning) warnings.push(own.warning);
  for (const w of set.warnings) warnings.push(w);
  const desired: DesiredState = {
    iface: {
      name: settings.interfaceName,
      address: `${selfAddress}/${membership.overlay.prefix}`,
      ...(selfAddress6 && membership.overlay6 ? { address6: `${selfAddress6}/${membership.overlay6.prefix}` } : {}),
      listenPort: settings.listenPort,
      mtu: settings.mtu,
      publicKey: self.publicKey,
    },
    peers: set.peers,
    routes: set.routes,
    skipped: membership.skipped,
    addresses: membership.addresses,
    publish,
    warnings,
    ...(set.peersDelta ? { peersDelta: set.peersDelta, routesDelta: set.routesDelta } : {}),
    ...(located ? { topology: located.state } : {}),
  };
  if (basis) bases.set(desired, basis);
  return desired;
}

/**
 * Computes what node `self` should have applied from all Nodes and external peers; throws
 * NotReadyError when it cannot yet.
 */
export function computeDesired(
  self: SelfIdentity,
  nodes: readonly MeshNode[],
  settings: MeshSettings,
  externalPeers: readonly ExternalPeer[] = [],
): DesiredState {
  const membership = decideMembership(nodes, externalPeers, settings, self);
  return desiredFor(
    self,
    nodes.find((n) => n.name === self.name),
    membership,
    settings,
  );
}
