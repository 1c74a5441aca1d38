/**
 * External peers (Kilo's `Peer` custom resource) in the pure core: Kilo's own validation rules
 * (allowedIPs are CIDRs, the public key is base64 of 32 bytes, an endpoint has a DNS name or an
 * IP and a port in 1-65535, keepalive >= 0) plus the rules a mesh needs so that no Peer can take
 * traffic meant for the cluster: its allowedIPs may not overlap any Node's PodCIDRs, contain a
 * Node's overlay or underlay address, or overlap an older Peer's allowedIPs, and its public key
 * may not be a Node's or an older Peer's. Every rejection is a SkipReason naming what is wrong.
 * Deterministic: every node reaches the same verdicts from the same Node and Peer lists.
 */
import { ANNOTATION_ENDPOINT, ANNOTATION_PUBLIC_KEY } from './annotations.js';
import { compareSeniority } from './order.js';
import type { ExternalPeer, MeshNode, SkipReason } from './types.js';
import { type Cidr, type Ip, cidrContains, cidrsOverlap, compareCidrText, formatCidr, formatHostPort, formatIp, parseCidr, parseHostPort, parseIp } from '../net/ip.js';
import { isValidKey } from './keys.js';

/** An external peer that passed validation, in the form the mesh uses. */
export interface AdmittedPeer {
  name: string;
  createdAt: number;
  publicKey: string;
  /** Base64 preshared key, when the Peer has one. */
  presharedKey: string | undefined;
  /** `host:port` (the DNS name when both `dns` and `ip` are set, like Kilo); undefined for a roaming peer. */
  endpoint: string | undefined;
  /** Normalised, de-duplicated, sorted CIDRs. */
  allowedIPs: string[];
  /** Seconds, 0 = off. */
  persistentKeepalive: number;
}

/** What external peers are checked against: everything the cluster's Nodes already use. */
export interface ExternalPeerContext {
  /** Public key → who holds it (e.g. `Node node-a`). */
  keys: ReadonlyMap<string, string>;
  /** Every Node's PodCIDRs that parse, with the Node's name. */
  podCidrs: ReadonlyArray<{ cidr: Cidr; owner: string }>;
  /** Every Node's overlay address, with the Node's name. */
  overlayAddresses: ReadonlyArray<{ ip: Ip; owner: string }>;
  /** Every Node's underlay addresses (InternalIP, ExternalIP, published endpoint), with the Node's name. */
  underlayAddresses: ReadonlyArray<{ ip: Ip; owner: string }>;
}

/** The outcome of checking all external peers. */
export interface ExternalPeerVerdicts {
  /** Admitted external peers, sorted by name. */
  peers: AdmittedPeer[];
  /** Invalid Peers with the reason (kind `peer`, whole). */
  skipped: SkipReason[];
}

/** RFC 1123 subdomain as Kubernetes checks it (lower case labels, at most 253 characters). */
function isDns1123Subdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(s);
}

/** Shortens untrusted text for a log line. */
function shown(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
}

/** Kilo's validation of one external peer on its own; the reason when it fails. */
export function validateExternalPeer(peer: ExternalPeer): { ok: true; peer: AdmittedPeer } | { ok: false; skip: SkipReason } {
  const fail = (reason: SkipReason['reason'], message: string) => ({ ok: false as const, skip: { name: peer.name, kind: 'peer' as const, reason, message, whole: true } });

  if (peer.publicKey === undefined || peer.publicKey === '') return fail('invalid-public-key', 'invalid public key: spec.publicKey is missing');
  if (!isValidKey(peer.publicKey)) {
    return fail('invalid-public-key', `invalid public key ${shown(peer.publicKey)}: expected 44 characters of base64 encoding 32 bytes (the output of \`wg pubkey\`)`);
  }
  let presharedKey: string | undefined;
  if (peer.presharedKey !== undefined && peer.presharedKey !== '') {
    if (!isValidKey(peer.presharedKey)) return fail('invalid-preshared-key', 'invalid preshared key: expected 44 characters of base64 encoding 32 bytes (the output of `wg genpsk`)');
    presharedKey = peer.presharedKey;
  }

  if (peer.allowedIPs === undefined || peer.allowedIPs.length === 0) return fail('invalid-allowed-ips', 'spec.allowedIPs is missing or empty: the Peer would have no address');
  const cidrs = new Map<string, Cidr>();
  for (const text of peer.allowedIPs) {
    const c = parseCidr(text);
    if (!c || !text.includes('/')) return fail('invalid-allowed-ips', `allowedIPs entry ${shown(text)} is not a CIDR (e.g. 10.5.0.1/32)`);
    cidrs.set(formatCidr(c), c);
  }

  let keepalive = 0;
  if (peer.persistentKeepalive !== undefined) {
    const k = peer.persistentKeepalive;
    if (!Number.isInteger(k) || k < 0 || k > 65535) return fail('invalid-keepalive', `persistentKeepalive ${String(k)} is not a number of seconds in 0-65535`);
    keepalive = k;
  }

  let endpoint: string | undefined;
  if (peer.endpoint !== undefined) {
    const { dns, ip, port } = peer.endpoint;
    const hasDns = dns !== undefined && dns !== '';
    const hasIp = ip !== undefined && ip !== '';
    if (!hasDns && !hasIp) return fail('invalid-endpoint', 'invalid endpoint: spec.endpoint.dnsOrIP has neither dns nor ip');
    if (hasDns && !isDns1123Subdomain(dns)) return fail('invalid-endpoint', `invalid endpoint: dns ${shown(dns)} is not an RFC 1123 subdomain`);
    if (hasIp && !parseIp(ip)) return fail('invalid-endpoint', `invalid endpoint: ip ${shown(ip)} is not an IP address`);
    if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return fail('invalid-endpoint', `invalid endpoint: port ${port === undefined ? '(missing)' : String(port)} is not in 1-65535`);
    // Like Kilo: when both are given, the DNS name is used.
    const host = hasDns ? dns : formatIp(parseIp(ip!)!);
    endpoint = formatHostPort(host, port);
  }

  return {
    ok: true,
    peer: {
      name: peer.name,
      createdAt: peer.createdAt,
      publicKey: peer.publicKey,
      presharedKey,
      endpoint,
      allowedIPs: [...cidrs.keys()].sort(compareCidrText),
      persistentKeepalive: keepalive,
    },
  };
}

