/**
 * DNS names the mesh needs as addresses (external peers' endpoints, this node's explicit endpoint):
 * each is resolved with a timeout, re-resolved periodically, and retried sooner while it fails. A
 * name that never resolved is absent (its Peer is left out with that reason); one that resolved
 * before keeps its last address through a failed refresh, with a warning.
 */
import { describeError, type Logger } from '../log/logger.js';
import { StateReporter } from '../util/backoff.js';
import { formatMs } from '../util/duration.js';
import type { Part } from './part.js';

/** Options of the resolver (ms). */
export interface ResolverTiming {
  timeout: number;
  refresh: number;
  retry: number;
}

const DEFAULT_TIMING: ResolverTiming = { timeout: 5_000, refresh: 300_000, retry: 30_000 };

/** Resolves the names it is given and says when an answer changed. */
export class NameResolver implements Part {
  readonly name = 'name resolver';
  private readonly wanted = new Set<string>();
  private readonly addresses = new Map<string, string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly reporter = new StateReporter();
  private readonly timing: ResolverTiming;
  private stopped = false;
  private snapshot: ReadonlyMap<string, string> = new Map();

  /** `lookup` returns the addresses of a name (IPv4 first); `onChange` runs when an address changes. */
  constructor(
    private readonly lookup: (name: string) => Promise<string[]>,
    private readonly log: Logger,
    private readonly onChange: () => void,
    timing: Partial<ResolverTiming> = {},
  ) {
    this.timing = { ...DEFAULT_TIMING, ...timing };
  }

  start(): void {}

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** The names resolved so far (a new map object after every change). */
  get resolved(): ReadonlyMap<string, string> {
    return this.snapshot;
  }

  /** Sets the names needed now: new ones are resolved at once, others forgotten. */
  want(names: Iterable<string>): void {
    const next = new Set(names);
    let changed = false;
    for (const name of [...this.wanted]) {
      if (next.has(name)) continue;
      this.wanted.delete(name);
      clearTimeout(this.timers.get(name));
      this.timers.delete(name);
      changed = this.addresses.delete(name) || changed;
    }
    for (const name of next) {
      if (this.wanted.has(name)) continue;
      this.wanted.add(name);
      void this.resolve(name);
    }
    if (changed) this.publish();
  }

  private async resolve(name: string): Promise<void> {
    if (this.stopped || !this.wanted.has(name)) return;
    let next: string | undefined;
    let failure: string | undefined;
    try {
      next = (await this.withTimeout(this.lookup(name), name))[0];
      if (next === undefined) failure = 'no address';
    } catch (err) {
      failure = describeError(err);
    }
    if (this.stopped || !this.wanted.has(name)) return;
    const before = this.addresses.get(name);
    if (next !== undefined) {
      if (this.reporter.changed(name, `ok ${next}`)) this.log.info(`resolved ${name} to ${next}`);
      this.addresses.set(name, next);
    } else if (this.reporter.changed(name, 'failed')) {
      const meanwhile = before
        ? `; keeping its last address ${before}`
        : '; what needs it is left out until it resolves';
      this.log.warning(
        `cannot resolve ${name} (${failure})${meanwhile}; trying again in ${formatMs(this.timing.retry)}`,
      );
    }
    this.timers.set(
      name,
      setTimeout(
        () => {
          void this.resolve(name);
        },
        next !== undefined ? this.timing.refresh : this.timing.retry,
      ),
    );
    if (this.addresses.get(name) !== before) this.publish();
  }

  private withTimeout<T>(p: Promise<T>, name: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer for ${name} within ${formatMs(this.timing.timeout)}`)),
        this.timing.timeout,
      );
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  private publish(): void {
    this.snapshot = new Map(this.addresses);
    this.onChange();
  }
}
