/**
 * The routes adapter: keeps the daemon's own routes (tagged `proto 77`) equal to the desired ones.
 * It owns what it applied: while the table is known, a change is diffed against it without reading
 * the table and goes through the long-lived `ip -batch` with `ip route add`, which refuses to
 * replace a route that already exists (then the caller is asked for a full check), or `ip route
 * replace` when one of its own routes changes its way (a new location leader); after a failure
 * or `invalidate()`, the next `set()` reads the table, leaves other owners' routes alone (logged
 * once) and replaces its own.
 */
import type { CommandRunner } from '../exec/runner.js';
import type { Logger } from '../log/logger.js';
import {
  diffKnownRoutes,
  diffRouteDelta,
  diffRoutes,
  routeKey,
  type RouteChange,
  type RouteTarget,
} from '../mesh/desired/diff.js';
import type { DesiredRoute, ListDelta } from '../mesh/types.js';
import { StateReporter } from '../util/backoff.js';
import { inStep } from './apply-error.js';
import type { AppliedChange } from './change.js';
import type { IpBatch } from './ip-batch.js';
import type { OwnChanges } from './own-changes.js';
import { applyRouteChanges, readRoutes, ROUTE_PROTO } from './routes.js';

/** The outcome of one `set()`. */
export interface RouteSetResult {
  changes: AppliedChange[];
  /** True when an add found the prefix already routed: the table must be read (a forced run). */
  clash: boolean;
}

const key = routeKey;

/** The routes the adapter owns, by key and by object (for the identity check of unchanged routes). */
interface Owned {
  byKey: Map<string, DesiredRoute>;
  objects: Set<DesiredRoute>;
}

/** Records `r` as owned (in place of an owned route with the same key). */
function own(owned: Owned, r: DesiredRoute): void {
  const old = owned.byKey.get(key(r));
  if (old) owned.objects.delete(old);
  owned.byKey.set(key(r), r);
  owned.objects.add(r);
}

/** Forgets the owned route with the key of `r`. */
function disown(owned: Owned, r: RouteTarget): void {
  const old = owned.byKey.get(key(r));
  if (!old) return;
  owned.objects.delete(old);
  owned.byKey.delete(key(r));
}

/** Keeps the daemon's own routes equal to the desired ones. */
export class RouteAdapter {
  /** Routes this adapter owns on the host (by `dst|dev`, and as objects); undefined when the table must be read. */
  private owned: Owned | undefined;
  /** Desired routes left alone because another owner routes the prefix, by `dst|dev`. */
  private foreign = new Set<string>();
  /** The list the last `set()` applied (while the table is known, a delta from it is all there is to do). */
  private lastList: readonly DesiredRoute[] | undefined;
  private readonly reporter = new StateReporter();
  /** Only routes through this device are its own (undefined: every `proto 77` route is). */
  private device: string | undefined;

  constructor(
    private readonly runner: CommandRunner,
    private readonly log: Logger,
    private readonly batch?: IpBatch,
    private readonly own?: OwnChanges,
  ) {}

  /**
   * Owns only the `proto 77` routes through `dev` (others' are left alone as anyone's): several
   * `wg-overlay connect`, one per cluster, each on its own interface, share one routing table.
   */
  onlyThrough(dev: string): this {
    this.device = dev;
    return this;
  }

  /**
   * Makes the daemon's routes equal `desired`; a repeat with equal input runs nothing. `delta`
   * (how `desired` differs from an earlier list) is used when that list is the one applied last.
   */
  async set(desired: readonly DesiredRoute[], delta?: ListDelta<DesiredRoute>): Promise<RouteSetResult> {
    const known = this.owned;
    const fromLast = delta !== undefined && delta.from === this.lastList;
    this.owned = undefined; // until this run is through
    this.lastList = undefined;
    const result = known
      ? await this.setKnown(desired, known, fromLast ? delta : undefined)
      : await this.setRead(desired);
    if (this.owned && !result.clash) this.lastList = desired;
    return result;
  }

