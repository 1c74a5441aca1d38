/**
 * The status-file writer: `<runtime_dir>/status.json` for `wg-overlay status`, written a moment
 * after a change (a burst shares one write), off the path of the live apply, never overlapping.
 */
import { describeError, type Logger } from '../log/logger.js';
import { writeStatusFile, type StatusSnapshot } from '../status/snapshot.js';
import { StateReporter } from '../util/backoff.js';
import { DebouncedWriter } from '../util/debounced-writer.js';
import type { Part } from './part.js';

/** Writes the snapshot `build()` returns into the directory `dir()` names. */
export class StatusWriter implements Part {
  readonly name = 'status writer';
  private readonly writer: DebouncedWriter<void>;
  private readonly reporter = new StateReporter();

  /** `delayMs`: how long a change waits for more before the file is written (asked each time). */
  constructor(
    private readonly dir: () => string,
    private readonly build: () => StatusSnapshot,
    private readonly log: Logger,
    delayMs: () => number = () => 200,
  ) {
    this.writer = new DebouncedWriter({ write: () => this.write(), delayMs });
  }

  start(): void {
    this.changed();
  }

  /** Asks for a write shortly. */
  changed(): void {
    void this.writer.changed();
  }

  /** Writes once more (the final state) and waits for the writes in progress. */
  async stop(): Promise<void> {
    await this.writer.stop();
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
