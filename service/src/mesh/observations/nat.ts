/**
 * Endpoints Nodes saw each other arrive from (behind NAT), as they publish them in
 * `wg-overlay.io/discovered-endpoints`: validated like every published endpoint (an IP literal and
 * port, no reserved address, bounded in number), indexed by the Node they are about, and kept up
 * to date one Node at a time. Only a node's own observations are in its annotation; a false one
 * can only add a candidate that failover leaves when it does not answer.
 */
import { ANNOTATION_DISCOVERED } from '../annotations.js';
import { compareSeniority } from '../membership/order.js';
import { reservedOverlap } from '../membership/ranges.js';
import type { MeshNode } from '../types.js';
import { formatHostPort, formatIp, hostCidr, parseCidr, parseHostPort, parseIp } from '../../net/ip.js';

/** At most this many observations are read from one Node. */
const MAX_ENTRIES = 64;

/** The observations in a Node's annotation (name → endpoint), the invalid ones dropped. */
export function parseDiscovered(node: MeshNode): Map<string, string> {
  const out = new Map<string, string>();
  const text = node.annotations[ANNOTATION_DISCOVERED];
  if (!text) return out;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return out;
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return out;
  for (const [name, ep] of Object.entries(raw as Record<string, unknown>).slice(0, MAX_ENTRIES)) {
    if (typeof ep !== 'string' || name === node.name) continue;
    const hp = parseHostPort(ep);
    const ip = hp ? parseIp(hp.host) : undefined;
    if (!hp || !ip || reservedOverlap(parseCidr(hostCidr(ip))!)) continue;
    out.set(name, formatHostPort(formatIp(ip), hp.port));
  }
  return out;
}

/** The observations of every Node, by the Node they are about. */
export class DiscoveredIndex {
  private readonly byObserver = new Map<string, { node: MeshNode; seen: Map<string, string> }>();
  private readonly byTarget = new Map<string, Set<string>>();

  /** Takes a Node's current observations (its annotation). */
  update(node: MeshNode): void {
    this.remove(node.name);
    const seen = parseDiscovered(node);
    if (seen.size === 0) return;
    this.byObserver.set(node.name, { node, seen });
    for (const target of seen.keys()) {
      let set = this.byTarget.get(target);
      if (!set) this.byTarget.set(target, (set = new Set()));
      set.add(node.name);
    }
  }

  /** Forgets a Node's observations. */
  remove(name: string): void {
    const had = this.byObserver.get(name);
    if (!had) return;
    this.byObserver.delete(name);
    for (const target of had.seen.keys()) {
      const set = this.byTarget.get(target)!;
      set.delete(name);
      if (set.size === 0) this.byTarget.delete(target);
    }
  }

  /** Where other Nodes saw `target` arrive from, the senior observers first, without duplicates. */
  about(target: string): string[] {
    const observers = [...(this.byTarget.get(target) ?? [])]
      .map((n) => this.byObserver.get(n)!)
      .sort((a, b) => compareSeniority(a.node, b.node));
    return [...new Set(observers.map((o) => o.seen.get(target)!))];
  }
}