  /** Forgets what the table holds: the next `set()` reads it first. */
  invalidate(): void {
    this.owned = undefined;
    this.lastList = undefined;
  }

  /** Fast path: diff against what this adapter owns (no copy of it), exclusive adds through the batch. */
  private async setKnown(
    desired: readonly DesiredRoute[],
    known: Owned,
    delta: ListDelta<DesiredRoute> | undefined,
  ): Promise<RouteSetResult> {
    const rebased: DesiredRoute[] = [];
    const plan = delta
      ? diffRouteDelta(delta, { owned: known, skip: this.foreign, ownProtocol: ROUTE_PROTO, rebased })
      : diffKnownRoutes(desired, { owned: known, skip: this.foreign, ownProtocol: ROUTE_PROTO, rebased });
    for (const r of rebased) own(known, r);
    if (plan.length === 0) {
      this.owned = known;
      return { changes: [], clash: false };
    }
    this.expectDeletions(plan);
    const clashes = await inStep('routes', () =>
      applyRouteChanges(this.runner, plan, { exclusive: true, ...(this.batch ? { batch: this.batch } : {}) }),
    );
    const changes = this.describe(plan, clashes);
    if (clashes.length > 0) return { changes, clash: true };
    for (const c of plan) {
      if (c.op === 'add') {
        if (c.replaces) disown(known, c.replaces);
        own(known, c.route);
      } else if (c.op === 'delete') disown(known, c.route);
    }
    this.owned = known;
    return { changes, clash: false };
  }

  /** Slow path: read the table, leave other owners' routes alone, replace our own. */
  private async setRead(desired: readonly DesiredRoute[]): Promise<RouteSetResult> {
    // `ip` caches interface indexes by name: after the interface was recreated (the usual reason
    // for a read) a long-lived co-process would name the old one, so it starts afresh.
    this.batch?.close();
    const table = await inStep('routes', () => readRoutes(this.runner));
    const mine = this.device;
    // Another interface's own routes count as someone else's: never deleted, never replaced.
    const seen = mine
      ? table.map((r) => (r.protocol === ROUTE_PROTO && r.dev !== mine ? { ...r, protocol: 'other' } : r))
      : table;
    const plan = diffRoutes(desired, seen, ROUTE_PROTO);
    const conflicts = plan.filter((c): c is Extract<RouteChange, { op: 'conflict' }> => c.op === 'conflict');
    if (this.reporter.changed('conflicts', conflicts.map((c) => c.reason).join('\n'))) {
      for (const c of conflicts) this.log.warning(c.reason);
    }
    const todo = plan.filter((c) => c.op !== 'conflict');
    this.expectDeletions(todo);
    await inStep('routes', () =>
      applyRouteChanges(this.runner, todo, { exclusive: false, ...(this.batch ? { batch: this.batch } : {}) }),
    );
    this.foreign = new Set(conflicts.map((c) => key(c.route)));
    const owned: Owned = { byKey: new Map(), objects: new Set() };
    for (const r of desired) if (!this.foreign.has(key(r))) own(owned, r);
    this.owned = owned;
    return { changes: this.describe(todo, []), clash: false };
  }

  /** The interface monitor is told which deletions are ours, so they do not count as drift. */
  private expectDeletions(plan: readonly RouteChange[]): void {
    for (const c of plan) if (c.op === 'delete') this.own?.expectRouteDeletion(c.route.dst);
  }

  private describe(plan: readonly RouteChange[], clashes: readonly string[]): AppliedChange[] {
    const out: AppliedChange[] = [];
    for (const c of plan) {
      const to = c.route.gateway ? `via ${c.route.gateway}` : `dev ${c.route.dev ?? '?'}`;
      if (c.op === 'add' && !clashes.includes(c.route.dst))
        out.push({ what: `route ${c.route.dst} ${to} proto ${ROUTE_PROTO}`, why: c.reason });
      else if (c.op === 'delete') out.push({ what: `deleted route ${c.route.dst} ${to}`, why: c.reason });
    }
    return out;
  }
}
