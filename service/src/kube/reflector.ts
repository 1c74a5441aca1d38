/**
 * A list-and-watch loop that keeps only what the mesh uses: it lists in pages (`limit`/`continue`),
 * translating each item at once so no full API object outlives its page, then watches from the
 * list's resourceVersion with bookmarks, reporting each added, changed or deleted object on its
 * own. A dropped watch resumes from the last resourceVersion it saw (no re-list, so thousands of
 * daemons coming back after an outage do not all list at once); only 410 Gone re-lists. Retries
 * use capped backoff with jitter, and a watch that goes silent is replaced.
 */
import type { Logger } from '../log/logger.js';
import { Backoff } from '../util/backoff.js';
import { describeApiError, httpStatus } from './api-errors.js';
import type { Query, WatchHandle } from './api-http.js';

/** One page of a list, as the API server answers it (raw JSON). */
export interface ListPage {
  items?: unknown[];
  metadata?: { resourceVersion?: string; continue?: string };
}

/** How the reflector reaches the API (tests give fakes). */
export interface ReflectorApi {
  list(query: Query): Promise<ListPage>;
  watch(
    query: Query,
    onEvent: (event: { type?: string; object?: unknown }) => void,
    onEnd: (err?: unknown) => void,
    onOpen?: () => void,
  ): Promise<WatchHandle>;
}

/** What the reflector reports to its owner. */
export interface ReflectorHooks<T> {
  /** The complete current list, after every (re)list. */
  onList(items: T[]): void;
  /** One object added or changed (`item` undefined: it can no longer be used, as if deleted). */
  onChange(name: string, item: T | undefined): void;
  /** Listed and watching again. */
  onUp(): void;
  /** Listing or watching failed; returns the delay before trying again, or undefined for the backoff. */
  onError(err: unknown, nextBackoffMs: number): number | undefined;
}

/** Options of the reflector. */
export interface ReflectorOptions<T> {
  api: ReflectorApi;
  /** Raw API object → what the mesh keeps (undefined: unusable). */
  translate(raw: unknown): T | undefined;
  log: Logger;
  /** Names the loop in log lines ("node watch"). */
  what: string;
  pageSize?: number;
  /** The server ends each watch after about this long (jittered), and the loop resumes it. */
  watchSeconds?: number;
  /** A watch with no event or bookmark for this long is replaced (ms). */
  silentMs?: number;
  /** Capped backoff (jitter is added). */
  backoff?: Backoff;
  random?: () => number;
}

