/**
 * The WireGuard peers and routes of a full mesh: one peer per member and admitted external peer,
 * each built once per member object and reused while it is unchanged, so the peer set of the next
 * membership is derived from the previous one by replacing only the entries of the Nodes that
 * changed (one event costs what it changed).
 */
import type { AdmittedPeer } from '../membership/external-peers.js';
import { overlayHosts, type Member, type Membership } from '../membership/membership.js';
import { lowerBound } from '../membership/order.js';
import type {
  DesiredPeer,
  DesiredRoute,
  DesiredState,
  ListDelta,
  MeshNode,
  MeshSettings,
  SelfIdentity,
} from '../types.js';
import { compareCidrText } from '../../net/ip.js';
import { guardKey, letThrough, localGuard, type GuardRange } from './guard.js';

/** One peer with its routes (and any warning about this node's own pods), cached per member or external peer object. */
interface PeerEntry {
  key: string;
  peer: DesiredPeer;
  routes: DesiredRoute[];
  warnings: string[];
}

// Unchanged members and external peers keep their objects, so their WireGuard peers and routes
// are reused as they are: desired state for one changed Node costs one new entry, not the mesh.
const entries = new WeakMap<object, PeerEntry>();

/** Endpoints chosen by failover instead of a Node's best candidate. */
export interface EndpointChoice {
  /** Node name → the candidate in use (only Nodes not on their best one). */
  chosen: ReadonlyMap<string, string>;
  /** Names whose choice changed since the previous desired state. */
  changed: ReadonlySet<string>;
}

/** What every peer entry of one desired state is built with. */
export interface EntryContext {
  self: SelfIdentity;
  settings: MeshSettings;
  /** What this node never routes into the tunnel (its own PodCIDRs, the API server, its on-link subnets). */
  guard: readonly GuardRange[];
  /** What an entry depends on besides its member, as text: an entry cached with another key is rebuilt. */
  key: string;
  choice?: EndpointChoice | undefined;
}

/** The entry context of this node with these settings. */
export function entryContext(
  self: SelfIdentity,
  selfNode: MeshNode,
  settings: MeshSettings,
  choice?: EndpointChoice,
): EntryContext {
  const guard = localGuard(selfNode, settings);
  const key = `${settings.interfaceName}|${settings.persistentKeepalive}|${guardKey(guard)}`;
  return { self, settings, guard, key, choice };
}

/** The peer of a Node (`location`: the location it leads or stands for, with location granularity). */
export function nodePeer(
  m: Pick<Member, 'name' | 'publicKey' | 'endpoint' | 'candidates'>,
  allowedIPs: string[],
  keepalive: number,
  location?: string,
): DesiredPeer {
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

/** The entry of `of` while its key holds (same settings, guard and choice); else a new one from `make`, which adds its warnings. */
function cachedEntry(
  of: object,
  key: string,
  make: (warnings: string[]) => Pick<PeerEntry, 'peer' | 'routes'>,
): PeerEntry {
  const cached = entries.get(of);
  if (cached?.key === key) return cached;
  const warnings: string[] = [];
  const entry: PeerEntry = { key, ...make(warnings), warnings };
  entries.set(of, entry);
  return entry;
}

/** The peer and routes of a member (its PodCIDRs that overlap this node's own are held back, with a warning). */
function memberEntry(m: Member, ctx: EntryContext): PeerEntry {
  return cachedEntry(m, ctx.key, (warnings) => {
    // Local safety, not a verdict: this node's own pods and underlay are never sent into the tunnel.
    const podCIDRs = letThrough(m.podCIDRs, ctx.guard, (r) => `PodCIDR ${r} of Node ${m.name}`, warnings);
    return {
      peer: nodePeer(m, [...overlayHosts(m), ...podCIDRs].sort(compareCidrText), ctx.settings.persistentKeepalive),
      routes: podCIDRs.map((dst) => ({ dst, dev: ctx.settings.interfaceName, via: m.name })),
    };
  });
}

// A peer with another endpoint, kept per peer object and endpoint, so it too is reused unchanged.
const rerouted = new WeakMap<DesiredPeer, { endpoint: string; peer: DesiredPeer }>();

/** The peer with the endpoint failover chose for it (the same object when it has none). */
export function withChoice(peer: DesiredPeer, choice: EndpointChoice | undefined): DesiredPeer {
  const endpoint = choice?.chosen.get(peer.name);
  if (endpoint === undefined || endpoint === peer.endpoint || peer.kind !== 'node') return peer;
  const cached = rerouted.get(peer);
  if (cached?.endpoint === endpoint) return cached.peer;
  const out = { ...peer, endpoint };
  rerouted.set(peer, { endpoint, peer: out });
  return out;
}

/** The peer and routes of an admitted external peer. */
export function externalEntry(p: AdmittedPeer, ctx: Pick<EntryContext, 'key' | 'settings' | 'guard'>): PeerEntry {
  return cachedEntry(p, ctx.key, (warnings) => {
    const allowedIPs = letThrough(p.allowedIPs, ctx.guard, (r) => `allowedIPs ${r} of Peer ${p.name}`, warnings);
    return {
      peer: {
        kind: 'peer',
        name: p.name,
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        allowedIPs,
        persistentKeepalive: p.persistentKeepalive,
        ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}),
      },
      routes: allowedIPs.map((dst) => ({ dst, dev: ctx.settings.interfaceName, via: p.name, kind: 'peer' as const })),
    };
  });
}

/** The peers, routes and warnings of a desired state. */
export interface PeerSet {
  peers: DesiredPeer[];
  routes: DesiredRoute[];
  /** Warnings about members with this node's key. */
  clones: string[];
  /** Warnings of the peer entries (PodCIDRs held back). */
  warnings: string[];
  peersDelta?: ListDelta<DesiredPeer>;
  routesDelta?: ListDelta<DesiredRoute>;
}

