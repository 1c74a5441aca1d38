/**
 * The sources of API objects the daemon follows (Nodes, external peers): the state they report,
 * the handler they report to, and the two generic sources every kind is made of, one backed by
 * the reflector (a paged list, then a watch that resumes) and one that lists on an interval. A
 * kind gives its API, its translation, the words its state changes are logged in, whether changes
 * come one by one or as whole lists, and whether its resource may be absent (an optional CRD).
 */
import type { Logger } from '../log/logger.js';
import { Poller } from '../util/backoff.js';
import { isNotFound } from './api-errors.js';
import { listPages, Reflector, type ReflectorApi } from './reflector.js';

/** The state of one API source: listed and watching, failing, or (an optional resource only) not served. */
export type SourceState = 'up' | 'down' | 'absent';

/** Callbacks a source reports to. */
export interface SourceHandler<T> {
  /** The complete current list (after a list or re-list; sources without `onChange` support report every change so). */
  onList(items: T[]): void;
  /** One object added or changed, or deleted (`item` undefined); without it, changes come as whole lists. */
  onChange?(name: string, item: T | undefined): void;
  /** The source's state changed or was confirmed (with the error when down or absent). */
  onState(state: SourceState, error?: unknown): void;
}

/** Discovers one kind of object; `start` begins reporting to the handler, `stop` ends it. */
export interface Source<T> {
  start(handler: SourceHandler<T>): void;
  stop(): Promise<void>;
}

/** How a source follows its collection: a list then a watch, or a list every `intervalMs` (API endpoints that cannot watch). */
export type Discovery = { mode: 'watch' } | { mode: 'list'; intervalMs: number };

/** Logs a source's state in its kind's own words, once per change rather than once per retry (operators grep these lines). */
export interface StateLog {
  /** Told every report of `state` (with the error when down or absent); logs what changed. */
  record(state: SourceState, error?: unknown): void;
}

/** What a generic source follows, and how it reports. */
export interface SourceOptions<T> {
  api: ReflectorApi;
  log: Logger;
  /** Names the source in the reflector's own (debug) lines, e.g. "node watch". */
  what: string;
  /** Raw API object → what the mesh keeps (undefined: unusable). */
  translate(raw: unknown): T | undefined;
  /** Logs the state changes. */
  states: StateLog;
  /** The resource may not be served (a CRD not installed): a 404 is then `absent` with an empty list, never a failure. */
  optional?: boolean;
}

/** Options of the reflector-backed source. */
export interface ReflectorSourceOptions<T> extends SourceOptions<T> {
  /** `each`: every change reported on its own (`onChange`); `list`: every change reports the whole list. */
  changes: 'each' | 'list';
  /** While an optional resource is absent, how often to look for it again (ms, default 60 s). */
  absentRetryMs?: number;
}

/** Passes a state on to the log and the handler. */
function report<T>(states: StateLog, handler: SourceHandler<T>, state: SourceState, error?: unknown): void {
  states.record(state, error);
  handler.onState(state, error);
}

/** Follows a collection with the reflector: a paged list, then a watch that resumes where it stopped. */
export class ReflectorSource<T extends { name: string }> implements Source<T> {
  private reflector: Reflector<T> | undefined;
  /** The objects as last reported, kept only when changes are reported as whole lists. */
  private readonly items = new Map<string, T>();

  constructor(private readonly o: ReflectorSourceOptions<T>) {}

  /** API requests made so far (list pages and watches), for the load figures. */
  get requests(): { list: number; watch: number } {
    return { list: this.reflector?.listRequests ?? 0, watch: this.reflector?.watchRequests ?? 0 };
  }

  start(handler: SourceHandler<T>): void {
    const { api, translate, log, what } = this.o;
    this.reflector = new Reflector<T>({ api, translate, log, what });
    this.reflector.start({
      onList: (items) => this.listed(handler, items),
      onChange: (name, item) => this.changed(handler, name, item),
      onUp: () => report(this.o.states, handler, 'up'),
      onError: (err) => this.failed(handler, err),
    });
  }

  async stop(): Promise<void> {
    this.reflector?.stop();
  }

  private listed(handler: SourceHandler<T>, items: T[]): void {
    if (this.o.changes === 'each') {
      handler.onList(items);
      return;
    }
    this.items.clear();
    for (const item of items) this.items.set(item.name, item);
    handler.onList([...this.items.values()]);
  }

  private changed(handler: SourceHandler<T>, name: string, item: T | undefined): void {
    if (this.o.changes === 'each') {
      handler.onChange?.(name, item);
      return;
    }
    if (item) this.items.set(name, item);
    else this.items.delete(name);
    handler.onList([...this.items.values()]);
  }

  /** A failed list or watch: the delay before the next try (undefined: the reflector's backoff). */
  private failed(handler: SourceHandler<T>, err: unknown): number | undefined {
    if (this.o.optional && isNotFound(err)) {
      report(this.o.states, handler, 'absent', err);
      this.listed(handler, []);
      return this.o.absentRetryMs ?? 60_000;
    }
    report(this.o.states, handler, 'down', err);
    return undefined;
  }
}

/** Lists a collection every `intervalMs` (whole lists only); after a failure, sooner, with capped backoff. */
export class PollingSource<T> implements Source<T> {
  private poller: Poller | undefined;

  constructor(private readonly o: SourceOptions<T> & { intervalMs: number }) {}

  start(handler: SourceHandler<T>): void {
    this.poller = new Poller(this.o.intervalMs, () => this.poll(handler));
    this.poller.start();
  }

  async stop(): Promise<void> {
    this.poller?.stop();
  }

  private async poll(handler: SourceHandler<T>): Promise<void> {
    let items: T[];
    try {
      ({ items } = await listPages(this.o.api.list, this.o.translate, 500));
    } catch (err) {
      if (!(this.o.optional && isNotFound(err))) {
        report(this.o.states, handler, 'down', err);
        throw err; // the poller retries sooner
      }
      report(this.o.states, handler, 'absent', err);
      handler.onList([]);
      return;
    }
    report(this.o.states, handler, 'up');
    handler.onList(items);
  }
}

/** The generic source `discovery` asks for, configured by `o` (the list source ignores `changes` and `absentRetryMs`). */
export function openSource<T extends { name: string }>(discovery: Discovery, o: ReflectorSourceOptions<T>): Source<T> {
  return discovery.mode === 'watch'
    ? new ReflectorSource(o)
    : new PollingSource({ ...o, intervalMs: discovery.intervalMs });
}
