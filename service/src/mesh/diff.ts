/**
 * Diffs of desired against observed state: which peers to add, update or remove, which routes
 * to add or delete, and whether the interface itself must be recreated. Pure; each change carries
 * the reason that is logged when it is applied. Same input twice → no changes.
 */
import type { DesiredInterface, DesiredPeer, DesiredRoute } from './types.js';
import type { InterfaceStatus, LinkStatus, PeerStatus, RouteStatus } from './status.js';
import { compareCidrText, formatIp, hostCidr, normalizeCidr, parseHostPort, parseIp } from '../net/ip.js';

/** One peer change, with the reason to log. */
export type PeerChange =
  | { op: 'add'; peer: DesiredPeer; reason: string }
  | { op: 'update'; peer: DesiredPeer; setEndpoint: boolean; reason: string }
  | { op: 'remove'; publicKey: string; name: string | undefined; reason: string };

/** One route change, with the reason to log. */
export type RouteChange =
  | { op: 'add'; route: DesiredRoute; reason: string }
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

/**
 * Peer changes that turn `observed` into `desired`. `lastApplied` (peers this process applied
 * before, by public key) decides endpoints: an endpoint is only re-set when the desired value
 * changed, or on adoption when the device disagrees with a literal desired endpoint, so a peer
 * that roamed behind NAT is not pulled back on every resync.
 */
export function diffPeers(desired: readonly DesiredPeer[], observed: readonly PeerStatus[], lastApplied?: ReadonlyMap<string, DesiredPeer>): PeerChange[] {
  const changes: PeerChange[] = [];
  const seen = new Map(observed.map((p) => [p.publicKey, p]));
  const wanted = new Set(desired.map((p) => p.publicKey));
  for (const peer of desired) {
    const cur = seen.get(peer.publicKey);
    if (!cur) {
      changes.push({ op: 'add', peer, reason: `new ${peer.kind === 'node' ? 'Node' : 'Peer'} ${peer.name}` });
      continue;
    }
    const why: string[] = [];
    const prev = lastApplied?.get(peer.publicKey);
    const wantIps = canonicalCidrs(peer.allowedIPs);
    if (wantIps.join(',') !== canonicalCidrs(cur.allowedIPs).join(',')) why.push(`allowed IPs ${cur.allowedIPs.join(',') || '(none)'} → ${wantIps.join(',')}`);
    if (peer.persistentKeepalive !== cur.persistentKeepalive) why.push(`keepalive ${cur.persistentKeepalive} → ${peer.persistentKeepalive}`);
    // The device only tells whether it holds a key: a new key is known from what was applied.
    if (!!peer.presharedKey !== cur.hasPresharedKey) why.push(peer.presharedKey ? 'preshared key added' : 'preshared key removed');
    else if (peer.presharedKey && prev !== undefined && prev.presharedKey !== peer.presharedKey) why.push('preshared key changed');
    let setEndpoint = false;
    if (peer.endpoint) {
      const changedSinceApplied = prev !== undefined && prev.endpoint !== peer.endpoint;
      const adoptMismatch = prev === undefined && isLiteralEndpoint(peer.endpoint) && canonicalEndpoint(peer.endpoint) !== canonicalEndpoint(cur.endpoint);
      const neverSet = cur.endpoint === undefined;
      if (changedSinceApplied || adoptMismatch || neverSet) {
        setEndpoint = true;
        why.push(`endpoint ${cur.endpoint ?? '(none)'} → ${peer.endpoint}`);
      }
    }
    if (why.length > 0) changes.push({ op: 'update', peer, setEndpoint, reason: `${peer.name}: ${why.join('; ')}` });
  }
  for (const p of observed) {
    if (wanted.has(p.publicKey)) continue;
    const prev = lastApplied?.get(p.publicKey);
    const name = prev?.name;
    const rekeyed = prev !== undefined && desired.some((d) => d.name === prev.name && d.kind === prev.kind);
    const reason = rekeyed ? `${name} published a new public key` : name ? `${name} is gone or no longer valid` : 'not a current Node or Peer';
    changes.push({ op: 'remove', publicKey: p.publicKey, name, reason });
  }
  return changes;
}

/** A route destination as a CIDR (`ip` prints host routes without a prefix length). */
function routeDst(dst: string): string {
  const ip = parseIp(dst);
  return ip ? hostCidr(ip) : normalizeCidr(dst) ?? dst;
}

/** Route changes that make the daemon's own routes (`ownProtocol`) match the desired ones. */
export function diffRoutes(desired: readonly DesiredRoute[], observed: readonly RouteStatus[], ownProtocol: string): RouteChange[] {
  const changes: RouteChange[] = [];
  const own = observed.filter((r) => r.protocol === ownProtocol);
  const ownKey = new Set(own.map((r) => `${routeDst(r.dst)}|${r.dev ?? ''}`));
  const wanted = new Set(desired.map((r) => `${r.dst}|${r.dev}`));
  for (const r of desired) {
    if (ownKey.has(`${r.dst}|${r.dev}`)) continue;
    // Someone else's route to the same prefix through another device is never overwritten.
    const other = observed.find((o) => o.protocol !== ownProtocol && routeDst(o.dst) === r.dst && o.dev !== r.dev);
    if (other) {
      changes.push({ op: 'conflict', route: r, other, reason: `PodCIDR ${r.dst} of ${r.via} is already routed via ${other.dev ?? '?'} (proto ${other.protocol}) by someone else; left alone` });
      continue;
    }
    changes.push({ op: 'add', route: r, reason: `PodCIDR ${r.dst} of ${r.via}` });
  }
  for (const r of own) {
    if (!wanted.has(`${routeDst(r.dst)}|${r.dev ?? ''}`)) changes.push({ op: 'delete', route: r, reason: `no current peer owns ${r.dst}` });
  }
  return changes;
}

/** Why the interface must be recreated (address, port, key or MTU differ); empty when it need not. */
export function interfaceDrift(want: DesiredInterface, link: LinkStatus, dev: InterfaceStatus | undefined): string[] {
  const why: string[] = [];
  if (!link.exists) return ['interface is missing'];
  if (!link.addresses.includes(want.address)) why.push(`address ${link.addresses.join(',') || '(none)'} → ${want.address}`);
  if (want.mtu !== undefined && link.mtu !== want.mtu) why.push(`MTU ${link.mtu} → ${want.mtu}`);
  if (!dev) return [...why, 'WireGuard device not readable'];
  if (dev.listenPort !== want.listenPort) why.push(`listen port ${dev.listenPort} → ${want.listenPort}`);
  if (dev.publicKey !== want.publicKey) why.push(`key ${dev.publicKey ?? '(none)'} → ${want.publicKey}`);
  if (!link.up) why.push('interface is down');
  return why;
}
