/**
 * Diffs of desired against observed state: which peers to add, update or remove, which routes
 * to add or delete, and whether the interface itself must be recreated. Pure; each change carries
 * the reason that is logged when it is applied. Same input twice → no changes.
 */
import type { DesiredInterface, DesiredPeer, DesiredRoute, ListDelta } from '../types.js';
import type { InterfaceStatus, LinkStatus, PeerStatus, RouteStatus } from '../observations/device.js';
import { compareCidrText, formatIp, hostCidr, normalizeCidr, parseHostPort, parseIp } from '../../net/ip.js';

/** One peer change, with the reason to log. */
export type PeerChange =
  | { op: 'add'; peer: DesiredPeer; reason: string }
  | { op: 'update'; peer: DesiredPeer; setEndpoint: boolean; reason: string }
  | { op: 'remove'; publicKey: string; name: string | undefined; reason: string };

/** One route change, with the reason to log. */
export type RouteChange =
  | { op: 'add'; route: DesiredRoute; reason: string; replaces?: RouteTarget }
  | { op: 'delete'; route: RouteStatus; reason: string }
  | { op: 'conflict'; route: DesiredRoute; other: RouteStatus; reason: string };

/** Normalises and sorts a list of CIDRs for comparison. */
export function canonicalCidrs(list: readonly string[]): string[] {
  return [...new Set(list.map((c) => normalizeCidr(c) ?? c))].sort(compareCidrText);
}

/** True when an endpoint is `ip:port` (not a DNS name that the device shows resolved). */
function isLiteralEndpoint(ep: string): boolean {
  const hp = parseHostPort(ep);
  return !!hp && !!parseIp(hp.host);
}

