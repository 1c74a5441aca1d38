/**
 * Capped exponential backoff and a "log once per state change" helper, so a flapping API
 * server produces one line when it goes down and one when it comes back, not one per retry.
 */

/** Capped exponential backoff: 0.5 s, 1 s, 2 s … up to `maxMs`. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs = 500,
    private readonly maxMs = 30_000,
  ) {}

  /** The delay before the next try; grows with each call. */
  next(): number {
    const ms = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return ms;
  }

  /** Starts again from the base delay (after a success). */
  reset(): void {
    this.attempt = 0;
  }
}

/** Remembers the last reported state per key and says whether a new report is a change. */
export class StateReporter {
  private readonly last = new Map<string, string>();

  /** True (and remembers it) when `state` differs from what was last reported for `key`. */
  changed(key: string, state: string): boolean {
    if (this.last.get(key) === state) return false;
    this.last.set(key, state);
    return true;
  }

  /** Forgets a key, so the next report is logged again. */
  clear(key: string): void {
    this.last.delete(key);
  }
}

/** Resolves after `ms` milliseconds; rejects early if the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new Error('aborted'));
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Runs `tick` now and then every `intervalMs`; after a tick that throws, sooner, with capped backoff. */
export class Poller {
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly backoff = new Backoff(500, 30_000);

  constructor(
    private readonly intervalMs: number,
    private readonly tick: () => Promise<void>,
  ) {}

  /** Starts ticking. */
  start(): void {
    void this.run();
  }

  /** Stops after the tick in progress, if any. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async run(): Promise<void> {
    if (this.stopped) return;
    let delay = this.intervalMs;
    try {
      await this.tick();
      this.backoff.reset();
    } catch {
      delay = Math.min(this.intervalMs, this.backoff.next());
    }
    if (!this.stopped)
      this.timer = setTimeout(() => {
        void this.run();
      }, delay);
  }
}
