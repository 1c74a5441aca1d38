/**
 * Indexes for the membership rules: which claimed range overlaps a CIDR, and which known address
 * lies inside one, answered without scanning every entry (two CIDRs overlap exactly when one
 * contains the other, so a query looks up the few prefix lengths in use).
 */
import { type Cidr, type Family, type Ip, cidrSize, prefixMask } from '../../net/ip.js';

/** First index in a sorted bigint array whose value is >= `v`. */
function lowerBound(sorted: readonly bigint[], v: bigint): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Networks of one family and prefix length: a map for exact lookups and a sorted list for ranges. */
class Level<T> {
  readonly byNetwork = new Map<bigint, T>();
  private sorted: bigint[] | undefined = [];

  add(network: bigint, owner: T): void {
    if (this.byNetwork.has(network)) return;
    this.byNetwork.set(network, owner);
    if (this.sorted) this.sorted.splice(lowerBound(this.sorted, network), 0, network);
  }

  delete(network: bigint): void {
    if (!this.byNetwork.delete(network)) return;
    if (this.sorted) this.sorted.splice(lowerBound(this.sorted, network), 1);
  }

  /** Some network in [start, end), with its owner. */
  firstIn(start: bigint, end: bigint): { network: bigint; owner: T } | undefined {
    return this.allIn(start, end).next().value ?? undefined;
  }

  /** Every network in [start, end), with its owner, in address order. */
  *allIn(start: bigint, end: bigint): Generator<{ network: bigint; owner: T }> {
    this.sorted ??= [...this.byNetwork.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (let i = lowerBound(this.sorted, start); i < this.sorted.length && this.sorted[i]! < end; i += 1) {
      const n = this.sorted[i]!;
      yield { network: n, owner: this.byNetwork.get(n)! };
    }
  }
}

/** CIDRs with an owner each; answers "which claimed CIDR overlaps this one". */
export class CidrIndex<T> {
  private readonly levels = new Map<string, { family: Family; prefix: number; level: Level<T> }>();

  /** Adds a CIDR (the first owner of an identical CIDR keeps it). */
  add(c: Cidr, owner: T): void {
    const k = `${c.family}/${c.prefix}`;
    let entry = this.levels.get(k);
    if (!entry) {
      entry = { family: c.family, prefix: c.prefix, level: new Level<T>() };
      this.levels.set(k, entry);
    }
    entry.level.add(c.network, owner);
  }

  /** The owner of exactly this CIDR, if it is indexed. */
  exact(c: Cidr): T | undefined {
    return this.levels.get(`${c.family}/${c.prefix}`)?.level.byNetwork.get(c.network);
  }

  /** Removes a CIDR. */
  delete(c: Cidr): void {
    this.levels.get(`${c.family}/${c.prefix}`)?.level.delete(c.network);
  }

  /**
   * An indexed CIDR that overlaps `c` (contains it or lies inside it), with its owner: the first
   * found, or with `prefer` the one whose owner sorts first.
   */
  overlapping(c: Cidr, prefer?: (a: T, b: T) => number): { cidr: Cidr; owner: T } | undefined {
    let best: { cidr: Cidr; owner: T } | undefined;
    for (const hit of this.allOverlapping(c)) {
      if (!prefer) return hit;
      if (!best || prefer(hit.owner, best.owner) < 0) best = hit;
    }
    return best;
  }

  /** Every indexed CIDR that overlaps `c`, with its owner. */
  *allOverlapping(c: Cidr): Generator<{ cidr: Cidr; owner: T }> {
    const end = c.network + cidrSize(c);
    for (const { family, prefix, level } of this.levels.values()) {
      if (family !== c.family) continue;
      if (prefix <= c.prefix) {
        const network = c.network & prefixMask(family, prefix);
        const owner = level.byNetwork.get(network);
        if (owner !== undefined) yield { cidr: { family, network, prefix }, owner };
      } else {
        for (const hit of level.allIn(c.network, end))
          yield { cidr: { family, network: hit.network, prefix }, owner: hit.owner };
      }
    }
  }
}

/** Addresses with owners (several may share one); answers "which known address lies inside this CIDR". */
export class AddressIndex<T> {
  private readonly byFamily = new Map<Family, { owners: Map<bigint, T[]>; sorted: bigint[] | undefined }>();

  /** Adds an owner of an address. */
  add(ip: Ip, owner: T): void {
    let fam = this.byFamily.get(ip.family);
    if (!fam) {
      fam = { owners: new Map(), sorted: [] };
      this.byFamily.set(ip.family, fam);
    }
    const list = fam.owners.get(ip.value);
    if (list) {
      list.push(owner);
      return;
    }
    fam.owners.set(ip.value, [owner]);
    if (fam.sorted) fam.sorted.splice(lowerBound(fam.sorted, ip.value), 0, ip.value);
  }

  /** Removes one owner of an address (by identity). */
  delete(ip: Ip, owner: T): void {
    const fam = this.byFamily.get(ip.family);
    const list = fam?.owners.get(ip.value);
    if (!fam || !list) return;
    const i = list.indexOf(owner);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) {
      fam.owners.delete(ip.value);
      if (fam.sorted) fam.sorted.splice(lowerBound(fam.sorted, ip.value), 1);
    }
  }

  /** Every indexed address inside `c` with each of its owners, lowest address first. */
  *allInside(c: Cidr): Iterable<{ ip: Ip; owner: T }> {
    const fam = this.byFamily.get(c.family);
    if (!fam) return;
    fam.sorted ??= [...fam.owners.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const end = c.network + cidrSize(c);
    for (let i = lowerBound(fam.sorted, c.network); i < fam.sorted.length && fam.sorted[i]! < end; i += 1) {
      const value = fam.sorted[i]!;
      for (const owner of fam.owners.get(value)!) yield { ip: { family: c.family, value }, owner };
    }
  }
}
