/**
 * Location leadership as a pure step: who leads a location is decided from the Node list alone
 * (rank, then seniority, the same on every node); the location's leader Lease only says whether
 * a candidate is alive — seen writing it within the configured duration, by the viewer's own clock,
 * whatever duration the Lease itself names — and the step says when this node writes the Lease.
 * A member that writes itself into the Lease therefore changes nothing while a better candidate is
 * alive, and a leader that stops is replaced once the configured duration has passed.
 */
import type { TopologyState } from '../types.js';

/** A location's leader Lease as read from the API (only the fields leadership uses). */
export interface LeaseReading {
  /** The location id it belongs to (`location:<name>`). */
  location: string;
  /** Who wrote itself into it last. */
  holder: string | undefined;
  /** Its renewal stamp: any change of it (or of the holder) is a write. */
  renewTime: string | undefined;
}

/** What one node has seen of the Leases: per location, when each holder was last seen writing it. */
export interface LeaseBook {
  /** Location id → the Lease as last read. */
  readonly leases: Map<string, LeaseReading>;
  /** Location id → holder → when this node last saw that holder write the Lease (ms, its own clock). */
  readonly writes: Map<string, Map<string, number>>;
}

/** Timing of leadership (ms). */
export interface LeadershipTiming {
  /** `[mesh] leader_lease`: a candidate is alive this long after it was seen writing its location's Lease. */
  durationMs: number;
  /** How long each candidate waits after the one before it when a location has nobody alive. */
  stepMs: number;
}

/** Candidates' liveness by location: who is alive, and who was alive and stopped (lapsed). */
export interface Liveness {
  /** Location id → names seen writing its Lease within the duration. */
  alive: ReadonlyMap<string, ReadonlySet<string>>;
  /** Location id → names seen writing it before, but not within the duration. */
  lapsed: ReadonlyMap<string, ReadonlySet<string>>;
}

/** No Lease read: every candidate's liveness unknown (leaders by rank alone). */
export const NO_LIVENESS: Liveness = { alive: new Map(), lapsed: new Map() };

/** An empty book. */
export function newLeaseBook(): LeaseBook {
  return { leases: new Map(), writes: new Map() };
}

/** The one liveness rule: alive while less than the configured duration has passed since the write was seen. */
export function isLive(writtenAt: number, now: number, durationMs: number): boolean {
  return now < writtenAt + durationMs;
}

/** Records a reading of a Lease; true when it was a write (a new holder or renewal stamp). */
export function recordLease(book: LeaseBook, lease: LeaseReading, now: number): boolean {
  const before = book.leases.get(lease.location);
  book.leases.set(lease.location, lease);
  const wrote = !before || before.renewTime !== lease.renewTime || before.holder !== lease.holder;
  if (!wrote || !lease.holder) return wrote;
  let writes = book.writes.get(lease.location);
  if (!writes) book.writes.set(lease.location, (writes = new Map()));
  writes.set(lease.holder, now);
  return true;
}

/** Forgets a location's Lease (it was deleted); what was seen of its writers stays until it lapses. */
export function forgetLease(book: LeaseBook, location: string): void {
  book.leases.delete(location);
}

/** The liveness of every writer seen, by location. */
export function livenessOf(book: LeaseBook, now: number, durationMs: number): Liveness {
  const alive = new Map<string, Set<string>>();
  const lapsed = new Map<string, Set<string>>();
  for (const [location, writes] of book.writes) {
    for (const [name, at] of writes) {
      const into = isLive(at, now, durationMs) ? alive : lapsed;
      let set = into.get(location);
      if (!set) into.set(location, (set = new Set()));
      set.add(name);
    }
  }
  return { alive, lapsed };
}

/** When the next alive writer lapses (ms), if any is alive: the verdict must be taken again then. */
export function nextLapse(book: LeaseBook, now: number, durationMs: number): number | undefined {
  let next: number | undefined;
  for (const writes of book.writes.values()) {
    for (const at of writes.values()) {
      const end = at + durationMs;
      if (end > now && (next === undefined || end < next)) next = end;
    }
  }
  return next;
}

/**
 * The one leader rule: the first member in rank order seen alive; while nobody is, the first that
 * did not stop (everyone stopped: the first). `order` is not empty.
 */
export function chooseLeader(
  order: readonly string[],
  alive: ReadonlySet<string>,
  lapsed: ReadonlySet<string>,
): string {
  return order.find((n) => alive.has(n)) ?? order.find((n) => !lapsed.has(n)) ?? order[0]!;
}