/** Canonical form of an `ip:port` endpoint (IPv6 compressed), for comparison. */
function canonicalEndpoint(ep: string | undefined): string | undefined {
  if (!ep) return undefined;
  const hp = parseHostPort(ep);
  if (!hp) return ep;
  const ip = parseIp(hp.host);
  if (!ip) return ep;
  return ip.family === 6 ? `[${formatIp(ip)}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** The change that turns `cur` into `peer`, if any (`prev`: what this process applied last for it). */
function diffPeer(peer: DesiredPeer, cur: PeerStatus, prev: DesiredPeer | undefined): PeerChange | undefined {
  const why: string[] = [];
  const wantIps = canonicalCidrs(peer.allowedIPs);
  if (wantIps.join(',') !== canonicalCidrs(cur.allowedIPs).join(','))
    why.push(`allowed IPs ${cur.allowedIPs.join(',') || '(none)'} → ${wantIps.join(',')}`);
  if (peer.persistentKeepalive !== cur.persistentKeepalive)
    why.push(`keepalive ${cur.persistentKeepalive} → ${peer.persistentKeepalive}`);
  // The device only tells whether it holds a key: a new key is known from what was applied.
  if (!!peer.presharedKey !== cur.hasPresharedKey)
    why.push(peer.presharedKey ? 'preshared key added' : 'preshared key removed');
  else if (peer.presharedKey && prev !== undefined && prev.presharedKey !== peer.presharedKey)
    why.push('preshared key changed');
  let setEndpoint = false;
  if (peer.endpoint) {
    const changedSinceApplied = prev !== undefined && prev.endpoint !== peer.endpoint;
    const adoptMismatch =
      prev === undefined &&
      isLiteralEndpoint(peer.endpoint) &&
      canonicalEndpoint(peer.endpoint) !== canonicalEndpoint(cur.endpoint);
    const neverSet = cur.endpoint === undefined;
    if (changedSinceApplied || adoptMismatch || neverSet) {
      setEndpoint = true;
      why.push(`endpoint ${cur.endpoint ?? '(none)'} → ${peer.endpoint}`);
    }
  }
  return why.length > 0 ? { op: 'update', peer, setEndpoint, reason: `${peer.name}: ${why.join('; ')}` } : undefined;
}

const added = (peer: DesiredPeer): PeerChange => ({
  op: 'add',
  peer,
  reason: `new ${peer.kind === 'node' ? 'Node' : 'Peer'} ${peer.name}`,
});

/** Removals of the peers in `present` that `desired` no longer has, each with its reason. */
function removals(
  desired: readonly DesiredPeer[],
  present: Iterable<string>,
  lastApplied: ReadonlyMap<string, DesiredPeer> | undefined,
): PeerChange[] {
  const wanted = new Set(desired.map((p) => p.publicKey));
  const names = new Set(desired.map((d) => `${d.kind}/${d.name}`));
  const out: PeerChange[] = [];
  for (const key of present) {
    if (wanted.has(key)) continue;
    const prev = lastApplied?.get(key);
    const name = prev?.name;
    const rekeyed = prev !== undefined && names.has(`${prev.kind}/${prev.name}`);
    const reason = rekeyed
      ? `${name} published a new public key`
      : name
        ? `${name} is gone or no longer valid`
        : 'not a current Node or Peer';
    out.push({ op: 'remove', publicKey: key, name, reason });
  }
  return out;
}

/**
 * Peer changes that turn `observed` into `desired`. `lastApplied` (peers this process applied
 * before, by public key) decides endpoints: an endpoint is only re-set when the desired value
 * changed, or on adoption when the device disagrees with a literal desired endpoint, so a peer
 * that roamed behind NAT is not pulled back on every resync.
 */
export function diffPeers(
  desired: readonly DesiredPeer[],
  observed: readonly PeerStatus[],
  lastApplied?: ReadonlyMap<string, DesiredPeer>,
): PeerChange[] {
  const changes: PeerChange[] = [];
  const seen = new Map(observed.map((p) => [p.publicKey, p]));
  for (const peer of desired) {
    const cur = seen.get(peer.publicKey);
    const change = cur ? diffPeer(peer, cur, lastApplied?.get(peer.publicKey)) : added(peer);
    if (change) changes.push(change);
  }
  return [...changes, ...removals(desired, seen.keys(), lastApplied)];
}

/** What the device holds for a peer this process applied (the stand-in for `wg show`). */
export function appliedStatus(p: DesiredPeer): PeerStatus {
  return {
    publicKey: p.publicKey,
    hasPresharedKey: Boolean(p.presharedKey),
    endpoint: p.endpoint,
    allowedIPs: p.allowedIPs,
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: p.persistentKeepalive,
  };
}

/**
 * The same changes as `diffPeers` when the device is known to hold exactly `applied`, without
 * building its status: a desired peer that is the very object applied last is skipped at once, so
 * a change costs what it touches, not what the mesh holds. Desired peers equal to what was applied
 * but held in new objects are added to `rebased` (the caller keeps them, for the next identity check).
 */
export function diffKnownPeers(
  desired: readonly DesiredPeer[],
  applied: ReadonlyMap<string, DesiredPeer>,
  rebased: DesiredPeer[] = [],
): PeerChange[] {
  const changes: PeerChange[] = [];
  let matched = 0;
  for (const peer of desired) {
    const prev = applied.get(peer.publicKey);
    if (prev === peer) {
      matched += 1;
      continue;
    }
    if (!prev) {
      changes.push(added(peer));
      continue;
    }
    matched += 1;
    const change = diffPeer(peer, appliedStatus(prev), prev);
    if (change) changes.push(change);
    else rebased.push(peer);
  }
  return matched === applied.size ? changes : [...changes, ...removals(desired, applied.keys(), applied)];
}

/**
 * The same changes as `diffKnownPeers(list, applied)` when `list` differs from a list the device
 * was known to hold (as `applied`) by `delta` only: the work is the size of the delta.
 */
export function diffPeerDelta(
  delta: ListDelta<DesiredPeer>,
  applied: ReadonlyMap<string, DesiredPeer>,
  rebased: DesiredPeer[] = [],
): PeerChange[] {
  const changes: PeerChange[] = [];
  const stay = new Set<string>();
  const names = new Set<string>();
  for (const peer of delta.added) {
    stay.add(peer.publicKey);
    names.add(`${peer.kind}/${peer.name}`);
    const prev = applied.get(peer.publicKey);
    if (prev === peer) continue;
    if (!prev) {
      changes.push(added(peer));
      continue;
    }
    const change = diffPeer(peer, appliedStatus(prev), prev);
    if (change) changes.push(change);
    else rebased.push(peer);
  }
  for (const old of delta.removed) {
    if (stay.has(old.publicKey) || !applied.has(old.publicKey)) continue;
    const prev = applied.get(old.publicKey)!;
    const reason = names.has(`${prev.kind}/${prev.name}`)
      ? `${prev.name} published a new public key`
      : `${prev.name} is gone or no longer valid`;
    changes.push({ op: 'remove', publicKey: old.publicKey, name: prev.name, reason });
  }
  return changes;
}

/** A route destination as a CIDR (`ip` prints host routes without a prefix length). */
function routeDst(dst: string): string {
  const ip = parseIp(dst);
  return ip ? hostCidr(ip) : (normalizeCidr(dst) ?? dst);
}

/** Where a route to a destination goes. */
export interface RouteTarget {
  dst: string;
  dev?: string | undefined;
  gateway?: string | undefined;
}

/** A route's identity: its destination and where it goes (the device, or the next hop). */
export const routeKey = (r: { dst: string; dev?: string | undefined; gateway?: string | undefined }): string =>
  `${r.dst}|${r.gateway ? `via ${r.gateway}` : (r.dev ?? '')}`;
/** Why a route is wanted, for logs: what its destination is, and which way it goes. */
function routeReason(r: DesiredRoute): string {
  if (!r.what) return r.gateway ? `${r.dst} of ${r.via}, over the private network` : `PodCIDR ${r.dst} of ${r.via}`;
  return r.gateway
    ? `${r.what}, over the private network through ${r.gateway}`
    : `${r.what}, through the tunnel to ${r.via}`;
}
const addRoute = (r: DesiredRoute): RouteChange => ({ op: 'add', route: r, reason: routeReason(r) });
const deleteRoute = (r: RouteStatus): RouteChange => ({
  op: 'delete',
  route: r,
  reason: `no current peer owns ${r.dst}`,
});

/**
 * Turns the add and the delete of the daemon's own route to one destination (e.g. a leader change:
 * `dev wg0` ↔ `via` a leader's private address) into one add that `replaces` the old route, which
 * `ip route replace` does at once: no moment without a route, and no clash with the old one.
 */
function pairReplacements(changes: RouteChange[]): RouteChange[] {
  const deletes = new Map<string, number>();
  changes.forEach((c, i) => {
    if (c.op === 'delete') deletes.set(routeDst(c.route.dst), i);
  });
  if (deletes.size === 0) return changes;
  const paired = new Set<number>();
  const out = changes.map((c): RouteChange => {
    const i = c.op === 'add' ? deletes.get(c.route.dst) : undefined;
    if (c.op !== 'add' || i === undefined || paired.has(i)) return c;
    paired.add(i);
    const old = changes[i]!.route;
    return {
      ...c,
      replaces: { dst: old.dst, dev: old.dev, gateway: old.gateway },
      reason: `${c.reason}, in place of ${old.gateway ? `via ${old.gateway}` : `dev ${old.dev ?? '?'}`}`,
    };
  });
  return out.filter((_, i) => !paired.has(i));
}

/** Route changes that make the daemon's own routes (`ownProtocol`) match the desired ones. */
export function diffRoutes(
  desired: readonly DesiredRoute[],
  observed: readonly RouteStatus[],
  ownProtocol: string,
): RouteChange[] {
  const changes: RouteChange[] = [];
  const own = observed
    .filter((r) => r.protocol === ownProtocol)
    .map((r) => ({ key: routeKey({ dst: routeDst(r.dst), dev: r.dev, gateway: r.gateway }), route: r }));
  const ownKey = new Set(own.map((o) => o.key));
  const wanted = new Set(desired.map(routeKey));
  const foreign = new Map<string, RouteStatus>();
  for (const o of observed)
    if (o.protocol !== ownProtocol) foreign.set(routeKey({ dst: routeDst(o.dst), dev: o.dev, gateway: o.gateway }), o);
  const foreignByDst = new Map<string, RouteStatus[]>();
  for (const o of foreign.values())
    foreignByDst.set(routeDst(o.dst), [...(foreignByDst.get(routeDst(o.dst)) ?? []), o]);
  for (const r of desired) {
    if (ownKey.has(routeKey(r))) continue;
    // Someone else's route to the same prefix through another device is never overwritten.
    const other = foreignByDst.get(r.dst)?.find((o) => (r.gateway ? o.gateway !== r.gateway : o.dev !== r.dev));
    if (other) {
      changes.push({
        op: 'conflict',
        route: r,
        other,
        reason: `PodCIDR ${r.dst} of ${r.via} is already routed via ${other.dev ?? '?'} (proto ${other.protocol}) by someone else; left alone`,
      });
      continue;
    }
    changes.push(addRoute(r));
  }
  for (const o of own) if (!wanted.has(o.key)) changes.push(deleteRoute(o.route));
  return changes;
}

/** What the daemon's own routes are known to be: by `dst|dev`, and the route objects themselves. */
export interface KnownRoutes {
  byKey: ReadonlyMap<string, DesiredRoute>;
  objects: ReadonlySet<DesiredRoute>;
}

/** What diffing against known routes takes besides the desired routes. */
export interface KnownRouteContext {
  /** The daemon's own routes, known to be exactly these. */
  owned: KnownRoutes;
  /** Desired routes (by `dst|dev`) that other owners hold: left alone. */
  skip: ReadonlySet<string>;
  /** The protocol the daemon's routes carry. */
  ownProtocol: string;
  /** Where owned routes held in new objects go. */
  rebased: DesiredRoute[];
}

/**
 * Route changes when the daemon's own routes are known to be exactly `owned`, skipping the desired
 * routes in `skip` (other owners hold them): a desired route that is an owned object is passed at
 * once, so a change costs what it touches. Owned routes held in new objects go to `rebased`.
 */
export function diffKnownRoutes(desired: readonly DesiredRoute[], ctx: KnownRouteContext): RouteChange[] {
  const { owned, skip, ownProtocol, rebased } = ctx;
  const changes: RouteChange[] = [];
  let matched = 0;
  for (const r of desired) {
    if (owned.objects.has(r)) {
      matched += 1;
      continue;
    }
    const k = routeKey(r);
    if (skip.has(k)) continue;
    if (owned.byKey.has(k)) {
      matched += 1;
      rebased.push(r);
    } else {
      changes.push(addRoute(r));
    }
  }
  if (matched < owned.byKey.size) {
    const wanted = new Set(desired.map(routeKey));
    for (const [k, r] of owned.byKey)
      if (!wanted.has(k))
        changes.push(deleteRoute({ dst: r.dst, dev: r.dev, gateway: r.gateway, protocol: ownProtocol }));
  }
  return pairReplacements(changes);
}

/**
 * The same changes as `diffKnownRoutes(list, ctx)` when `list` differs from a list whose routes
 * were all owned or skipped by `delta` only: the work is the size of the delta.
 */
export function diffRouteDelta(delta: ListDelta<DesiredRoute>, ctx: KnownRouteContext): RouteChange[] {
  const { owned, skip, ownProtocol, rebased } = ctx;
  const changes: RouteChange[] = [];
  const stay = new Set<string>();
  for (const r of delta.added) {
    const k = routeKey(r);
    stay.add(k);
    if (owned.objects.has(r) || skip.has(k)) continue;
    if (owned.byKey.has(k)) rebased.push(r);
    else changes.push(addRoute(r));
  }
  for (const old of delta.removed) {
    const k = routeKey(old);
    const r = owned.byKey.get(k);
    if (r && !stay.has(k))
      changes.push(deleteRoute({ dst: r.dst, dev: r.dev, gateway: r.gateway, protocol: ownProtocol }));
  }
  return pairReplacements(changes);
}

/** What can differ between the wanted interface and the one on the host. */
export type DriftKind = 'missing' | 'address' | 'address6' | 'mtu' | 'unreadable' | 'listen-port' | 'key' | 'down';

/** One difference, with the text logged as the reason of its repair. */
export interface Drift {
  kind: DriftKind;
  text: string;
}

/** Why the interface differs from what is wanted (address, port, key, MTU, state); empty when it does not. */
export function interfaceDrift(want: DesiredInterface, link: LinkStatus, dev: InterfaceStatus | undefined): Drift[] {
  if (!link.exists) return [{ kind: 'missing', text: 'interface is missing' }];
  const out: Drift[] = [];
  const v4 = link.addresses.filter((a) => !a.includes(':'));
  const v6 = link.addresses.filter((a) => a.includes(':'));
  if (!v4.includes(want.address))
    out.push({ kind: 'address', text: `address ${v4.join(',') || '(none)'} → ${want.address}` });
  if (want.address6 && !v6.includes(want.address6))
    out.push({ kind: 'address6', text: `IPv6 address ${v6.join(',') || '(none)'} → ${want.address6}` });
  if (want.mtu !== undefined && link.mtu !== want.mtu) out.push({ kind: 'mtu', text: `MTU ${link.mtu} → ${want.mtu}` });
  if (!dev) return [...out, { kind: 'unreadable', text: 'WireGuard device not readable' }];
  if (dev.listenPort !== want.listenPort)
    out.push({ kind: 'listen-port', text: `listen port ${dev.listenPort} → ${want.listenPort}` });
  if (dev.publicKey !== want.publicKey)
    out.push({ kind: 'key', text: `key ${dev.publicKey ?? '(none)'} → ${want.publicKey}` });
  if (!link.up) out.push({ kind: 'down', text: 'interface is down' });
  return out;
}

/** How drift is repaired: the IPv6 overlay address and a down link in place, anything else by recreating the interface. */
export interface DriftRepair {
  /** Set the IPv6 overlay address on the running link (why, when it must be). */
  address6?: string | undefined;
  /** Set the link up (why, when it must be). */
  up?: string | undefined;
  /** Why the interface must be recreated (undefined when it need not). */
  recreate?: string | undefined;
}

/** The repair of `drift`: in place when only the IPv6 overlay address differs or the link is down, else a recreate. */
export function driftRepair(drift: readonly Drift[]): DriftRepair {
  if (drift.length === 0) return {};
  const inPlace = (d: Drift): boolean => d.kind === 'address6' || d.kind === 'down';
  if (!drift.every(inPlace)) return { recreate: drift.map((d) => d.text).join('; ') };
  const six = drift.filter((d) => d.kind === 'address6');
  return {
    ...(six.length > 0 ? { address6: six.map((d) => d.text).join('; ') } : {}),
    ...(drift.some((d) => d.kind === 'down') ? { up: 'interface was down' } : {}),
  };
}
