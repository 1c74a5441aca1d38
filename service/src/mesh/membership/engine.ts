/**
 * The incremental membership engine: the same verdicts as `decideMembership` over the whole list,
 * kept up to date one Node (or Peer list) at a time. A change re-judges only the claimants it can
 * affect — those sharing a key or an overlapping range with the changed one (transitively), those
 * whose ranges contain an address that came or went, and those whose overlay address moved — so
 * one event costs about the same at 5,000 Nodes as at 50. Unchanged members keep their objects,
 * which lets desired state and the adapters skip them by identity.
 */
import { parseOverlayCidr } from './addresses.js';
import { ANNOTATION_OVERLAY_ADDRESS6 } from '../annotations.js';
import { AddressBook } from './address-book.js';
import { CidrIndex } from './cidr-index.js';
import { validateExternalPeer, type AdmittedPeer } from './external-peers.js';
import {
  basePolicy,
  compareClaimants,
  nodeClaimant,
  peerClaimant,
  protectedOf,
  rangesOf,
  type Claimant,
} from './claims.js';
import { judge, type Verdict } from './judge.js';
import { asIPv6Problem, type Member, type Membership, type MembershipSettings } from './membership.js';
import { byName, lowerBound } from './order.js';
import type { RangePolicy } from './ranges.js';
import type { ExternalPeer, MeshNode, SelfIdentity, SkipReason } from '../types.js';
import type { Cidr } from '../../net/ip.js';

const idOf = (kind: 'node' | 'peer', name: string): string => `${kind}/${name}`;

/** True when two Nodes carry the same fields the mesh uses. */
export function sameNode(a: MeshNode, b: MeshNode): boolean {
  const same = (x: readonly string[], y: readonly string[]): boolean =>
    x.length === y.length && x.every((v, i) => v === y[i]);
  if (
    a.name !== b.name ||
    a.createdAt !== b.createdAt ||
    !same(a.internalIPs, b.internalIPs) ||
    !same(a.externalIPs, b.externalIPs) ||
    !same(a.podCIDRs, b.podCIDRs)
  )
    return false;
  const sameRecord = (x: Readonly<Record<string, string>> = {}, y: Readonly<Record<string, string>> = {}): boolean => {
    const kx = Object.keys(x);
    return kx.length === Object.keys(y).length && kx.every((k) => x[k] === y[k]);
  };
  return sameRecord(a.annotations, b.annotations) && sameRecord(a.labels, b.labels);
}

/** True when two members are the same in every field. */
function sameMember(a: Member | undefined, b: Member | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.name === b.name &&
    a.createdAt === b.createdAt &&
    a.publicKey === b.publicKey &&
    a.overlayAddress === b.overlayAddress &&
    a.overlayAddress6 === b.overlayAddress6 &&
    a.endpoint === b.endpoint &&
    (a.candidates ?? []).join() === (b.candidates ?? []).join() &&
    a.podCIDRs.length === b.podCIDRs.length &&
    a.podCIDRs.every((c, i) => c === b.podCIDRs[i]) &&
    (a.locationRanges ?? []).map((r) => `${r.dst} ${r.what}`).join() ===
      (b.locationRanges ?? []).map((r) => `${r.dst} ${r.what}`).join()
  );
}

/** Adds `c` to the owners of exactly `cidr`. */
function addTo(index: CidrIndex<Set<Claimant>>, cidr: Cidr, c: Claimant): void {
  const owners = index.exact(cidr);
  if (owners) owners.add(c);
  else index.add(cidr, new Set([c]));
}

/** Removes `c` from the owners of exactly `cidr` (the entry goes when it has none left). */
function removeFrom(index: CidrIndex<Set<Claimant>>, cidr: Cidr, c: Claimant): void {
  const owners = index.exact(cidr);
  owners?.delete(c);
  if (owners && owners.size === 0) index.delete(cidr);
}

/** A list kept sorted, with insert and remove in place. */
class SortedList<T> {
  readonly items: T[] = [];

  constructor(private readonly compare: (a: T, b: T) => number) {}

  private position(item: T): number {
    return lowerBound(this.items, (x) => this.compare(x, item) < 0);
  }

  insert(item: T): void {
    this.items.splice(this.position(item), 0, item);
  }

  remove(item: T): void {
    const i = this.position(item);
    if (this.items[i] === item) this.items.splice(i, 1);
    else this.items.splice(this.items.indexOf(item), 1);
  }