/**
 * When a location became vacant: when its last writer lapsed (the same moment on every node that
 * saw the same writes), or `now` when it never had one; the candidates' turns count from there.
 */
export function vacancyStart(book: LeaseBook, location: string, now: number, durationMs: number): number {
  let last: number | undefined;
  for (const at of book.writes.get(location)?.values() ?? []) if (last === undefined || at > last) last = at;
  return last === undefined ? now : Math.min(now, last + durationMs);
}

/** What this node's latest topology says about its own location. */
export interface LeaderWish {
  /** This node's location id. */
  location: string;
  /** The leader the verdict names. */
  leader: string;
  /** The location's members in the order they should lead: rank, then seniority. */
  order: readonly string[];
  /** Members seen writing the Lease before but not within the duration. */
  lapsed: ReadonlySet<string>;
  /** True when some candidate of the location is alive (then the vacancy rule does not apply). */
  someoneAlive: boolean;
}

/** Input of one leadership step. */
export interface LeaseTurnInput {
  wish: LeaderWish;
  /** This node's name. */
  self: string;
  /** The location's Lease as last read (undefined: none yet). */
  lease: LeaseReading | undefined;
  now: number;
  timing: LeadershipTiming;
  /** When this node last wrote the Lease (0: never). */
  lastWriteAt: number;
  /** Since when the location has had nobody alive, as this node counted it (undefined: not vacant). */
  vacantSince: number | undefined;
}

/** The outcome of one leadership step. */
export interface LeaseTurn {
  /** Write the Lease with this node as holder: `take` from someone (or a free Lease), else renew; with why, for the log. */
  write?: { take: boolean; why: string } | undefined;
  /** The vacancy clock to keep for the next step. */
  vacantSince: number | undefined;
}

/** Who takes a Lease nobody alive holds, in turn: the members in order, the lapsed ones last. */
export function vacancyOrder(wish: Pick<LeaderWish, 'order' | 'lapsed'>): string[] {
  return [...wish.order.filter((n) => !wish.lapsed.has(n)), ...wish.order.filter((n) => wish.lapsed.has(n))];
}

/**
 * One step for one node: the leader the verdict names renews the Lease every third of the duration
 * and writes itself back at once when someone else wrote it; a candidate ranked above the leader
 * the verdict names (it has just started, or come back) takes the Lease at once, which makes it
 * alive for everyone; when nobody alive leads, the candidates take the Lease in their order, each
 * one step after the one before it.
 */
export function leaseTurn(i: LeaseTurnInput): LeaseTurn {
  const { wish, self, lease, now, timing } = i;
  if (wish.leader === self) {
    if (lease?.holder !== self) {
      const why = lease?.holder ? `from ${lease.holder}, which does not lead by the rules` : 'which was free';
      return { write: { take: true, why }, vacantSince: undefined };
    }
    const due = now - i.lastWriteAt >= timing.durationMs / 3;
    return { write: due ? { take: false, why: 'renewal' } : undefined, vacantSince: undefined };
  }
  const rank = wish.order.indexOf(self);
  if (rank >= 0 && rank < wish.order.indexOf(wish.leader)) {
    const why = `from ${lease?.holder ?? 'nobody'}: this node ranks above ${wish.leader}`;
    return { write: { take: true, why }, vacantSince: undefined };
  }
  if (wish.someoneAlive) return { vacantSince: undefined };
  const place = vacancyOrder(wish).indexOf(self);
  const since = i.vacantSince ?? now;
  if (place < 0 || now < since + place * timing.stepMs) return { vacantSince: since };
  const why = lease?.holder ? `from ${lease.holder}, whose Lease ran out` : 'which nobody alive held';
  return { write: { take: true, why }, vacantSince: since };
}

/** What a member of `location` wants from its Lease, given the members' order and their liveness. */
export function locationWish(location: string, order: readonly string[], liveness: Liveness): LeaderWish {
  const alive = liveness.alive.get(location) ?? new Set<string>();
  const lapsed = liveness.lapsed.get(location) ?? new Set<string>();
  return {
    location,
    leader: chooseLeader(order, alive, lapsed),
    order,
    lapsed,
    someoneAlive: order.some((n) => alive.has(n)),
  };
}

/** What this node wants from its location's Lease, from its topology and the liveness it was decided with. */
export function leaderWish(topology: TopologyState | undefined, liveness: Liveness): LeaderWish | undefined {
  if (topology?.granularity !== 'location') return undefined;
  const mine = topology.locations.find((l) => l.id === topology.locationId);
  return mine ? locationWish(mine.id, mine.order, liveness) : undefined;
}
