/**
 * The one seniority order every conflict rule uses (older Nodes, by creationTimestamp, first, then
 * by name) and the one name order, so every node reaches the same verdicts from the same list.
 */
import type { MeshNode } from '../types.js';

/** Compares two Nodes by age (older first), then name. */
export function compareSeniority(
  a: Pick<MeshNode, 'createdAt' | 'name'>,
  b: Pick<MeshNode, 'createdAt' | 'name'>,
): number {
  if (a.createdAt !== b.createdAt) {
    if (a.createdAt === Infinity) return 1;
    if (b.createdAt === Infinity) return -1;
    return a.createdAt - b.createdAt;
  }
  return compareText(a.name, b.name);
}

/** The one comparison of names and ids: by UTF-16 code units, the same on every node (no locale). */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Orders anything named by its name. */
export function byName<T extends { readonly name: string }>(a: T, b: T): number {
  return compareText(a.name, b.name);
}

/** Returns a copy of the Nodes sorted oldest first. */
export function bySeniority<T extends Pick<MeshNode, 'createdAt' | 'name'>>(nodes: readonly T[]): T[] {
  return [...nodes].sort(compareSeniority);
}

/** The first index of a sorted list whose item is not `before` the probe (where it is, or would go): binary search. */
export function lowerBound<T>(items: readonly T[], before: (item: T) => boolean): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(items[mid]!)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