  /** Puts `item` in the place of the item that compares equal to it. */
  replace(item: T): void {
    this.items[this.position(item)] = item;
  }
}

/** Membership kept up to date incrementally. */
export class MeshEngine {
  private readonly overlay: Cidr;
  private readonly policy: RangePolicy;
  private readonly book: AddressBook;
  /** IPv6 overlay addresses, with a dual-stack overlay. */
  private readonly book6: AddressBook | undefined;
  private readonly overlay6: Cidr | undefined;
  private readonly nodes = new Map<string, MeshNode>();
  private readonly claimants = new Map<string, Claimant>();
  private readonly order = new SortedList<Claimant>(compareClaimants);
  private readonly byKey = new Map<string, Set<Claimant>>();
  /** Ranges claimants could claim (they have a key and the range passes the rules). */
  private readonly requested = new CidrIndex<Set<Claimant>>();
  /** Every parsed range of every claimant, claimable or not (to find those containing an address). */
  private readonly allRanges = new CidrIndex<Set<Claimant>>();
  private readonly verdicts = new Map<Claimant, Verdict>();
  private readonly members = new Map<string, Member>();
  private readonly sortedMembers = new SortedList<Member>(byName);
  private readonly peers = new Map<string, AdmittedPeer>();
  private invalidPeers: SkipReason[] = [];
  private rawPeers = new Map<string, string>();
  private skippedCache: SkipReason[] | undefined;
  private membersCache: Member[] | undefined;
  /** How many memberships were handed out, and what changed since the last one. */
  private version = 0;
  private touched = new Set<string>();
  private peersTouched = false;
  /** How many verdicts were computed so far (the work the events cost; tests and benchmarks read it). */
  judged = 0;

  constructor(
    private readonly settings: MembershipSettings,
    private readonly self?: SelfIdentity,
  ) {
    this.overlay = parseOverlayCidr(settings.overlayCidr);
    this.policy = basePolicy(settings, this.overlay);
    this.book = new AddressBook(this.overlay);
    this.overlay6 = settings.overlayCidr6 ? parseOverlayCidr(settings.overlayCidr6) : undefined;
    this.book6 = this.overlay6 ? new AddressBook(this.overlay6, ANNOTATION_OVERLAY_ADDRESS6) : undefined;
  }

  /** Adds or replaces a Node; returns false (and does nothing) when none of its mesh fields changed. */
  upsertNode(node: MeshNode): boolean {
    const old = this.nodes.get(node.name);
    if (old && sameNode(old, node)) return false;
    this.changeNode(node.name, node);
    return true;
  }

  /** Removes a Node; returns false when there was none by that name. */
  removeNode(name: string): boolean {
    if (!this.nodes.has(name)) return false;
    this.changeNode(name, undefined);
    return true;
  }

  /**
   * Replaces the whole Node list (a re-list); only the differences are worked on, and the address
   * pass and the verdicts run once for all of them.
   */
  setNodes(nodes: readonly MeshNode[]): boolean {
    const seen = new Set<string>();
    const dirty = new Set<Claimant>();
    let changed = false;
    for (const n of nodes) {
      seen.add(n.name);
      const old = this.nodes.get(n.name);
      if (old && sameNode(old, n)) continue;
      this.changeNode(n.name, n, dirty);
      changed = true;
    }
    for (const name of [...this.nodes.keys()]) {
      if (seen.has(name)) continue;
      this.changeNode(name, undefined, dirty);
      changed = true;
    }
    if (!changed) return false;
    this.movedAddresses([...this.book.flush(), ...(this.book6?.flush() ?? [])], dirty);
    this.settle(dirty);
    return true;
  }

  /** Replaces the external peers (few; each is compared with its last version). */
  setExternalPeers(list: readonly ExternalPeer[]): boolean {
    const next = new Map(list.map((p) => [p.name, JSON.stringify(p)]));
    if (next.size === this.rawPeers.size && [...next].every(([k, v]) => this.rawPeers.get(k) === v)) return false;
    this.rawPeers = next;
    const dirty = new Set<Claimant>();
    for (const c of [...this.claimants.values()]) if (c.kind === 'peer') this.unindex(c, dirty);
    this.invalidPeers = [];
    this.skippedCache = undefined;
    for (const raw of list) {
      const v = validateExternalPeer(raw);
      if (v.ok) this.index(peerClaimant(v.peer, this.policy), dirty);
      else this.invalidPeers.push(v.skip);
    }
    this.settle(dirty);
    return true;
  }

