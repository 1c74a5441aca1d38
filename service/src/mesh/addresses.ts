/**
 * Overlay address assignment: a pure function of all Nodes and the overlay CIDR that gives every
 * Node a unique, stable address. Published claims are honoured oldest-first; Nodes without a
 * valid claim get the seed design's candidate (overlay prefix + low two octets of the InternalIP),
 * probing forward deterministically past collisions and unusable addresses.
 */
import { ANNOTATION_OVERLAY_ADDRESS } from './annotations.js';
import { bySeniority } from './order.js';
import type { MeshNode, SkipReason } from './types.js';
import { type Cidr, type Ip, bitsOf, cidrContains, cidrSize, formatCidr, formatIp, parseCidr, parseIp } from '../net/ip.js';

/** The outcome of assigning overlay addresses to all Nodes. */
export interface AddressAssignment {
  /** Node name → overlay address (no prefix length). */
  addresses: Map<string, string>;
  /** Claims that were not honoured and Nodes that got no address, with reasons. */
  problems: SkipReason[];
}

/** Parses the overlay CIDR; throws when it is not a usable network. */
export function parseOverlayCidr(text: string): Cidr {
  const c = parseCidr(text);
  if (!c) throw new Error(`overlay CIDR "${text}" is not a CIDR`);
  if (bitsOf(c.family) - c.prefix < 1 && c.family === 4 && c.prefix !== 32) throw new Error(`overlay CIDR "${text}" has no host addresses`);
  return c;
}

/**
 * True when the address at `offset` inside the overlay may be given to a node: not the network
 * or broadcast address and, in IPv4 overlays of /24 or larger, no address ending in .0 or .255.
 */
export function isUsableOffset(overlay: Cidr, offset: bigint): boolean {
  const size = cidrSize(overlay);
  if (offset < 0n || offset >= size) return false;
  if (overlay.family === 4) {
    if (overlay.prefix >= 31) return true;
    if (offset === 0n || offset === size - 1n) return false;
    if (overlay.prefix <= 24) {
      const lastOctet = (overlay.network + offset) & 0xffn;
      if (lastOctet === 0n || lastOctet === 255n) return false;
    }
    return true;
  }
  if (overlay.prefix >= 127) return true;
  return offset !== 0n && offset !== size - 1n;
}

/** FNV-1a over a string: a stable stand-in for nodes that have no IP at all. */
function fnv1a(s: string): bigint {
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(s, 'utf8')) {
    h ^= ch;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return BigInt(h);
}

/** The first parseable address among the Node's InternalIPs (IPv4 preferred), then ExternalIPs. */
function sourceIp(node: MeshNode): Ip | undefined {
  const ips = [...node.internalIPs, ...node.externalIPs].map((s) => parseIp(s)).filter((x): x is Ip => !!x);
  return ips.find((ip) => ip.family === 4) ?? ips[0];
}

/**
 * The default candidate offset inside the overlay for a Node: the low 16 bits of its IPv4
 * InternalIP (the seed rule: 192.0.2.5 → 100.64.2.5 in 100.64.0.0/10), fewer when the overlay
 * is smaller; for IPv6 overlays the whole IPv4 address or the low 64 bits of an IPv6 one; a hash
 * of the name when the Node has no address.
 */
export function candidateOffset(node: MeshNode, overlay: Cidr): bigint {
  const hostBits = bitsOf(overlay.family) - overlay.prefix;
  const ip = sourceIp(node);
  let want: number;
  let raw: bigint;
  if (!ip) {
    raw = fnv1a(node.name);
    want = Math.min(hostBits, 16);
  } else if (overlay.family === 4) {
    raw = ip.value;
    want = Math.min(hostBits, 16);
  } else {
    raw = ip.value;
    want = Math.min(hostBits, ip.family === 4 ? 32 : 64);
  }
  return raw & ((1n << BigInt(want)) - 1n);
}

/** Assigns every Node a unique overlay address; deterministic for a given Node list. */
export function assignOverlayAddresses(nodes: readonly MeshNode[], overlayCidr: string): AddressAssignment {
  const overlay = parseOverlayCidr(overlayCidr);
  const size = cidrSize(overlay);
  const ordered = bySeniority(nodes);
  const holder = new Map<bigint, string>();
  const addresses = new Map<string, string>();
  const problems: SkipReason[] = [];
  // Every node takes one address and at most 2 in 256 are unusable, so a free one always turns up
  // within this many steps unless the overlay is full (small overlays are scanned whole).
  const cap = BigInt(4 * (nodes.length + 300));
  const probeLimit = size < cap ? size : cap;
  const probeHint = new Map<bigint, bigint>();
  const toText = (offset: bigint): string => formatIp({ family: overlay.family, value: overlay.network + offset });

  // Pass 1: published claims, oldest first. A claim must be a valid usable address inside the
  // overlay that no older node already claimed.
  for (const node of ordered) {
    const claim = node.annotations[ANNOTATION_OVERLAY_ADDRESS];
    if (claim === undefined || claim === '') continue;
    const ip = parseIp(claim);
    let why: string | undefined;
    if (!ip) why = `published overlay address "${claim}" is not an IP address`;
    else if (!cidrContains(overlay, ip)) why = `published overlay address "${claim}" is outside the overlay ${formatCidr(overlay)}`;
    else if (!isUsableOffset(overlay, ip.value - overlay.network)) why = `published overlay address "${claim}" is a network, broadcast or reserved address`;
    else if (holder.has(ip.value - overlay.network)) why = `published overlay address "${claim}" is held by older node ${holder.get(ip.value - overlay.network)}`;
    if (why || !ip) {
      problems.push({ name: node.name, reason: why?.includes('held by') ? 'overlay-address-taken' : 'invalid-overlay-address', message: `${why}; a new address is assigned`, whole: false });
      continue;
    }
    const offset = ip.value - overlay.network;
    holder.set(offset, node.name);
    addresses.set(node.name, toText(offset));
  }

  // Pass 2: everyone else gets their candidate, or the next free usable address after it.
  for (const node of ordered) {
    if (addresses.has(node.name)) continue;
    const start = candidateOffset(node, overlay);
    let found: bigint | undefined;
    // Addresses only ever get taken during a run, so a later probe from the same start can resume
    // where the previous one ended: many nodes sharing a candidate cost O(n), not O(n²).
    let i = probeHint.get(start) ?? 0n;
    for (; i < probeLimit; i += 1n) {
      const offset = (start + i) % size;
      if (isUsableOffset(overlay, offset) && !holder.has(offset)) { found = offset; break; }
    }
    probeHint.set(start, i);
    if (found === undefined) {
      problems.push({ name: node.name, reason: 'no-overlay-address', message: `overlay ${formatCidr(overlay)} is exhausted: no free address for this node`, whole: true });
      continue;
    }
    holder.set(found, node.name);
    addresses.set(node.name, toText(found));
  }
  return { addresses, problems };
}
