/**
 * Hands a desired state to the host adapters — the fail-closed rule set alongside the rest (it
 * holds while the interface is missing), the interface first, then peers and routes together —
 * logging each change; the daemon's step and `connect`'s both apply through it.
 */
import type { AppliedChange } from '../host/change.js';
import type { InterfaceSource } from '../host/interface-owner.js';
import type { PeerRefusal } from '../host/peer-adapter.js';
import type { Logger } from '../log/logger.js';
import type { DesiredState } from '../mesh/types.js';
import { StateReporter } from '../util/backoff.js';
import type { ChangeLog } from './run-log.js';
import type { HostAdapters, StepOutcome } from './step-parts.js';

/** How one desired state is applied. */
export interface HostApply {
  /** What a recreated interface starts from: the wg-quick config, and writing its file now. */
  source: InterfaceSource;
  /** `apply = restart`: any peer change recreates the interface (from the file) instead of `wg set`. */
  restartOnPeerChange?: boolean;
}

/** Starts `work` now; the returned call awaits it (rethrowing its error then, never unhandled before). */
function settled<T>(work: Promise<T[]> | undefined): () => Promise<T[]> {
  const p = (work ?? Promise.resolve([])).then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  return async () => {
    const r = await p;
    if ('error' in r) throw r.error;
    return r.value;
  };
}

/** Applies desired states to one set of host adapters and keeps the peers the device refused. */
export class HostApplier {
  private refusedLines: string[] = [];
  private readonly reporter = new StateReporter();
  /** The first apply, and one after {@link invalidate}, start the fail-closed rule set before anything else. */
  private firewallFirst = true;

  constructor(
    private readonly a: HostAdapters,
    private readonly log: Logger,
    /** One sentence for a peer the device refused (logged once, kept until the next apply). */
    private readonly refusedLine: (r: PeerRefusal) => string,
  ) {}

  /** Peers the device refused in the latest apply, one sentence each. */
  get refused(): readonly string[] {
    return this.refusedLines;
  }

  /** Forgets what the host holds: every adapter reads it on its next set. */
  invalidate(): void {
    this.firewallFirst = true;
    this.a.iface.invalidate();
    this.a.peers.invalidate();
    this.a.routes.invalidate();
    this.a.firewall?.invalidate();
  }

  /**
   * Hands `desired` to the adapters, the fail-closed rule set alongside the rest. At the first
   * apply and after {@link invalidate} the rule set starts at once; a change after that starts it
   * once the routes and `wg` are under way (its `nft` delays neither).
   */
  async apply(desired: DesiredState, how: HostApply, changes: ChangeLog): Promise<StepOutcome> {
    let firewall: (() => Promise<AppliedChange[]>) | undefined;
    const startFirewall = (): void => {
      firewall ??= settled(desired.firewall && this.a.firewall?.set(desired.firewall));
    };
    if (this.firewallFirst) startFirewall();
    try {
      const outcome = await this.applyMesh(desired, how, changes, startFirewall);
      if (outcome.applied) this.firewallFirst = false;
      return outcome;
    } finally {
      startFirewall();
      changes.record(await firewall!());
    }
  }

  /** Interface first, then routes and peers together (then `startFirewall`). */
  private async applyMesh(
    desired: DesiredState,
    how: HostApply,
    changes: ChangeLog,
    startFirewall: () => void,
  ): Promise<StepOutcome> {
    const { iface, peers, routes } = this.a;
    let restartWhy: string | undefined;
    if (how.restartOnPeerChange) {
      const plan = await peers.plan(desired.peers);
      if (plan.length > 0)
        restartWhy = `apply = restart and ${plan.length} peer change(s): ${plan.map((c) => c.reason).join('; ')}`;
    }
    const ifaceResult = await iface.set(desired.iface, how.source, restartWhy);
    changes.record(ifaceResult.changes);
    if (!ifaceResult.ready) return { applied: false, retry: { ms: 2000, why: `looking for ${desired.iface.name}` } };
    if (ifaceResult.recreated) {
      // The device now holds exactly the config's peers, and no routes.
      peers.reset();
      routes.invalidate();
    }
    // A route only ever names the interface, so its order against `wg set` does not matter, and
    // running both at once halves the latency. The route goes first: a line to the `ip` co-process
    // is quicker to send than `wg` is to spawn.
    const routeWork = routes.set(desired.routes, desired.routesDelta);
    const peerWork = peers.set(desired.peers, desired.peersDelta);
    startFirewall();
    const [peerResult, routeResult] = await Promise.all([peerWork, routeWork]);
    changes.record(peerResult.changes);
    this.refusedLines = peerResult.refused.map((r) => this.refusedLine(r));
    if (this.reporter.changed('refused', this.refusedLines.join('\n')))
      for (const line of this.refusedLines) this.log.warning(line);
    changes.record(routeResult.changes);
    return routeResult.clash
      ? { applied: true, followUp: 'a route already existed: checking the routing table' }
      : { applied: true };
  }
}