  /** The membership now (arrays rebuilt only when something in them changed). */
  result(): Membership {
    this.membersCache ??= this.sortedMembers.items.slice();
    if (!this.skippedCache) {
      this.skippedCache = [];
      for (const c of this.order.items) this.skippedCache.push(...this.verdicts.get(c)!.skips);
      this.skippedCache.push(...this.invalidPeers);
    }
    this.version += 1;
    const changes = {
      engine: this,
      version: this.version,
      nodes: this.touched,
      peers: this.peersTouched || this.version === 1,
    };
    this.touched = new Set();
    this.peersTouched = false;
    return {
      overlay: this.overlay,
      members: this.membersCache,
      externalPeers: [...this.peers.values()].sort(byName),
      addresses: this.book.addresses,
      skipped: this.skippedCache,
      changes,
      policy: this.policy,
      ...(this.book6 ? { overlay6: this.overlay6, addresses6: this.book6.addresses } : {}),
    };
  }

  /** Applies one Node's change; with `batch` (a re-list) its dirty claimants are left there for one settle. */
  private changeNode(name: string, node: MeshNode | undefined, batch?: Set<Claimant>): void {
    const dirty = batch ?? new Set<Claimant>();
    const old = this.nodes.get(name);
    if (node) this.nodes.set(name, node);
    else this.nodes.delete(name);
    this.updateProtected(old, node, dirty);
    const defer = batch !== undefined;
    const current = this.claimants.get(idOf('node', name));
    if (current) this.unindex(current, dirty);
    if (node) this.index(nodeClaimant(node, this.policy, this.self, this.settings), dirty);
    this.movedAddresses(
      [...this.book.update(name, node, defer), ...(this.book6?.update(name, node, defer) ?? [])],
      dirty,
    );
    if (!batch) this.settle(dirty);
  }

  /** Nodes whose overlay address (or its problem) moved are judged again. */
  private movedAddresses(names: Iterable<string>, dirty: Set<Claimant>): void {
    for (const moved of names) {
      const c = this.claimants.get(idOf('node', moved));
      if (c) dirty.add(c);
    }
  }

  /** Keeps the protected addresses current; claimants whose ranges contain one that came or went are rebuilt. */
  private updateProtected(old: MeshNode | undefined, node: MeshNode | undefined, dirty: Set<Claimant>): void {
    const before = old ? protectedOf(old) : [];
    const after = node ? protectedOf(node) : [];
    // The owner's age is part of the key: a Node created again under the same name is a new owner.
    const key = (p: { ip: { value: bigint }; owner: { label: string; createdAt: number } }): string =>
      `${p.ip.value}|${p.owner.label}|${p.owner.createdAt}`;
    const kept = new Set(after.map(key));
    const had = new Set(before.map(key));
    const changedIps: Cidr[] = [];
    for (const p of before) {
      if (kept.has(key(p))) continue;
      // Owners are compared by identity: remove the one this node added earlier.
      this.policy.protectedAddresses.delete(p.ip, this.protectedOwners.get(`${p.owner.name}|${key(p)}`)!);
      this.protectedOwners.delete(`${p.owner.name}|${key(p)}`);
      changedIps.push({ family: p.ip.family, network: p.ip.value, prefix: p.ip.family === 4 ? 32 : 128 });
    }
    for (const p of after) {
      if (had.has(key(p))) continue;
      this.policy.protectedAddresses.add(p.ip, p.owner);
      this.protectedOwners.set(`${p.owner.name}|${key(p)}`, p.owner);
      changedIps.push({ family: p.ip.family, network: p.ip.value, prefix: p.ip.family === 4 ? 32 : 128 });
    }
    for (const ip of changedIps) this.rebuildContaining(ip, dirty);
  }

  private readonly protectedOwners = new Map<string, { label: string; name: string; createdAt: number }>();

  /** Rebuilds every claimant with a range containing `ip` (its range-rule verdicts may change). */
  private rebuildContaining(ip: Cidr, dirty: Set<Claimant>): void {
    const hits = new Set<Claimant>();
    for (const hit of this.allRanges.allOverlapping(ip)) for (const c of hit.owner) hits.add(c);
    for (const c of hits) {
      this.unindex(c, dirty);
      this.index(
        c.kind === 'node'
          ? nodeClaimant(c.node!, this.policy, this.self, this.settings)
          : peerClaimant(c.peer!, this.policy),
        dirty,
      );
    }
  }

