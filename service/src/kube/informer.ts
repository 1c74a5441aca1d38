/**
 * A client-node informer that keeps itself alive: client-node's informer re-lists on 410 and
 * re-watches after idle timeouts, but stops for good on other errors and can hang in start()
 * when a connection never completes. This wrapper restarts it with backoff (or the delay its
 * owner asks for), and gives up on a start that hangs and launches a fresh informer instead.
 * The Node and Peer sources are both built on it.
 */
import * as k8s from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { Backoff } from '../util/backoff.js';

/** What a restarting informer reports to its owner. */
export interface InformerHooks<T> {
  /** The complete current object list, after the first sync and after every change. */
  onList(items: readonly T[]): void;
  /** The informer listed and is watching (after a start or a restart). */
  onUp(): void;
  /** It stopped on an error; returns the delay before starting again, or undefined for the backoff. */
  onError(err: unknown, nextBackoffMs: number): number | undefined;
}

type CachedInformer<T extends k8s.KubernetesObject> = k8s.Informer<T> & k8s.ObjectCache<T>;

/** Seams for tests: how informers are made, and the backoff between restarts. */
export interface RestartingInformerOptions<T extends k8s.KubernetesObject> {
  /** Makes the client-node informer (default `k8s.makeInformer`). */
  makeInformer?: (kc: k8s.KubeConfig, path: string, list: () => Promise<k8s.KubernetesListObject<T>>) => CachedInformer<T>;
  /** Delays between restarts (default 0.5 s, doubling up to 30 s). */
  backoff?: Backoff;
}

/** Default limit for a (re)start before it is given up (it doubles with each start given up in a row). */
export const INFORMER_START_TIMEOUT_MS = 15_000;

/** An informer on one API path that restarts itself after errors and hung starts. */
export class RestartingInformer<T extends k8s.KubernetesObject> {
  private informer: CachedInformer<T> | undefined;
  private hooks: InformerHooks<T> | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  /** Starts given up on in a row: each doubles the next start's limit. */
  private stuckInARow = 0;

  /** `what` names the informer in log lines (e.g. "node watch"). */
  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly path: string,
    private readonly list: () => Promise<k8s.KubernetesListObject<T>>,
    private readonly log: Logger,
    private readonly what: string,
    private readonly startTimeoutMs = INFORMER_START_TIMEOUT_MS,
    private readonly options: RestartingInformerOptions<T> = {},
  ) {
    this.backoff = options.backoff ?? new Backoff(500, 30_000);
  }

  /** Starts reporting to `hooks`. */
  start(hooks: InformerHooks<T>): void {
    this.hooks = hooks;
    this.launch();
  }

  /** Stops for good (an informer stopping reports an abort as an error: it is ignored). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.informer?.stop();
  }

  /** Makes a fresh informer (also in place of one whose start hangs) and starts it. */
  private launch(): void {
    if (this.stopped) return;
    const informer = (this.options.makeInformer ?? k8s.makeInformer)(this.kc, this.path, this.list);
    this.informer = informer;
    const current = (): boolean => !this.stopped && this.informer === informer;
    const emit = (): void => { if (current()) this.hooks!.onList(informer.list()); };
    informer.on('add', emit);
    informer.on('update', emit);
    informer.on('delete', emit);
    informer.on('error', (err: unknown) => {
      if (current()) this.retryLater(informer, emit, err);
    });
    void this.run(informer, emit);
  }

  private retryLater(informer: CachedInformer<T>, emit: () => void, err: unknown): void {
    const backoffMs = this.backoff.next();
    const ms = this.hooks!.onError(err, backoffMs) ?? backoffMs;
    this.log.debug(`${this.what} stopped; restarting in ${ms} ms`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { void this.run(informer, emit); }, ms);
  }

  private async run(informer: CachedInformer<T>, emit: () => void): Promise<void> {
    if (this.stopped || this.informer !== informer) return;
    let failed = false;
    const onErr = (): void => { failed = true; };
    informer.on('error', onErr);
    // A request whose connection never completes holds start() until the kernel gives up, and
    // client-node cannot abort it: leave that informer behind and start a fresh one.
    const limit = Math.min(this.startTimeoutMs * 2 ** this.stuckInARow, 300_000);
    const stuck = setTimeout(() => {
      if (this.stopped || this.informer !== informer) return;
      this.informer = undefined;
      this.stuckInARow += 1;
      const ms = this.backoff.next();
      this.log.debug(`${this.what}: no answer from the API server within ${Math.round(limit / 1000)} s; starting over in ${ms} ms`);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.launch(), ms);
    }, limit);
    try {
      await informer.start();
    } catch (err) {
      failed = true;
      if (!this.stopped && this.informer === informer) this.retryLater(informer, emit, err);
    } finally {
      clearTimeout(stuck);
      informer.off('error', onErr);
    }
    if (this.stopped || this.informer !== informer) {
      // A replaced informer whose start came through late, or a start that completed after
      // stop(): client-node opens the watch even so, and nothing else would ever close it.
      void informer.stop();
      return;
    }
    if (!failed && !this.stopped) {
      this.backoff.reset();
      this.stuckInARow = 0;
      this.hooks!.onUp();
      emit();
    }
  }
}
