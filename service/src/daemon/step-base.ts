/**
 * What every reconcile step shares, the daemon's and `connect`'s: a run computes the desired
 * state, does what the step does before the host adapters, then hands it to them; the step keeps
 * the latest desired state and why it waits, each wait logged once.
 */
import type { PeerRefusal } from '../host/peer-adapter.js';
import type { Logger } from '../log/logger.js';
import type { DesiredState } from '../mesh/types.js';
import { StateReporter } from '../util/backoff.js';
import { HostApplier } from './apply-host.js';
import { ChangeLog, VerdictLog } from './run-log.js';
import type { HostAdapters, StepOutcome } from './step-parts.js';

/** A reconcile step over the host adapters: compute → (the step's own work) → adapters. */
export abstract class ReconcileStep {
  /** The latest desired state computed. */
  protected latest: DesiredState | undefined;
  private waitingFor: string | undefined;
  /** Says whether a state (by key) is new since it was last reported, so it is logged once. */
  protected readonly reporter = new StateReporter();
  private readonly verdicts: VerdictLog;
  /** The host adapters the desired state is applied to. */
  protected readonly host: HostApplier;

  constructor(
    protected readonly log: Logger,
    adapters: HostAdapters,
    refusedLine: (r: PeerRefusal) => string,
  ) {
    this.verdicts = new VerdictLog(log);
    this.host = new HostApplier(adapters, log, refusedLine);
  }

  /** The latest desired state (also when applying it failed). */
  get desired(): DesiredState | undefined {
    return this.latest;
  }

  /** Why the latest run could not compute a desired state yet (undefined once it could). */
  get waiting(): string | undefined {
    return this.waitingFor;
  }

  /** Forgets what the host holds: every adapter reads it on its next set. */
  invalidate(): void {
    this.host.invalidate();
  }

  /** One run: `force` re-reads the host (also when the desired state did not change). */
  async run(reasons: readonly string[], force: boolean, lines: string[]): Promise<StepOutcome> {
    const changes = new ChangeLog(this.log, lines);
    try {
      const desired = await this.compute();
      if (!desired) return { applied: false };
      if (this.beforeApply && (await this.beforeApply(desired, force, changes))) return { applied: true };
      this.log.debug(`reconcile: ${reasons.join(', ') || 'resync'}`);
      if (force) this.invalidate();
      return await this.apply(desired, changes);
    } finally {
      changes.close();
    }
  }

  /** The desired state, or undefined (through `wait`) while there is none. */
  protected abstract compute(): Promise<DesiredState | undefined> | DesiredState | undefined;

  /** The step's own work between compute and the adapters; true when the adapters have nothing to do. */
  protected beforeApply?(desired: DesiredState, force: boolean, changes: ChangeLog): Promise<boolean>;

  /** Hands the desired state to the host adapters. */
  protected abstract apply(desired: DesiredState, changes: ChangeLog): Promise<StepOutcome>;

  /** Records why there is no desired state yet (`logOnce` says it when it is new); returns undefined. */
  protected wait(why: string, logOnce?: (why: string) => void): undefined {
    this.waitingFor = why;
    if (this.reporter.changed('ready', why)) logOnce?.(why);
    return undefined;
  }

  /** Records that `desired` is ready to apply (logging its new skips and warnings) and returns it. */
  protected ready(desired: DesiredState): DesiredState {
    this.reporter.changed('ready', 'ok');
    this.waitingFor = undefined;
    this.verdicts.report(desired);
    return desired;
  }
}
