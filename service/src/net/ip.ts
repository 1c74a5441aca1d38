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

/**
 * Dotted-quad IPv4 text as a number, as strict as node:net's isIPv4 (four decimal parts of 0–255,
 * no leading zeros); a loop over the characters, because the daemon runs without the JIT and
 * parses tens of thousands of addresses at start.
 */
function parseIPv4(s: string): number | undefined {
  let value = 0;
  let part = -1;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= s.length; i += 1) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // a final '.' ends the last part
    if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return undefined; // leading zero
      part = digits === 0 ? c - 48 : part * 10 + (c - 48);
      digits += 1;
      if (part > 255) return undefined;
    } else if (c === 46 && digits > 0 && parts < 4) {
      value = value * 256 + part;
      parts += 1;
      digits = 0;
      part = -1;
    } else return undefined;
  }
  return parts === 4 ? value : undefined;
}

/** Parses an IPv4 or IPv6 address (no zone, no prefix); undefined when it is not one. */
export function parseIp(text: string): Ip | undefined {
  const s = text.trim();
  const v4 = parseIPv4(s);
  if (v4 !== undefined) return { family: 4, value: BigInt(v4) };
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
    const word = (i: number): bigint => BigInt(parseInt(groups[i]!, 16) * 0x10000 + parseInt(groups[i + 1]!, 16));
    let value = (word(0) << 96n) | (word(2) << 64n) | (word(4) << 32n) | word(6);
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
    const n = Number(ip.value);
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  const groups: number[] = [];
  for (const shift of [96n, 64n, 32n, 0n]) {
    const w = Number(BigInt.asUintN(32, ip.value >> shift));
    groups.push(w >>> 16, w & 0xffff);
  }
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

/** The netmasks of every prefix length of a family, computed once. */
function masks(bits: number): bigint[] {
  const all = (1n << BigInt(bits)) - 1n;
  return Array.from({ length: bits + 1 }, (_, p) => (p === 0 ? 0n : (all >> BigInt(bits - p)) << BigInt(bits - p)));
}
const MASKS = { 4: masks(32), 6: masks(128) };

/** The netmask of a prefix as a bigint. */
export function prefixMask(family: Family, prefix: number): bigint {
  const m = MASKS[family][prefix];
  if (m !== undefined) return m;
  const bits = BigInt(bitsOf(family));
  return (((1n << bits) - 1n) >> (bits - BigInt(prefix))) << (bits - BigInt(prefix));
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