  /** Adds a claimant to the indexes; it and everyone it conflicts with become dirty. */
  private index(c: Claimant, dirty: Set<Claimant>): void {
    this.claimants.set(idOf(c.kind, c.name), c);
    this.order.insert(c);
    dirty.add(c);
    for (const r of rangesOf(c)) if (r.cidr) addTo(this.allRanges, r.cidr, c);
    if (c.key === undefined) return;
    let holders = this.byKey.get(c.key);
    if (!holders) this.byKey.set(c.key, (holders = new Set()));
    holders.add(c);
    for (const r of rangesOf(c)) if (r.cidr && !r.refused) addTo(this.requested, r.cidr, c);
  }

  /** Removes a claimant from the indexes; everyone it conflicted with becomes dirty. */
  private unindex(c: Claimant, dirty: Set<Claimant>): void {
    for (const n of this.neighbours(c)) dirty.add(n);
    dirty.delete(c);
    this.claimants.delete(idOf(c.kind, c.name));
    this.order.remove(c);
    this.forget(c);
    for (const r of rangesOf(c)) if (r.cidr) removeFrom(this.allRanges, r.cidr, c);
    if (c.key === undefined) return;
    const holders = this.byKey.get(c.key)!;
    holders.delete(c);
    if (holders.size === 0) this.byKey.delete(c.key);
    for (const r of rangesOf(c)) if (r.cidr && !r.refused) removeFrom(this.requested, r.cidr, c);
  }

  /** Claimants sharing a key or an overlapping claimable range with `c`. */
  private neighbours(c: Claimant): Set<Claimant> {
    const out = new Set<Claimant>();
    if (c.key === undefined) return out;
    for (const other of this.byKey.get(c.key) ?? []) out.add(other);
    for (const r of rangesOf(c)) {
      if (!r.cidr || r.refused) continue;
      for (const hit of this.requested.allOverlapping(r.cidr)) for (const other of hit.owner) out.add(other);
    }
    out.delete(c);
    return out;
  }

  /** Re-judges the dirty claimants and everything connected to them, and updates the outputs. */
  private settle(dirty: Set<Claimant>): void {
    const component = new Set<Claimant>();
    const stack = [...dirty].filter((c) => this.claimants.get(idOf(c.kind, c.name)) === c);
    while (stack.length > 0) {
      const c = stack.pop()!;
      if (component.has(c)) continue;
      component.add(c);
      for (const n of this.neighbours(c)) if (!component.has(n)) stack.push(n);
    }
    const sorted = [...component].sort(compareClaimants);
    this.judged += sorted.length;
    const verdicts = judge(sorted, {
      settings: this.settings,
      self: this.self,
      addresses: this.book.addresses,
      addresses6: this.book6?.addresses,
      addressProblems: (name) => [
        ...this.book.problems(name),
        ...(this.book6?.problems(name) ?? []).map(asIPv6Problem),
      ],
    });
    for (const [c, v] of verdicts) this.record(c, v);
  }

  /** Stores a verdict and updates members and peers (an unchanged member keeps its object). */
  private record(c: Claimant, v: Verdict): void {
    const had = this.verdicts.get(c);
    // The skip list is rebuilt only when some claimant's skips came, went or changed.
    if (v.skips.length > 0 || (had !== undefined && had.skips.length > 0)) this.skippedCache = undefined;
    this.verdicts.set(c, v);
    if (c.kind === 'peer') {
      this.peersTouched = true;
      if (v.peer) this.peers.set(c.name, v.peer);
      else this.peers.delete(c.name);
      return;
    }
    const before = this.members.get(c.name);
    if (sameMember(before, v.member)) return;
    this.membersCache = undefined;
    this.touched.add(c.name);
    if (!v.member) {
      this.members.delete(c.name);
      this.sortedMembers.remove(before!);
      return;
    }
    if (before) this.sortedMembers.replace(v.member);
    else this.sortedMembers.insert(v.member);
    this.members.set(c.name, v.member);
  }

  /** Drops what a removed claimant contributed to the outputs. */
  private forget(c: Claimant): void {
    if ((this.verdicts.get(c)?.skips.length ?? 0) > 0) this.skippedCache = undefined;
    this.verdicts.delete(c);
    if (c.kind === 'peer') {
      this.peersTouched = true;
      this.peers.delete(c.name);
      return;
    }
    const member = this.members.get(c.name);
    if (!member) return;
    this.touched.add(c.name);
    this.members.delete(c.name);
    this.sortedMembers.remove(member);
    this.membersCache = undefined;
  }
}
