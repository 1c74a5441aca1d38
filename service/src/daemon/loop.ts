/**
 * The reconcile loop: coalesces requests for a run, runs one step at a time, retries failed runs
 * with capped backoff (logging a failure once, not once per retry), resolves first-apply readiness,
 * reports every run, knows how long the current run has been going (a hung one makes the daemon
 * unhealthy), and stops without waiting for ever.
 */
import { ApplyError } from '../host/apply-error.js';
import { describeError, type Logger } from '../log/logger.js';
import type { ReconcileReport } from './report.js';
import { Backoff, StateReporter } from '../util/backoff.js';
import { formatMs } from '../util/duration.js';
import type { StepOutcome } from './step-parts.js';

/** What the loop runs. */
export interface Step {
  /** One run; `force` re-reads the host; applied changes are pushed to `changes`. */
  run(reasons: readonly string[], force: boolean, changes: string[]): Promise<StepOutcome>;
  /** Why the wg-quick file could not be written, if it could not (the live mesh may still be applied). */
  readonly configFileError?: string | undefined;
}

/** Options of the loop. */
export interface LoopOptions {
  log: Logger;
  /** Delay used to coalesce bursts of requests (ms, default 2); requests during a run go into the next. */
  coalesceMs?: number;
  /** How long `stop()` waits for a run in progress (ms, default 10 s). */
  stopTimeoutMs?: number;
}

/** Coalesces requests and runs the step, one run at a time. */
export class ReconcileLoop {
  readonly name = 'reconcile loop';
  private readonly pendingReasons = new Set<string>();
  private force = true;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private runStartedAt: number | undefined;
  private stopped = false;
  private firstApplied = false;
  private readonly firstAppliedWaiters: Array<() => void> = [];
  private readonly listeners: Array<(r: ReconcileReport) => void> = [];
  private readonly retry = new Backoff(500, 30_000);
  private readonly reporter = new StateReporter();
  /** The latest run's outcome. */
  lastReport: ReconcileReport | undefined;
  /** Time of the last run that applied the full desired state (ms since the epoch). */
  lastSuccessAt: number | undefined;

  constructor(
    private readonly step: Step,
    private readonly opts: LoopOptions,
  ) {}

  /** Calls `fn` after every run. */
  onReport(fn: (r: ReconcileReport) => void): void {
    this.listeners.push(fn);
  }

  /** Nothing to start: runs happen when requested. */
  start(): void {}

  /** Asks for a run; `force` re-reads the host even if the desired state did not change. */
  schedule(reason: string, force = false): void {
    if (this.stopped) return;
    this.pendingReasons.add(reason);
    this.force ||= force;
    // After a failed apply, host events (our own link churn among them) wait for the backoff
    // retry instead of hammering a failing command; Node changes still go through at once.
    if (force && this.retryTimer) return;
    if (this.running || this.timer) return;
    this.kickSoon();
  }

  /** Runs what was requested once the coalescing delay is over (requests until then join the run). */
  private kickSoon(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, this.opts.coalesceMs ?? 2);
  }

  /** Resolves once a run has applied the full desired state for the first time. */
  firstApply(): Promise<void> {
    if (this.firstApplied) return Promise.resolve();
    return new Promise((resolve) => this.firstAppliedWaiters.push(resolve));
  }

  /** Since when the current run has been going (ms since the epoch); undefined when idle. */
  get busySince(): number | undefined {
    return this.runStartedAt;
  }

  /** Stops scheduling and waits (bounded) for a run in progress; leaves the mesh as it is. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
    this.timer = undefined;
    if (!this.running) return;
    const limit = this.opts.stopTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), limit);
    });
    const done = this.running.then(() => false);
    if (await Promise.race([done, gaveUp]))
      this.opts.log.warning(`a reconcile run did not finish within ${formatMs(limit)} of the stop; leaving it behind`);
    clearTimeout(timer);
  }

  private kick(): void {
    if (this.running || this.stopped) return;
    const reasons = [...this.pendingReasons];
    const force = this.force;
    this.pendingReasons.clear();
    this.force = false;
    this.running = this.runOnce(reasons, force).finally(() => {
      this.running = undefined;
      if (this.pendingReasons.size > 0 && !this.timer && !this.retryTimer && !this.stopped) this.kickSoon();
    });
  }

  private async runOnce(reasons: string[], force: boolean): Promise<void> {
    const started = Date.now();
    this.runStartedAt = started;
    const changes: string[] = [];
    let report: ReconcileReport;
    try {
      const outcome = await this.step.run(reasons, force, changes);
      this.retry.reset();
      if (this.reporter.changed('apply', 'ok') && this.lastReport && !this.lastReport.ok)
        this.opts.log.notice('apply succeeded again');
      if (outcome.applied) this.applied();
      if (outcome.followUp) this.schedule(outcome.followUp, true);
      if (outcome.retry) this.later(outcome.retry.ms, outcome.retry.why);
      report = { ok: true, changes, durationMs: Date.now() - started, at: Date.now() };
    } catch (err) {
      const msg = describeError(err);
      if (this.reporter.changed('apply', `error:${msg}`))
        this.opts.log.error(`apply failed: ${msg}; retrying with backoff, nothing was torn down`);
      report = {
        ok: false,
        error: msg,
        ...(err instanceof ApplyError ? { errorStep: err.step } : {}),
        changes,
        durationMs: Date.now() - started,
        at: Date.now(),
      };
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.schedule('retry after a failed apply', true);
      }, this.retry.next());
    } finally {
      this.runStartedAt = undefined;
    }
    const confError = this.step.configFileError;
    this.lastReport = confError ? { ...report, configFileError: confError } : report;
    for (const fn of this.listeners) {
      try {
        fn(this.lastReport);
      } catch (err) {
        this.opts.log.error(`reporting a reconcile run: unexpected error: ${describeError(err)}`);
      }
    }
  }

  private applied(): void {
    this.lastSuccessAt = Date.now();
    if (this.firstApplied) return;
    this.firstApplied = true;
    for (const w of this.firstAppliedWaiters.splice(0)) w();
  }

  private later(ms: number, why: string): void {
    setTimeout(() => this.schedule(why, true), ms).unref();
  }
}
