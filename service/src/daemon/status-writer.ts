/**
 * The status-file writer: `<runtime_dir>/status.json` for `wg-overlay status`, written a moment
 * after a change (a burst shares one write), off the path of the live apply, never overlapping;
 * and what a running reconcile loop puts into every status snapshot.
 */
import { describeError, type Logger } from '../log/logger.js';
import { writeStatusFile, type SnapshotInput, type StatusSnapshot } from '../status/snapshot.js';
import { StateReporter } from '../util/backoff.js';
import { DebouncedWriter } from '../util/debounced-writer.js';
import type { EndpointWatch } from './endpoint-watch.js';
import type { ReconcileLoop } from './loop.js';
import type { Part } from './part.js';
import type { WatchHealth } from './watch-health.js';

/** Where a status snapshot goes (the runtime directory, asked each time) and how it is built. */
export interface StatusSource {
  dir(): string;
  build(): StatusSnapshot;
}

/** What the reconcile loop, the watches and endpoint failover put into a status snapshot, as of now. */
export function runningStatus(
  loop: ReconcileLoop,
  health: WatchHealth,
  endpoints: EndpointWatch | undefined,
): Pick<SnapshotInput, 'lastReport' | 'lastSuccessAt' | 'busySince' | 'watch' | 'now' | 'pid' | 'failover'> {
  return {
    lastReport: loop.lastReport,
    lastSuccessAt: loop.lastSuccessAt,
    busySince: loop.busySince,
    watch: health.snapshot(),
    now: Date.now(),
    pid: process.pid,
    failover: (name) => endpoints?.describe(name),
  };
}

/** Writes the snapshot the source builds into the directory it names. */
export class StatusWriter implements Part {
  readonly name = 'status writer';
  private readonly writer: DebouncedWriter<void>;
  private readonly reporter = new StateReporter();

  /** `delayMs`: how long a change waits for more before the file is written (asked each time). */
  constructor(
    private readonly source: StatusSource,
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
      await writeStatusFile(this.source.dir(), this.source.build());
      this.reporter.changed('status', 'ok');
    } catch (err) {
      const why = describeError(err);
      if (this.reporter.changed('status', why))
        this.log.warning(`cannot write the status file for \`wg-overlay status\`: ${why}`);
    }
  }
}
