/**
 * The one seniority order every conflict rule uses: older Nodes (creationTimestamp) first,
 * then by name, so every node resolves conflicts the same way from the same Node list.
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
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Returns a copy of the Nodes sorted oldest first. */
export function bySeniority<T extends Pick<MeshNode, 'createdAt' | 'name'>>(nodes: readonly T[]): T[] {
  return [...nodes].sort(compareSeniority);
}
