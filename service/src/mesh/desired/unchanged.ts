/**
 * Whether a new desired state is the one last applied (so a step may leave the host adapters
 * alone): equal interface sections, the same fail-closed rule set, the very same peers and routes.
 */
import type { DesiredInterface, DesiredState } from '../types.js';

/** True when two interface sections have the same fields with the same values (a field left out differs from one set to undefined). */
export function sameInterface(a: DesiredInterface, b: DesiredInterface): boolean {
  const keys = Object.keys(a) as (keyof DesiredInterface)[];
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && Object.is(a[k], b[k]));
}

/** True when two lists hold the very same objects in the same order. */
function sameRefs<T>(x: readonly T[], y: readonly T[]): boolean {
  return x === y || (x.length === y.length && x.every((v, i) => v === y[i]));
}

/** True when two desired states hold the same interface and the very same peer and route objects. */
export function sameDesired(a: DesiredState, b: DesiredState): boolean {
  // An unchanged fail-closed rule set is the very same object (planNode keeps it).
  if (!sameInterface(a.iface, b.iface) || a.firewall !== b.firewall) return false;
  // Derived from `a`: only the delta can differ.
  const p = b.peersDelta;
  const r = b.routesDelta;
  if (p?.from === a.peers && r?.from === a.routes)
    return p.added.length + p.removed.length + r.added.length + r.removed.length === 0;
  return sameRefs(a.peers, b.peers) && sameRefs(a.routes, b.routes);
}
