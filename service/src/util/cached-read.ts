/**
 * A read shared by its callers: one at a time, and its answer reused for a short while, so that
 * many concurrent scrapes cost one `wg show` every few seconds at most.
 */

/** Runs `read` at most once per `ttlMs`; callers meanwhile share the answer (or the read in flight). */
export class CachedRead<T> {
  private last: { at: number; value: Promise<T>; settled: boolean } | undefined;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The latest answer, reading again when it is older than the time to live, or than `maxAgeMs`
   * for a caller that needs a fresher one (a failed read is not kept). A read in flight is shared
   * whatever the caller asks.
   */
  get(maxAgeMs = this.ttlMs): Promise<T> {
    const t = this.now();
    if (this.last && (!this.last.settled || t - this.last.at < Math.min(maxAgeMs, this.ttlMs))) return this.last.value;
    const value = this.read();
    const entry = { at: t, value, settled: false };
    this.last = entry;
    value.then(
      () => {
        entry.settled = true;
        entry.at = this.now();
      },
      () => {
        if (this.last === entry) this.last = undefined;
      },
    );
    return value;
  }
}
