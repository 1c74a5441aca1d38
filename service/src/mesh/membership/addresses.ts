/**
 * Overlay address assignment: a pure function of all Nodes and the overlay CIDR that gives every
 * Node a unique, stable address. Published claims are honoured oldest-first; Nodes without a
 * valid claim get the seed design's candidate (overlay prefix + low two octets of the InternalIP),
 * probing forward deterministically past collisions and unusable addresses.
 */
import { ANNOTATION_OVERLAY_ADDRESS } from '../annotations.js';
import { firstAddress } from './endpoints.js';
import { bySeniority } from './order.js';
import { quoted } from '../text.js';
import type { MeshNode, SkipReason } from '../types.js';
import {
  type Cidr,
  type Ip,
  bitsOf,
  cidrContains,
  cidrSize,
  formatCidr,
  formatIp,
  parseCidr,
  parseIp,
} from '../../net/ip.js';

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
  if (bitsOf(c.family) - c.prefix < 1 && c.family === 4 && c.prefix !== 32)
    throw new Error(`overlay CIDR "${text}" has no host addresses`);
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
  return firstAddress([...node.internalIPs, ...node.externalIPs]);
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

/** A Node's published overlay address (under `annotation`) as an offset into the overlay, or why it is not usable. */
export function parseClaim(
  node: MeshNode,
  overlay: Cidr,
  annotation: string = ANNOTATION_OVERLAY_ADDRESS,
): { offset?: bigint; why?: string } {
  const claim = node.annotations[annotation];
  if (claim === undefined || claim === '') return {};
  const ip = parseIp(claim);
  if (!ip) return { why: `published overlay address ${quoted(claim)} is not an IP address` };
  if (!cidrContains(overlay, ip))
    return { why: `published overlay address ${quoted(claim)} is outside the overlay ${formatCidr(overlay)}` };
  if (!isUsableOffset(overlay, ip.value - overlay.network))
    return { why: `published overlay address ${quoted(claim)} is a network, broadcast or reserved address` };
  return { offset: ip.value - overlay.network };
}

/** The problem recorded for a claim that is not honoured. */
export function claimProblem(name: string, why: string, taken: boolean): SkipReason {
  return {
    name,
    reason: taken ? 'overlay-address-taken' : 'invalid-overlay-address',
    message: `${why}; a new address is assigned`,
    whole: false,
  };
}

/** The address text of an offset. */
export function offsetText(overlay: Cidr, offset: bigint): string {
  return formatIp({ family: overlay.family, value: overlay.network + offset });
}

/** What the candidate pass takes. */
export interface CandidatePass {
  /** Nodes without an honoured claim, oldest first. */
  unassigned: readonly MeshNode[];
  overlay: Cidr;
  /** Offsets already held (offset → holder), extended in place. */
  held: { has(offset: bigint): boolean; set(offset: bigint, name: string): unknown };
  /** How many Nodes there are in all (it bounds the probe). */
  total: number;
  /** Each Node's candidate offset (default: computed; a caller may cache it). */
  startOf?: ((node: MeshNode) => bigint) | undefined;
}

/**
 * Pass 2 of the assignment: each Node without an honoured claim (oldest first) gets its candidate,
 * or the next free usable address after it; `held` (offset → holder) is extended in place.
 * `total` is the number of all Nodes (it bounds the probe); `startOf` may cache candidate offsets.
 */
export function assignCandidates(i: CandidatePass): { assigned: Map<string, bigint>; problems: SkipReason[] } {
  const { unassigned, overlay, held, total } = i;
  const startOf = i.startOf ?? ((node: MeshNode) => candidateOffset(node, overlay));
  const size = cidrSize(overlay);
  // Every node takes one address and at most 2 in 256 are unusable, so a free one always turns up
  // within this many steps unless the overlay is full (small overlays are scanned whole).
  const cap = BigInt(4 * (total + 300));
  const probeLimit = size < cap ? size : cap;
  const probeHint = new Map<bigint, bigint>();
  const assigned = new Map<string, bigint>();
  const problems: SkipReason[] = [];
  for (const node of unassigned) {
    const start = startOf(node);
    let found: bigint | undefined;
    // Addresses only ever get taken during a run, so a later probe from the same start can resume
    // where the previous one ended: many nodes sharing a candidate cost O(n), not O(n²).
    let i = probeHint.get(start) ?? 0n;
    for (; i < probeLimit; i += 1n) {
      const offset = (start + i) % size;
      if (isUsableOffset(overlay, offset) && !held.has(offset)) {
        found = offset;
        break;
      }
    }
    probeHint.set(start, i);
    if (found === undefined) {
      problems.push({
        name: node.name,
        reason: 'no-overlay-address',
        message: `overlay ${formatCidr(overlay)} is exhausted: no free address for this node`,
        whole: true,
      });
      continue;
    }
    held.set(found, node.name);
    assigned.set(node.name, found);
  }
  return { assigned, problems };
}

/**
 * Assigns every Node a unique overlay address in `overlayCidr`; deterministic for a given Node
 * list. `annotation` is where Nodes publish their claims (the IPv6 overlay has its own).
 */
export function assignOverlayAddresses(
  nodes: readonly MeshNode[],
  overlayCidr: string,
  annotation: string = ANNOTATION_OVERLAY_ADDRESS,
): AddressAssignment {
  const overlay = parseOverlayCidr(overlayCidr);
  const ordered = bySeniority(nodes);
  const held = new Map<bigint, string>();
  const addresses = new Map<string, string>();
  const problems: SkipReason[] = [];
  // Pass 1: published claims, oldest first. A claim must be a valid usable address inside the
  // overlay that no older node already claimed.
  const unassigned: MeshNode[] = [];
  for (const node of ordered) {
    const { offset, why } = parseClaim(node, overlay, annotation);
    if (offset !== undefined && !held.has(offset)) {
      held.set(offset, node.name);
      addresses.set(node.name, offsetText(overlay, offset));
      continue;
    }
    if (why) problems.push(claimProblem(node.name, why, false));
    else if (offset !== undefined)
      problems.push(
        claimProblem(
          node.name,
          `published overlay address ${quoted(offsetText(overlay, offset))} is held by older node ${held.get(offset)}`,
          true,
        ),
      );
    unassigned.push(node);
  }
  // Pass 2: everyone else gets their candidate, or the next free usable address after it.
  const pass2 = assignCandidates({ unassigned, overlay, held, total: nodes.length });
  for (const [name, offset] of pass2.assigned) addresses.set(name, offsetText(overlay, offset));
  return { addresses, problems: [...problems, ...pass2.problems] };
}