const nameOf = (raw: unknown): string | undefined => {
  const n = (raw as { metadata?: { name?: unknown } } | undefined)?.metadata?.name;
  return typeof n === 'string' ? n : undefined;
};
const versionOf = (raw: unknown): string | undefined => {
  const v = (raw as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion;
  return typeof v === 'string' ? v : undefined;
};

/**
 * Lists every page, translating items as they come (no page outlives its translation); the next
 * page is asked for before this one is translated, so the server sends it meanwhile.
 */
export async function listPages<T>(
  list: ReflectorApi['list'],
  translate: (raw: unknown) => T | undefined,
  pageSize: number,
): Promise<{ items: T[]; version: string | undefined; pages: number }> {
  const items: T[] = [];
  let next: string | undefined;
  let version: string | undefined;
  let pages = 0;
  let coming: Promise<ListPage> = list({ limit: pageSize });
  do {
    pages += 1;
    const page = await coming;
    version ??= page.metadata?.resourceVersion;
    next = page.metadata?.continue || undefined;
    if (next) {
      coming = list({ limit: pageSize, continue: next });
      coming.catch(() => undefined); // its failure is reported where it is awaited
    }
    for (const raw of page.items ?? []) {
      const t = translate(raw);
      if (t !== undefined) items.push(t);
    }
  } while (next);
  return { items, version, pages };
}

/** A list-and-watch loop over one resource. */
export class Reflector<T> {
  private hooks: ReflectorHooks<T> | undefined;
  private stopped = false;
  private version: string | undefined;
  private watchHandle: WatchHandle | undefined;
  private timer: NodeJS.Timeout | undefined;
  private silence: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  /** True after a failure, until listing or watching works again (then `onUp`). */
  private down = false;
  /** List requests made (each page counts), for the API-load figures. */
  listRequests = 0;
  /** Watch requests made. */
  watchRequests = 0;

  constructor(private readonly o: ReflectorOptions<T>) {
    this.backoff = o.backoff ?? new Backoff(500, 30_000);
    this.random = o.random ?? Math.random;
  }

  /** Starts listing and watching, reporting to `hooks`. */
  start(hooks: ReflectorHooks<T>): void {
    this.hooks = hooks;
    void this.relist();
  }

  /** Stops for good. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.silence);
    this.watchHandle?.abort();
  }

  private async relist(): Promise<void> {
    if (this.stopped) return;
    let items: T[];
    try {
      ({ items, version: this.version } = await this.listAll());
    } catch (err) {
      this.failed(err, () => this.relist());
      return;
    }
    if (this.stopped) return;
    this.backoff.reset();
    this.down = false;
    this.hooks!.onList(items);
    this.hooks!.onUp();
    void this.watch();
  }

  private async listAll(): Promise<{ items: T[]; version: string | undefined }> {
    const t0 = performance.now();
    const r = await listPages(this.o.api.list, this.o.translate, this.o.pageSize ?? 250);
    this.listRequests += r.pages;
    const ms = Math.round(performance.now() - t0);
    this.o.log.info(`${this.o.what}: listed ${r.items.length} (${r.pages} pages) in ${ms} ms`);
    return r;
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    const seconds = Math.round((this.o.watchSeconds ?? 300) * (0.8 + 0.4 * this.random()));
    let expired = false;
    let gotEvent = false;
    const onEvent = (event: { type?: string; object?: unknown }): void => {
      this.heard();
      if (event.type === 'ERROR') {
        if (httpStatus(event.object) === 410 || (event.object as { code?: number } | undefined)?.code === 410)
          expired = true;
        return;
      }
      const version = versionOf(event.object);
      if (version) this.version = version;
      if (event.type === 'BOOKMARK') return;
      gotEvent = true;
      const name = nameOf(event.object);
      if (name === undefined) return;
      this.hooks!.onChange(name, event.type === 'DELETED' ? undefined : this.o.translate(event.object));
    };
    const onEnd = (err?: unknown): void => {
      clearTimeout(this.silence);
      if (this.stopped) return;
      if (expired || httpStatus(err) === 410) {
        this.o.log.debug(`${this.o.what}: resourceVersion ${this.version ?? '?'} expired (410): listing again`);
        this.later(this.jitter(200), () => this.relist());
      } else if (err) {
        this.failed(err, () => this.watch());
      } else {
        if (gotEvent) this.backoff.reset();
        void this.watch(); // the server ended it (timeout): resume from the last version
      }
    };
    try {
      this.watchRequests += 1;
      const onOpen = (): void => {
        if (!this.down) return;
        this.down = false;
        this.backoff.reset();
        this.hooks!.onUp();
      };
      this.watchHandle = await this.o.api.watch(
        { resourceVersion: this.version, allowWatchBookmarks: true, timeoutSeconds: seconds },
        onEvent,
        onEnd,
        onOpen,
      );
      this.heard();
    } catch (err) {
      this.failed(err, () => this.watch());
    }
  }

  /** Something arrived: the watch is alive; replace it if it stays silent too long. */
  private heard(): void {
    clearTimeout(this.silence);
    const limit = this.o.silentMs ?? ((this.o.watchSeconds ?? 300) * 1.4 + 30) * 1000;
    this.silence = setTimeout(() => {
      this.o.log.debug(`${this.o.what}: nothing heard for ${Math.round(limit / 1000)} s; watching again`);
      this.watchHandle?.abort();
    }, limit);
  }

  private failed(err: unknown, retry: () => Promise<void>): void {
    if (this.stopped) return;
    this.down = true;
    const backoffMs = this.jitter(this.backoff.next());
    const ms = this.hooks!.onError(err, backoffMs) ?? backoffMs;
    this.o.log.debug(`${this.o.what} failed (${describeApiError(err)}); trying again in ${ms} ms`);
    this.later(ms, retry);
  }

  /** ±25 % jitter, so many daemons do not retry in step. */
  private jitter(ms: number): number {
    return Math.round(ms * (0.75 + 0.5 * this.random()));
  }

  private later(ms: number, fn: () => Promise<void>): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      void fn();
    }, ms);
  }
}
