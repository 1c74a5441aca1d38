/**
 * The address a self-joining external Peer (`wg-overlay connect`) takes in each family: the first
 * free one from where its public key points, in a fixed pool (10.255.0.0/16, fd77:676f::/64) or
 * else in `[peers] allowed_ranges`, past every claim of any Node or Peer, the named pod networks
 * and what the caller avoids, with the mesh's own verdict on the result (`peerClaimProblem`).
 */
import { isUsableOffset, parseOverlayCidr } from './addresses.js';
import { policyFor } from './claims.js';
import { CidrIndex } from './cidr-index.js';
import { decideMembership } from './membership.js';
import { DEFAULT_EXTERNAL_RANGES, DEFAULT_POD_CIDRS, rangeProblem, within, type RangePolicy } from './ranges.js';
import { ANNOTATION_OVERLAY_ADDRESS, ANNOTATION_OVERLAY_ADDRESS6 } from '../annotations.js';
import type { ExternalPeer, MembershipSettings, MeshNode } from '../types.js';
import { type Cidr, type Family, cidrSize, formatCidr, hostCidr, parseCidr, parseIp } from '../../net/ip.js';

/** The IPv4 pool of self-joining Peers (inside the private-use ranges, outside the usual pod and service networks). */
export const PEER_POOL4 = '10.255.0.0/16';
/** The IPv6 pool of self-joining Peers: a unique local /64 whose global ID spells "wgo". */
export const PEER_POOL6 = 'fd77:676f::/64';

/** At most this many candidates are tried in one pool (a /16 holds 65,536). */
const MAX_PROBES = 65_536;

/** What choosing an address looks at. */
export interface PeerAddressInput {
  nodes: readonly MeshNode[];
  externalPeers: readonly ExternalPeer[];
  settings: MembershipSettings;
  /** The Peer's name: its own earlier claim is not in its way. */
  name: string;
  /** The Peer's public key, which picks the first candidate. */
  publicKey: string;
  family: Family;
  /** Ranges to stay out of besides every claim (the ranges this host routes into the tunnel, its own subnets). */
  avoid?: readonly string[];
}

/** The chosen address as a host CIDR, or why there is none. */
export type PeerAddressChoice = { address: string } | { problem: string };

const parsed = (list: readonly string[]): Cidr[] => list.map((t) => parseCidr(t)).filter((c): c is Cidr => !!c);

/**
 * The pools a family's address is taken from, in order: the fixed pool when the allowed ranges
 * contain it, then the allowed ranges of the family themselves.
 */
export function peerAddressPools(family: Family, settings: MembershipSettings): Cidr[] {
  const allowed = parsed(settings.externalRanges ?? DEFAULT_EXTERNAL_RANGES).filter((c) => c.family === family);
  const pool = parseCidr(family === 4 ? PEER_POOL4 : PEER_POOL6)!;
  return allowed.some((a) => within(pool, a)) ? [pool, ...allowed] : allowed;
}

/** Everything claimed in the cluster, whatever its verdict: Nodes' PodCIDRs, addresses and overlay addresses, other Peers' ranges. */
function claimedRanges(i: PeerAddressInput): CidrIndex<string> {
  const index = new CidrIndex<string>();
  const add = (text: string, owner: string): void => {
    const ip = parseIp(text);
    const c = ip ? parseCidr(hostCidr(ip)) : parseCidr(text);
    if (c) index.add(c, owner);
  };
  for (const n of i.nodes) {
    for (const c of n.podCIDRs) add(c, `a PodCIDR of Node ${n.name}`);
    for (const ip of [...n.internalIPs, ...n.externalIPs]) add(ip, `an address of Node ${n.name}`);
    for (const a of [ANNOTATION_OVERLAY_ADDRESS, ANNOTATION_OVERLAY_ADDRESS6])
      if (n.annotations[a]) add(n.annotations[a], `the overlay address of Node ${n.name}`);
  }
  for (const p of i.externalPeers)
    if (p.name !== i.name) for (const c of p.allowedIPs ?? []) add(c, `the allowedIPs of Peer ${p.name}`);
  for (const c of i.avoid ?? []) add(c, 'a range this host routes into the tunnel');
  // The cluster's pod networks, when the admin named them: a Node that joins later gets its PodCIDR there.
  const pods = i.settings.podCidrs;
  if (pods && pods.join() !== DEFAULT_POD_CIDRS.join()) for (const c of pods) add(c, "the cluster's pod networks");
  return index;
}

/** The offset the key points at inside a pool: the key's last 64 bits, reduced to the pool's size. */
function keyOffset(publicKey: string, pool: Cidr): bigint {
  const bytes = Buffer.from(publicKey, 'base64');
  let v = 0n;
  for (const b of bytes.subarray(Math.max(0, bytes.length - 8))) v = (v << 8n) | BigInt(b);
  return v % cidrSize(pool);
}

/**
 * The first free, allowed address of a pool from the key's offset on, wrapping around (a claimed
 * range is stepped over whole); undefined when there is none.
 */
function freeIn(pool: Cidr, i: PeerAddressInput, taken: CidrIndex<string>, policy: RangePolicy): string | undefined {
  const size = cidrSize(pool);
  const start = keyOffset(i.publicKey, pool);
  const bits = i.family === 4 ? 32 : 128;
  const by = { name: i.name, createdAt: Infinity, peer: true };
  let probes = 0;
  for (let d = 0n; d < size && probes < MAX_PROBES; probes += 1) {
    const offset = (start + d) % size;
    const host: Cidr = { family: pool.family, network: pool.network + offset, prefix: bits };
    const hit = isUsableOffset(pool, offset) ? taken.overlapping(host) : undefined;
    if (isUsableOffset(pool, offset) && !hit && !rangeProblem(host, policy, 'external', by)) return formatCidr(host);
    // Past the end of the claim that holds it, or of the pool, whichever comes first.
    const end = hit ? hit.cidr.network + cidrSize(hit.cidr) - pool.network : offset + 1n;
    d += (end < size ? end : size) - offset;
  }
  return undefined;
}

/** The address of the family asked for, as a host CIDR (e.g. `10.255.3.7/32`), or why there is none. */
export function choosePeerAddress(i: PeerAddressInput): PeerAddressChoice {
  const pools = peerAddressPools(i.family, i.settings);
  const v = `IPv${i.family}`;
  if (pools.length === 0) return { problem: `[peers] allowed_ranges has no ${v} range to take an address from` };
  const taken = claimedRanges(i);
  const policy = policyFor(i.nodes, i.settings, parseOverlayCidr(i.settings.overlayCidr));
  for (const pool of pools) {
    const address = freeIn(pool, i, taken, policy);
    if (address) return { address };
  }
  return {
    problem: `no free ${v} address in ${pools.map(formatCidr).join(', ')}: every address is claimed or refused; give one with --address`,
  };
}

/** What judging a Peer's claim looks at. */
export interface PeerClaimInput {
  nodes: readonly MeshNode[];
  /** The cluster's Peers (one of the same name is replaced by `peer`). */
  externalPeers: readonly ExternalPeer[];
  settings: MembershipSettings;
  peer: ExternalPeer;
}

/** Why every node would leave `peer` out, by the membership rules themselves; undefined when it would be admitted. */
export function peerClaimProblem(i: PeerClaimInput): string | undefined {
  const peers = [...i.externalPeers.filter((p) => p.name !== i.peer.name), i.peer];
  const m = decideMembership(i.nodes, peers, i.settings);
  return m.skipped.find((s) => s.kind === 'peer' && s.name === i.peer.name && s.whole)?.message;
}
