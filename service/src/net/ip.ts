/**
 * IP address and CIDR arithmetic for the pure core: parse, format, containment and overlap for
 * IPv4 and IPv6, with addresses as bigints so the same code serves both families.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** An address family: 4 or 6. */
export type Family = 4 | 6;

/** A parsed IP address. */
export interface Ip {
  family: Family;
  value: bigint;
}

/** A parsed CIDR: the network address (host bits cleared) and the prefix length. */
export interface Cidr {
  family: Family;
  network: bigint;
  prefix: number;
}

/** Number of bits in an address of the given family. */
export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

/** Parses an IPv4 or IPv6 address (no zone, no prefix); undefined when it is not one. */
export function parseIp(text: string): Ip | undefined {
  const s = text.trim();
  if (isIPv4(s)) {
    const value = s.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
    return { family: 4, value };
  }
  if (isIPv6(s) && !s.includes('%')) {
    let head = s;
    let tailV4: bigint | undefined;
    const lastColon = s.lastIndexOf(':');
    const maybeV4 = s.slice(lastColon + 1);
    if (maybeV4.includes('.')) {
      const v4 = parseIp(maybeV4);
      if (!v4 || v4.family !== 4) return undefined;
      tailV4 = v4.value;
      head = `${s.slice(0, lastColon + 1)}0:0`;
    }
    const [left, right] = head.includes('::') ? (head.split('::') as [string, string]) : [head, undefined];
    const lg = left ? left.split(':') : [];
    const rg = right === undefined ? [] : right ? right.split(':') : [];
    const fill = right === undefined ? 0 : 8 - lg.length - rg.length;
    const groups = [...lg, ...Array<string>(fill).fill('0'), ...rg];
    if (groups.length !== 8) return undefined;
    let value = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
    if (tailV4 !== undefined) value = (value & ~0xffffffffn) | tailV4;
    return { family: 6, value };
  }
  return undefined;
}

/** The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) stands for; any other address as it is. */
export function unmapIPv4(ip: Ip): Ip {
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) return { family: 4, value: ip.value & 0xffffffffn };
  return ip;
}

/** Formats an address in canonical form (RFC 5952 for IPv6). */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((ip.value >> s) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i -= 1) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // Longest run of two or more zero groups becomes '::'.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

/** Parses `addr/prefix`; host bits are cleared. With `strict`, set host bits make it invalid. */
export function parseCidr(text: string, opts: { strict?: boolean } = {}): Cidr | undefined {
  const s = text.trim();
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(s.slice(0, slash));
  const prefixText = s.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > bitsOf(ip.family)) return undefined;
  const network = ip.value & prefixMask(ip.family, prefix);
  if (opts.strict && network !== ip.value) return undefined;
  return { family: ip.family, network, prefix };
}

/** The netmask of a prefix as a bigint. */
export function prefixMask(family: Family, prefix: number): bigint {
  const bits = BigInt(bitsOf(family));
  const all = (1n << bits) - 1n;
  return prefix === 0 ? 0n : (all >> (bits - BigInt(prefix))) << (bits - BigInt(prefix));
}

/** Formats a CIDR as `network/prefix`. */
export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.network })}/${c.prefix}`;
}

/** Normalises CIDR text (clears host bits, canonical address form); undefined when invalid. */
export function normalizeCidr(text: string): string | undefined {
  const c = parseCidr(text);
  return c ? formatCidr(c) : undefined;
}

/** Number of addresses in the CIDR. */
export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(bitsOf(c.family) - c.prefix);
}

/** True when the address lies inside the CIDR. */
export function cidrContains(c: Cidr, ip: Ip): boolean {
  return c.family === ip.family && (ip.value & prefixMask(c.family, c.prefix)) === c.network;
}

/** True when two CIDRs share at least one address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const p = Math.min(a.prefix, b.prefix);
  const m = prefixMask(a.family, p);
  return (a.network & m) === (b.network & m);
}

/** The host route CIDR (/32 or /128) of an address. */
export function hostCidr(ip: Ip): string {
  return `${formatIp(ip)}/${bitsOf(ip.family)}`;
}

/** Compares CIDR strings for a stable order: IPv4 before IPv6, then by network, then prefix. */
export function compareCidrText(a: string, b: string): number {
  const ca = parseCidr(a);
  const cb = parseCidr(b);
  if (!ca || !cb) return a < b ? -1 : a > b ? 1 : 0;
  if (ca.family !== cb.family) return ca.family - cb.family;
  if (ca.network !== cb.network) return ca.network < cb.network ? -1 : 1;
  return ca.prefix - cb.prefix;
}

/** Splits `host:port` or `[v6]:port`; undefined when malformed or the port is out of range. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const s = text.trim();
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0 || s[end + 1] !== ':') return undefined;
    host = s.slice(1, end);
    portText = s.slice(end + 2);
    if (!isIPv6(host)) return undefined;
  } else {
    const colon = s.lastIndexOf(':');
    if (colon <= 0 || s.indexOf(':') !== colon) return undefined;
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (!isIPv4(host) && !isDnsName(host)) return undefined;
  }
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}

/** Joins a host and port, bracketing IPv6 addresses. */
export function formatHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for an RFC 1123 DNS name (a subdomain: dot-separated labels of letters, digits, '-'). */
export function isDnsName(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  if (/^[\d.]+$/.test(s)) return false;
  return s.split('.').every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(l));
}