/**
 * The WireGuard peers (by name, Nodes before Peers of the same name) and routes (peer by peer) for
 * the members and admitted external peers of a membership.
 */
function peersAndRoutes(membership: Membership, ctx: EntryContext): PeerSet {
  const set: PeerSet = { peers: [], routes: [], clones: [], warnings: [] };
  const take = (e: PeerEntry): void => {
    set.peers.push(withChoice(e.peer, ctx.choice));
    for (const r of e.routes) set.routes.push(r);
    if (e.warnings.length > 0) set.warnings.push(...e.warnings);
  };
  // A Node or Peer with this node's own key cannot be a peer of it. Both lists are sorted by
  // name; merged in one pass, a Node before a Peer of the same name.
  const external = membership.externalPeers.filter((p) => p.publicKey !== ctx.self.publicKey);
  let j = 0;
  for (const m of membership.members) {
    if (m.publicKey === ctx.self.publicKey) {
      set.clones.push(`Node ${m.name} publishes this node's public key (a cloned machine?): rotate one of the keys`);
      continue;
    }
    while (j < external.length && external[j]!.name < m.name) take(externalEntry(external[j++]!, ctx));
    take(memberEntry(m, ctx));
  }
  while (j < external.length) take(externalEntry(external[j++]!, ctx));
  return set;
}

/** What a desired state was built from, for deriving the next one from it. */
interface Basis {
  engine: object;
  version: number;
  key: string;
  selfKey: string;
  /** False when it has clone or entry warnings (then the next one is built in full). */
  clean: boolean;
}

const bases = new WeakMap<DesiredState, Basis>();

/** Binary search of a member by name. */
function findMember(members: readonly Member[], name: string): Member | undefined {
  const i = lowerBound(members, (m) => m.name < name);
  return members[i]?.name === name ? members[i] : undefined;
}

/** The lists of a peer set derived from `previous` with nothing changed. */
function unchanged(previous: DesiredState): PeerSet {
  return {
    peers: previous.peers,
    routes: previous.routes,
    clones: [],
    warnings: [],
    peersDelta: { from: previous.peers, removed: [], added: [] },
    routesDelta: { from: previous.routes, removed: [], added: [] },
  };
}

/**
 * The peer set of `previous` with only the changed Nodes' entries replaced (each found by binary
 * search): one event costs what it changed. Undefined when it must be built in full (a Node with
 * this node's key, a warning, external peers that changed).
 */
function patchPeerSet(
  membership: Membership,
  ctx: EntryContext,
  previous: DesiredState,
  names: ReadonlySet<string>,
): PeerSet | undefined {
  if (names.size === 0) return unchanged(previous);
  const peers = previous.peers.slice();
  const routes = previous.routes.slice();
  const removed = { peers: [] as DesiredPeer[], routes: [] as DesiredRoute[] };
  const added = { peers: [] as DesiredPeer[], routes: [] as DesiredRoute[] };
  for (const name of names) {
    const i = lowerBound(peers, (p) => p.name < name);
    if (peers[i]?.name === name && peers[i]!.kind === 'node') removed.peers.push(...peers.splice(i, 1));
    const r = lowerBound(routes, (x) => x.via < name);
    let n = 0;
    while (routes[r + n]?.via === name && routes[r + n]!.kind !== 'peer') n += 1;
    if (n > 0) removed.routes.push(...routes.splice(r, n));
    const m = findMember(membership.members, name);
    if (!m) continue;
    if (m.publicKey === ctx.self.publicKey) return undefined;
    const e = memberEntry(m, ctx);
    if (e.warnings.length > 0) return undefined;
    const peer = withChoice(e.peer, ctx.choice);
    peers.splice(i, 0, peer);
    routes.splice(r, 0, ...e.routes);
    added.peers.push(peer);
    added.routes.push(...e.routes);
  }
  return {
    peers,
    routes,
    clones: [],
    warnings: [],
    peersDelta: { from: previous.peers, removed: removed.peers, added: added.peers },
    routesDelta: { from: previous.routes, removed: removed.routes, added: added.routes },
  };
}

/** The full-mesh peer set: derived from `previous` when the membership follows the one it was built from, else in full. */
export function fullMeshPeerSet(
  membership: Membership,
  ctx: EntryContext,
  previous: DesiredState | undefined,
): PeerSet {
  const ch = membership.changes;
  const before = previous ? bases.get(previous) : undefined;
  const follows =
    !!ch &&
    !!before &&
    before.clean &&
    !ch.peers &&
    before.engine === ch.engine &&
    before.version === ch.version - 1 &&
    before.key === ctx.key &&
    before.selfKey === ctx.self.publicKey;
  const choice = ctx.choice;
  const names = choice && choice.changed.size > 0 ? new Set([...(ch?.nodes ?? []), ...choice.changed]) : ch?.nodes;
  const set =
    (follows ? patchPeerSet(membership, ctx, previous!, names!) : undefined) ?? peersAndRoutes(membership, ctx);
  if (ch) {
    const clean = set.clones.length === 0 && set.warnings.length === 0;
    pendingBasis.set(set, { engine: ch.engine, version: ch.version, key: ctx.key, selfKey: ctx.self.publicKey, clean });
  }
  return set;
}

// The basis of a peer set until the desired state built from it is known.
const pendingBasis = new WeakMap<PeerSet, Basis>();

/** Remembers that `desired` was built from `set` (so the next desired state can be derived from it). */
export function recordBasis(desired: DesiredState, set: PeerSet): void {
  const basis = pendingBasis.get(set);
  if (basis) bases.set(desired, basis);
}
