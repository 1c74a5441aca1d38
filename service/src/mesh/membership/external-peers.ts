/**
 * External peers (Kilo's `Peer` custom resource) on their own: Kilo's validation rules (allowedIPs
 * are CIDRs, the public key is base64 of 32 bytes, an endpoint has a DNS name or an IP and a port
 * in 1-65535, keepalive >= 0), each rejection a SkipReason naming what is wrong. The rules against
 * Nodes and other Peers (seniority, ranges) are membership's.
 */
import { isValidKey } from './keys.js';
import { quoted } from '../text.js';
import type { ExternalPeer, SkipReason } from '../types.js';
import { compareCidrText, formatCidr, formatHostPort, formatIp, parseCidr, parseIp, unmapIPv4 } from '../../net/ip.js';

/** An external peer that passed validation, in the form the mesh uses. */
export interface AdmittedPeer {
  name: string;
  createdAt: number;
  publicKey: string;
  /** Base64 preshared key, when the Peer has one. */
  presharedKey: string | undefined;
  /** `host:port` (the DNS name when both `dns` and `ip` are set, like Kilo); undefined for a roaming peer. */
  endpoint: string | undefined;
  /** The endpoint's DNS name when it has one (the daemon resolves it; wg0.conf gets the address). */
  endpointName?: string | undefined;
  /** Normalised, de-duplicated, sorted CIDRs. */
  allowedIPs: string[];
  /** Seconds, 0 = off. */
  persistentKeepalive: number;
}

/** RFC 1123 subdomain as Kubernetes checks it (lower case labels, at most 253 characters). */
function isDns1123Subdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(s);
}

/** What is wrong with an external peer, found by one of the field checks. */
class PeerProblem extends Error {
  constructor(
    readonly reason: SkipReason['reason'],
    message: string,
  ) {
    super(message);
  }
}

/** The peer's public key and preshared key, checked. */
function keysOf(peer: ExternalPeer): { publicKey: string; presharedKey: string | undefined } {
  if (peer.publicKey === undefined || peer.publicKey === '')
    throw new PeerProblem('invalid-public-key', 'invalid public key: spec.publicKey is missing');
  if (!isValidKey(peer.publicKey))
    throw new PeerProblem(
      'invalid-public-key',
      `invalid public key ${quoted(peer.publicKey)}: expected 44 characters of base64 encoding 32 bytes (the output of \`wg pubkey\`)`,
    );
  if (peer.presharedKey === undefined || peer.presharedKey === '')
    return { publicKey: peer.publicKey, presharedKey: undefined };
  if (!isValidKey(peer.presharedKey))
    throw new PeerProblem(
      'invalid-preshared-key',
      'invalid preshared key: expected 44 characters of base64 encoding 32 bytes (the output of `wg genpsk`)',
    );
  return { publicKey: peer.publicKey, presharedKey: peer.presharedKey };
}

/** The peer's allowed IPs, normalised, without duplicates, sorted. */
function allowedIPsOf(peer: ExternalPeer): string[] {
  if (peer.allowedIPs === undefined || peer.allowedIPs.length === 0)
    throw new PeerProblem('invalid-allowed-ips', 'spec.allowedIPs is missing or empty: the Peer would have no address');
  const cidrs = new Set<string>();
  for (const text of peer.allowedIPs) {
    const c = parseCidr(text);
    if (!c || !text.includes('/'))
      throw new PeerProblem('invalid-allowed-ips', `allowedIPs entry ${quoted(text)} is not a CIDR (e.g. 10.5.0.1/32)`);
    cidrs.add(formatCidr(c));
  }
  return [...cidrs].sort(compareCidrText);
}

/** The peer's persistent keepalive (0 when absent). */
function keepaliveOf(peer: ExternalPeer): number {
  const k = peer.persistentKeepalive;
  if (k === undefined) return 0;
  if (!Number.isInteger(k) || k < 0 || k > 65535)
    throw new PeerProblem(
      'invalid-keepalive',
      `persistentKeepalive ${String(k)} is not a number of seconds in 0-65535`,
    );
  return k;
}

/** The peer's endpoint (`host:port`) and the DNS name in it, if any; none for a roaming peer. */
function endpointOf(peer: ExternalPeer): { endpoint?: string; endpointName?: string } {
  if (peer.endpoint === undefined) return {};
  const { dns, ip, port } = peer.endpoint;
  const hasDns = dns !== undefined && dns !== '';
  const hasIp = ip !== undefined && ip !== '';
  if (!hasDns && !hasIp)
    throw new PeerProblem('invalid-endpoint', 'invalid endpoint: spec.endpoint.dnsOrIP has neither dns nor ip');
  if (hasDns && !isDns1123Subdomain(dns))
    throw new PeerProblem('invalid-endpoint', `invalid endpoint: dns ${quoted(dns)} is not an RFC 1123 subdomain`);
  if (hasIp && !parseIp(ip))
    throw new PeerProblem('invalid-endpoint', `invalid endpoint: ip ${quoted(ip)} is not an IP address`);
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new PeerProblem(
      'invalid-endpoint',
      `invalid endpoint: port ${port === undefined ? '(missing)' : String(port)} is not in 1-65535`,
    );
  // Like Kilo: when both are given, the DNS name is used.
  const host = hasDns ? dns : formatIp(unmapIPv4(parseIp(ip!)!));
  return { endpoint: formatHostPort(host, port), ...(hasDns ? { endpointName: dns } : {}) };
}

/** Kilo's validation of one external peer on its own; the reason when it fails. */
export function validateExternalPeer(
  peer: ExternalPeer,
): { ok: true; peer: AdmittedPeer } | { ok: false; skip: SkipReason } {
  try {
    const keys = keysOf(peer);
    const allowedIPs = allowedIPsOf(peer);
    const persistentKeepalive = keepaliveOf(peer);
    const { endpoint, endpointName } = endpointOf(peer);
    return {
      ok: true,
      peer: {
        name: peer.name,
        createdAt: peer.createdAt,
        publicKey: keys.publicKey,
        presharedKey: keys.presharedKey,
        endpoint,
        ...(endpointName ? { endpointName } : {}),
        allowedIPs,
        persistentKeepalive,
      },
    };
  } catch (err) {
    if (!(err instanceof PeerProblem)) throw err;
    return {
      ok: false,
      skip: { name: peer.name, kind: 'peer', reason: err.reason, message: err.message, whole: true },
    };
  }
}
