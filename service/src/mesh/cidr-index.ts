/**
 * Indexes for the membership rules: which claimed range overlaps a CIDR, and which known address
 * lies inside one, answered without scanning every entry (two CIDRs overlap exactly when one
 * contains the other, so a query looks up the few prefix lengths in use).
 */
import { type Cidr, type Family, type Ip, cidrSize, prefixMask } from '../net/ip.js';

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
    this.sorted = undefined; // rebuilt on the next range query
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
        for (const hit of level.allIn(c.network, end)) yield { cidr: { family, network: hit.network, prefix }, owner: hit.owner };
      }
    }
  }
}

/** Addresses with an owner each; answers "which known address lies inside this CIDR". */
export class AddressIndex<T> {
  private readonly byFamily = new Map<Family, Level<T>>();

  /** Adds an address (the first owner of an address keeps it). */
  add(ip: Ip, owner: T): void {
    let level = this.byFamily.get(ip.family);
    if (!level) {
      level = new Level<T>();
      this.byFamily.set(ip.family, level);
    }
    level.add(ip.value, owner);
  }

  /** Some indexed address inside `c`, with its owner. */
  inside(c: Cidr): { ip: Ip; owner: T } | undefined {
    const hit = this.byFamily.get(c.family)?.firstIn(c.network, c.network + cidrSize(c));
    return hit ? { ip: { family: c.family, value: hit.network }, owner: hit.owner } : undefined;
  }
}
