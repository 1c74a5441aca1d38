/**
 * External peers (Kilo's `Peer` custom resource) on their own: Kilo's validation rules (allowedIPs
 * are CIDRs, the public key is base64 of 32 bytes, an endpoint has a DNS name or an IP and a port
 * in 1-65535, keepalive >= 0), each rejection a SkipReason naming what is wrong. The rules against
 * Nodes and other Peers (seniority, ranges) are membership's.
 */
import { isValidKey } from './keys.js';
import { quoted } from '../text.js';
import type { ExternalPeer, SkipReason } from '../types.js';
import { type Cidr, compareCidrText, formatCidr, formatHostPort, formatIp, parseCidr, parseIp } from '../../net/ip.js';

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

/** Kilo's validation of one external peer on its own; the reason when it fails. */
export function validateExternalPeer(
  peer: ExternalPeer,
): { ok: true; peer: AdmittedPeer } | { ok: false; skip: SkipReason } {
  const fail = (reason: SkipReason['reason'], message: string) => ({
    ok: false as const,
    skip: { name: peer.name, kind: 'peer' as const, reason, message, whole: true },
  });

  if (peer.publicKey === undefined || peer.publicKey === '')
    return fail('invalid-public-key', 'invalid public key: spec.publicKey is missing');
  if (!isValidKey(peer.publicKey)) {
    return fail(
      'invalid-public-key',
      `invalid public key ${quoted(peer.publicKey)}: expected 44 characters of base64 encoding 32 bytes (the output of \`wg pubkey\`)`,
    );
  }
  let presharedKey: string | undefined;
  if (peer.presharedKey !== undefined && peer.presharedKey !== '') {
    if (!isValidKey(peer.presharedKey))
      return fail(
        'invalid-preshared-key',
        'invalid preshared key: expected 44 characters of base64 encoding 32 bytes (the output of `wg genpsk`)',
      );
    presharedKey = peer.presharedKey;
  }

  if (peer.allowedIPs === undefined || peer.allowedIPs.length === 0)
    return fail('invalid-allowed-ips', 'spec.allowedIPs is missing or empty: the Peer would have no address');
  const cidrs = new Map<string, Cidr>();
  for (const text of peer.allowedIPs) {
    const c = parseCidr(text);
    if (!c || !text.includes('/'))
      return fail('invalid-allowed-ips', `allowedIPs entry ${quoted(text)} is not a CIDR (e.g. 10.5.0.1/32)`);
    cidrs.set(formatCidr(c), c);
  }

  let keepalive = 0;
  if (peer.persistentKeepalive !== undefined) {
    const k = peer.persistentKeepalive;
    if (!Number.isInteger(k) || k < 0 || k > 65535)
      return fail('invalid-keepalive', `persistentKeepalive ${String(k)} is not a number of seconds in 0-65535`);
    keepalive = k;
  }

  let endpoint: string | undefined;
  let endpointName: string | undefined;
  if (peer.endpoint !== undefined) {
    const { dns, ip, port } = peer.endpoint;
    const hasDns = dns !== undefined && dns !== '';
    const hasIp = ip !== undefined && ip !== '';
    if (!hasDns && !hasIp)
      return fail('invalid-endpoint', 'invalid endpoint: spec.endpoint.dnsOrIP has neither dns nor ip');
    if (hasDns && !isDns1123Subdomain(dns))
      return fail('invalid-endpoint', `invalid endpoint: dns ${quoted(dns)} is not an RFC 1123 subdomain`);
    if (hasIp && !parseIp(ip))
      return fail('invalid-endpoint', `invalid endpoint: ip ${quoted(ip)} is not an IP address`);
    if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535)
      return fail(
        'invalid-endpoint',
        `invalid endpoint: port ${port === undefined ? '(missing)' : String(port)} is not in 1-65535`,
      );
    // Like Kilo: when both are given, the DNS name is used.
    const host = hasDns ? dns : formatIp(parseIp(ip!)!);
    endpoint = formatHostPort(host, port);
    if (hasDns) endpointName = dns;
  }

  return {
    ok: true,
    peer: {
      name: peer.name,
      createdAt: peer.createdAt,
      publicKey: peer.publicKey,
      presharedKey,
      endpoint,
      ...(endpointName ? { endpointName } : {}),
      allowedIPs: [...cidrs.keys()].sort(compareCidrText),
      persistentKeepalive: keepalive,
    },
  };
}