/**
 * What external peers are checked against, from all Nodes: their published keys (this node's own
 * key from `self`), PodCIDRs, overlay addresses and underlay addresses. Independent of which node
 * computes it, so every node skips the same Peers.
 */
export function externalPeerContext(nodes: readonly MeshNode[], overlayAddresses: ReadonlyMap<string, string>, self?: { name: string; publicKey: string }): ExternalPeerContext {
  const keys = new Map<string, string>();
  const podCidrs: Array<{ cidr: Cidr; owner: string }> = [];
  const overlay: Array<{ ip: Ip; owner: string }> = [];
  const underlay: Array<{ ip: Ip; owner: string }> = [];
  for (const node of [...nodes].sort(compareSeniority)) {
    const key = node.name === self?.name ? self.publicKey : node.annotations[ANNOTATION_PUBLIC_KEY];
    if (key !== undefined && isValidKey(key) && !keys.has(key)) keys.set(key, `Node ${node.name}`);
    for (const text of node.podCIDRs) {
      const c = parseCidr(text);
      if (c) podCidrs.push({ cidr: c, owner: node.name });
    }
    const addr = overlayAddresses.get(node.name);
    const ip = addr === undefined ? undefined : parseIp(addr);
    if (ip) overlay.push({ ip, owner: node.name });
    const published = node.annotations[ANNOTATION_ENDPOINT];
    const hp = published ? parseHostPort(published) : undefined;
    for (const text of [...node.internalIPs, ...node.externalIPs, ...(hp ? [hp.host] : [])]) {
      const u = parseIp(text);
      if (u) underlay.push({ ip: u, owner: node.name });
    }
  }
  return { keys, podCidrs, overlayAddresses: overlay, underlayAddresses: underlay };
}

/**
 * Checks every external peer: first on its own (Kilo's rules), then oldest first against the Nodes
 * and the Peers already accepted. Nodes always win; among Peers the older one keeps a key or range.
 */
export function admitExternalPeers(peers: readonly ExternalPeer[], ctx: ExternalPeerContext): ExternalPeerVerdicts {
  const accepted: AdmittedPeer[] = [];
  const skipped: SkipReason[] = [];
  const keys = new Map(ctx.keys);
  const taken: Array<{ cidr: Cidr; owner: string }> = [];
  const skip = (name: string, reason: SkipReason['reason'], message: string): void => {
    skipped.push({ name, kind: 'peer', reason, message, whole: true });
  };
  for (const raw of [...peers].sort(compareSeniority)) {
    const v = validateExternalPeer(raw);
    if (!v.ok) { skipped.push(v.skip); continue; }
    const p = v.peer;
    const holder = keys.get(p.publicKey);
    if (holder !== undefined) { skip(p.name, 'duplicate-public-key', `duplicate public key: ${holder} already uses ${p.publicKey}`); continue; }

    let conflict: string | undefined;
    for (const text of p.allowedIPs) {
      const c = parseCidr(text)!;
      const pod = ctx.podCidrs.find((k) => cidrsOverlap(k.cidr, c));
      if (pod) { conflict = `allowedIPs ${text} overlaps PodCIDR ${formatCidr(pod.cidr)} of Node ${pod.owner}`; break; }
      const ov = ctx.overlayAddresses.find((a) => cidrContains(c, a.ip));
      if (ov) { conflict = `allowedIPs ${text} contains the overlay address ${formatIp(ov.ip)} of Node ${ov.owner}`; break; }
      const un = ctx.underlayAddresses.find((a) => cidrContains(c, a.ip));
      if (un) { conflict = `allowedIPs ${text} contains the address ${formatIp(un.ip)} of Node ${un.owner} (its WireGuard traffic would be routed into the tunnel)`; break; }
      const older = taken.find((k) => cidrsOverlap(k.cidr, c));
      if (older) { conflict = `allowedIPs ${text} overlaps ${formatCidr(older.cidr)} of older Peer ${older.owner}`; break; }
    }
    if (conflict) { skip(p.name, 'allowed-ips-conflict', conflict); continue; }

    keys.set(p.publicKey, `Peer ${p.name}`);
    for (const text of p.allowedIPs) taken.push({ cidr: parseCidr(text)!, owner: p.name });
    accepted.push(p);
  }
  accepted.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { peers: accepted, skipped };
}
