/**
 * What a reconcile run logs: each change it applied with its reason, and what membership leaves
 * out (each skipped Node or Peer, each part of one ignored, each warning about this node's own
 * settings) once when it appears, not again whenever another one changes. At scale the first
 * lines of a run go to info or warning and the rest to debug.
 */
import type { AppliedChange } from '../host/change.js';
import type { Logger } from '../log/logger.js';
import type { DesiredState } from '../mesh/types.js';

/** How many lines of one kind a run logs at info or warning (the first apply at scale makes thousands). */
export const LINES_LOGGED_PER_RUN = 50;

/** Logs skips and warnings once each. */
export class VerdictLog {
  private logged = new Set<string>();
  private loggedOf: unknown;
  private loggedWarnings = '';

  constructor(private readonly log: Logger) {}

  /** Logs the skips and warnings of `desired` that were not logged before. */
  report(desired: DesiredState): void {
    // The engine hands out the same arrays while nothing in them changed.
    const warnings = desired.warnings.join('\n');
    if (this.loggedOf === desired.skipped && this.loggedWarnings === warnings) return;
    this.loggedOf = desired.skipped;
    this.loggedWarnings = warnings;
    // A Node that has not published its key yet is just joining: info, not a problem.
    const lines = [
      ...desired.skipped.map((s) => ({
        warn: s.reason !== 'no-public-key',
        text: `${s.kind === 'peer' ? 'Peer' : 'Node'} ${s.whole ? 'skipped' : 'partly ignored'}: ${s.name}: ${s.message}`,
      })),
      ...desired.warnings.map((text) => ({ warn: true, text })),
    ];
    const before = this.logged;
    this.logged = new Set(lines.map((l) => l.text));
    let shown = 0;
    let quiet = 0;
    for (const l of lines) {
      if (before.has(l.text)) continue;
      if (shown >= LINES_LOGGED_PER_RUN) {
        quiet += 1;
        this.log.debug(l.text);
        continue;
      }
      shown += 1;
      if (l.warn) this.log.warning(l.text);
      else this.log.info(l.text);
    }
    if (quiet > 0)
      this.log.warning(
        `… and ${quiet} more Nodes or Peers left out or partly ignored (\`wg-overlay status\` lists them all)`,
      );
  }
}

/** Logs the changes of one run with their reasons: the first ones at info, the rest at debug. */
export class ChangeLog {
  private quiet = 0;

  constructor(
    private readonly log: Logger,
    /** Where the run's change lines are collected (the loop's report). */
    readonly lines: string[],
  ) {}

  /** Logs and collects applied changes. */
  record(applied: readonly AppliedChange[]): void {
    for (const c of applied) {
      this.lines.push(c.what);
      if (this.lines.length <= LINES_LOGGED_PER_RUN) this.log.info(`${c.what} (why: ${c.why})`);
      else {
        this.quiet += 1;
        this.log.debug(`${c.what} (why: ${c.why})`);
      }
    }
  }

  /** Ends the run: says how many changes were logged at debug only. */
  close(): void {
    if (this.quiet > 0) this.log.info(`… and ${this.quiet} more changes in this run (each logged at debug level)`);
  }
}
