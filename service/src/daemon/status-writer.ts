/**
 * The status-file writer: `<runtime_dir>/status.json` for `wg-overlay status`, written a moment
 * after a change (a burst shares one write), off the path of the live apply, never overlapping.
 */
import { describeError, type Logger } from '../log/logger.js';
import { writeStatusFile, type StatusSnapshot } from '../status/snapshot.js';
import { StateReporter } from '../util/backoff.js';
import type { Part } from './part.js';

/** Writes the snapshot `build()` returns into the directory `dir()` names. */
export class StatusWriter implements Part {
  readonly name = 'status writer';
  private queued: NodeJS.Timeout | undefined;
  private chain = Promise.resolve();
  private stopped = false;
  private readonly reporter = new StateReporter();

  /** `delayMs`: how long a change waits for more before the file is written (asked each time). */
  constructor(
    private readonly dir: () => string,
    private readonly build: () => StatusSnapshot,
    private readonly log: Logger,
    private readonly delayMs: () => number = () => 200,
  ) {}

  start(): void {
    this.changed();
  }

  /** Asks for a write shortly. */
  changed(): void {
    if (this.queued || this.stopped) return;
    this.queued = setTimeout(() => {
      this.queued = undefined;
      this.chain = this.chain.then(() => this.write());
    }, this.delayMs());
  }

  /** Writes once more (the final state) and waits for the writes in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.queued) {
      clearTimeout(this.queued);
      this.queued = undefined;
    }
    this.chain = this.chain.then(() => this.write());
    await this.chain;
  }

  private async write(): Promise<void> {
    try {
      await writeStatusFile(this.dir(), this.build());
      this.reporter.changed('status', 'ok');
    } catch (err) {
      const why = describeError(err);
      if (this.reporter.changed('status', why))
        this.log.warning(`cannot write the status file for \`wg-overlay status\`: ${why}`);
    }
  }
}
