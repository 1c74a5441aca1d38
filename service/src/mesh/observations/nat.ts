/**
 * NAT, every rule in one place: a node notes the peers it sees arrive from an endpoint none of
 * their addresses explains, publishes those observations (bounded) in
 * `wg-overlay.io/discovered-endpoints`, and reads everyone's; an observed endpoint of Node B is
 * dialled (as B's last candidate) only when B itself or at least two other Nodes report it, so one
 * node cannot point the others at somebody else; and a node others see behind NAT keeps a
 * keepalive so that its mapping stays open.
 */
import { ANNOTATION_DISCOVERED, MAX_ANNOTATION_LENGTH } from '../annotations.js';
import { addressesOf, canonicalEndpoint, reservedAddress } from '../membership/endpoints.js';
import { compareSeniority, compareText } from '../membership/order.js';
import type { DesiredPeer, MeshNode } from '../types.js';
import { isFreshHandshake, type PeerStatus } from './device.js';
import type { Ip } from '../../net/ip.js';

/** At most this many observations are read from one Node's annotation. */
export const MAX_OBSERVATIONS = 64;

/** The keepalive (s) of a node others see behind NAT, when none is configured: NAT mappings outlive it. */
export const NAT_KEEPALIVE_SECONDS = 25;

/** How many other Nodes must report the same endpoint of a Node before it is dialled (its own report suffices). */
export const REPORTERS_NEEDED = 2;

/**
 * The observations in a Node's annotation (the Node they are about → endpoint), normalised
 * (canonical text, IPv4-mapped addresses unmapped); entries that are not an address and port, or
 * are in a reserved range, are dropped, and at most MAX_OBSERVATIONS are read.
 */
export function parseObservations(node: MeshNode): Map<string, string> {
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
  for (const [name, value] of Object.entries(raw as Record<string, unknown>).slice(0, MAX_OBSERVATIONS)) {
    const ep = typeof value === 'string' ? canonicalEndpoint(value) : undefined;
    if (ep && !reservedAddress(ep.ip)) out.set(name, ep.text);
  }
  return out;
}

/** One endpoint reported for a Node, with who reported it (senior first). */
export interface Report {
  endpoint: string;
  reporters: string[];
  /** Whether it may be dialled: the Node itself or REPORTERS_NEEDED others reported it. */
  accepted: boolean;
}

/** Everyone's observations, indexed by the Node they are about, kept up to date one Node at a time. */
export class ObservationIndex {
  private readonly byObserver = new Map<string, { node: MeshNode; seen: Map<string, string> }>();
  private readonly byTarget = new Map<string, Set<string>>();

  /** Takes a Node's current observations (its annotation). */
  update(node: MeshNode): void {
    this.remove(node.name);
    const seen = parseObservations(node);
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

  /** The Nodes some other Node reports arriving from somewhere. */
  targets(): IterableIterator<string> {
    return this.byTarget.keys();
  }

  /** Every endpoint reported for `target`, with its reporters and whether it may be dialled; the best supported first. */
  reports(target: string): Report[] {
    const observers = [...(this.byTarget.get(target) ?? [])]
      .map((n) => this.byObserver.get(n)!)
      .sort((a, b) => compareSeniority(a.node, b.node));
    const byEndpoint = new Map<string, string[]>();
    for (const o of observers) {
      const ep = o.seen.get(target)!;
      byEndpoint.set(ep, [...(byEndpoint.get(ep) ?? []), o.node.name]);
    }
    return [...byEndpoint]
      .map(([endpoint, reporters]) => ({
        endpoint,
        reporters,
        accepted: reporters.includes(target) || reporters.length >= REPORTERS_NEEDED,
      }))
      .sort((a, b) => b.reporters.length - a.reporters.length || compareText(a.endpoint, b.endpoint));
  }

  /** The endpoints of `target` that may be dialled (its own report, or enough others agreeing), best supported first. */
  accepted(target: string): string[] {
    return this.reports(target)
      .filter((r) => r.accepted)
      .map((r) => r.endpoint);
  }

  /** Every endpoint anyone reported for `target` (what this node is seen arriving from, when it is the target). */
  reported(target: string): string[] {
    return this.reports(target).map((r) => r.endpoint);
  }
}

/**
 * The Node peers this node sees arrive (with a fresh handshake) from an endpoint none of their
 * own candidates explains: name → endpoint, sorted by name.
 */
export function observeArrivals(
  device: readonly PeerStatus[],
  peers: readonly DesiredPeer[],
  nowMs: number,
): Record<string, string> {
  const byKey = new Map(peers.filter((p) => p.kind === 'node').map((p) => [p.publicKey, p]));
  const out: Array<[string, string]> = [];
  for (const d of device) {
    const p = byKey.get(d.publicKey);
    if (!p || !d.endpoint || !isFreshHandshake(d.latestHandshake, nowMs)) continue;
    const own = new Set([...(p.candidates ?? []), ...(p.endpoint ? [p.endpoint] : [])]);
    if (!own.has(d.endpoint)) out.push([p.name, d.endpoint]);
  }
  return Object.fromEntries(out.sort(([a], [b]) => compareText(a, b)));
}

/** The annotation text of this node's observations: JSON, the first entries by name that fit the bound; undefined when none. */
export function observationsText(observed: Readonly<Record<string, string>>): string | undefined {
  const entries = Object.entries(observed)
    .sort(([a], [b]) => compareText(a, b))
    .slice(0, MAX_OBSERVATIONS);
  let text = JSON.stringify(Object.fromEntries(entries));
  while (text.length > MAX_ANNOTATION_LENGTH) {
    entries.pop();
    text = JSON.stringify(Object.fromEntries(entries));
  }
  return entries.length > 0 ? text : undefined;
}

/**
 * The keepalive of a node that others see arrive from addresses that are none of its own (behind
 * NAT): NAT_KEEPALIVE_SECONDS when none is configured, with those addresses; the configured one otherwise.
 */
export function natKeepalive(
  self: MeshNode,
  seenFrom: readonly string[],
  configured: number,
): { keepalive: number; behindNat?: string[] } {
  if (configured > 0) return { keepalive: configured };
  const key = (ip: Ip): string => `${ip.family}/${ip.value}`;
  const own = new Set(addressesOf([...self.internalIPs, ...self.externalIPs]).map(key));
  const hosts = seenFrom.map((ep) => canonicalEndpoint(ep)).filter((ep) => ep !== undefined);
  const foreign = hosts.filter((ep) => !own.has(key(ep.ip)));
  if (foreign.length === 0) return { keepalive: configured };
  return { keepalive: NAT_KEEPALIVE_SECONDS, behindNat: foreign.map((ep) => ep.text) };
}
