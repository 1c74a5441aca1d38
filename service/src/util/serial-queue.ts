/**
 * Tasks that must never overlap (writes of one file, moves of one server, reloads of one config)
 * run one at a time, in the order they were asked for.
 */

/** Runs tasks one at a time, in order; a task that fails does not stop the ones after it. */
export class SerialQueue {
  private tail: Promise<void> = Promise.resolve();

  /** Runs `task` once every task queued before it has settled; resolves or rejects as the task does. */
  run<T>(task: () => T | Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Resolves once every task queued so far has settled (never rejects). */
  idle(): Promise<void> {
    return this.tail;
  }
}
