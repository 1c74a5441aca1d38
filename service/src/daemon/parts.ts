/**
 * Small daemon parts that wrap a source, a monitor or a timer so the daemon can start and stop
 * them like every other part.
 */
import type { Source, SourceHandler } from '../kube/source.js';
import { describeError, type Logger } from '../log/logger.js';
import { formatMs } from '../util/duration.js';
import type { Part } from './part.js';

/** A Node or external-peer source as a part. */
export class SourcePart<T> implements Part {
  constructor(
    readonly name: string,
    private readonly source: Source<T>,
    private readonly handler: SourceHandler<T>,
  ) {}

  start(): void {
    this.source.start(this.handler);
  }

  stop(): Promise<void> {
    return this.source.stop();
  }
}

/** Calls `fn` after `ms` once (`repeat` false) or every `ms` (`repeat` true), until stopped. */
export class Timer implements Part {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    private readonly ms: number,
    private readonly repeat: boolean,
    private readonly fn: () => void,
  ) {}

  start(): void {
    this.timer = this.repeat ? setInterval(this.fn, this.ms) : setTimeout(this.fn, this.ms);
  }

  stop(): void {
    clearTimeout(this.timer); // clears an interval too
  }
}

/** Something started by a function that returns its stopper (a monitor, a connection). */
export class StartedPart implements Part {
  private handle: { stop(): void } | undefined;

  constructor(
    readonly name: string,
    private readonly begin: () => { stop(): void },
  ) {}

  start(): void {
    this.handle = this.begin();
  }

  stop(): void {
    this.handle?.stop();
  }
}

/** Runs `stop` when the daemon stops (a connection or co-process opened before the start). */
export class Closer implements Part {
  constructor(
    readonly name: string,
    private readonly close: () => void | Promise<void>,
  ) {}

  start(): void {}

  stop(): void | Promise<void> {
    return this.close();
  }
}

/** Stops every part in reverse order, each within `limitMs`, logging any that fails or hangs. */
export async function stopAll(parts: readonly Part[], log: Logger, limitMs: number): Promise<void> {
  for (const part of [...parts].reverse()) {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), limitMs);
    });
    try {
      const outcome = await Promise.race([Promise.resolve(part.stop()).then(() => 'ok' as const), late]);
      if (outcome === 'late')
        log.warning(`stopping the ${part.name} took longer than ${formatMs(limitMs)}; going on without it`);
      else log.debug(`stopped the ${part.name}`);
    } catch (err) {
      log.error(`stopping the ${part.name}: ${describeError(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Starts `parts` in order, adding each to `started`; when one cannot start, stops those already
 * started (each within `limitMs`) and throws its error.
 */
export async function startAll(parts: readonly Part[], started: Part[], log: Logger, limitMs: number): Promise<void> {
  for (const part of parts) {
    try {
      await part.start();
    } catch (err) {
      log.error(`starting the ${part.name}: ${describeError(err)}`);
      await stopAll(started, log, limitMs);
      throw err;
    }
    started.push(part);
    log.debug(`started the ${part.name}`);
  }
}
