/**
 * A file kept equal to some state without delaying whoever changes the state: a write happens a
 * moment after a change (a burst of changes shares one write), writes never overlap, and the last
 * state is written on demand (`flush`) and when the owner stops.
 */
import { SerialQueue } from './serial-queue.js';

/** What a debounced writer writes, and when. */
export interface DebouncedWriterOptions<T> {
  /** Writes the current state (read when the write starts); reports its own failures and never rejects. */
  write(): Promise<T>;
  /** How long the first change of a burst waits for more before the write (ms, asked at that change; 0: at once). */
  delayMs(): number;
}

/** Writes a moment after a change, one write at a time. */
export class DebouncedWriter<T> {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly queue = new SerialQueue();

  constructor(private readonly o: DebouncedWriterOptions<T>) {}

  /**
   * Asks for a write: after the delay, shared with the changes that come meanwhile, or, when the
   * delay is 0, at once (the promise then resolves when it is written). Ignored after `stop`.
   */
  async changed(): Promise<void> {
    if (this.stopped || this.timer) return;
    const delay = this.o.delayMs();
    if (delay <= 0) {
      await this.flush();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
  }

  /** Writes now, after any write in progress, instead of the timed write; resolves with what the write returned. */
  flush(): Promise<T> {
    clearTimeout(this.timer);
    this.timer = undefined;
    return this.queue.run(() => this.o.write());
  }

  /** Ends the timed writes, writes once more (the final state) and waits for every write. */
  stop(): Promise<T> {
    this.stopped = true;
    return this.flush();
  }
}
