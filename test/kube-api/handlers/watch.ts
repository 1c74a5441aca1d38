/*
 * Watch: chunked streams of newline-delimited JSON events. A stream starts with synthetic ADDED
 * events for the current objects (no resourceVersion, or sendInitialEvents) or with the history
 * after a resourceVersion (one ERROR 410 event when that is compacted away), then follows the
 * store live: objects entering or leaving the selection are ADDED or DELETED, BOOKMARKs come on
 * request, and timeoutSeconds ends the stream normally.
 */
import type * as http from 'node:http';
import type { ResourceRequest } from '../http/context.js';
import { isTrue } from '../http/context.js';
import { renderObject, type Format } from '../http/format.js';
import { clone, isObject } from '../json.js';
import type { KubeObject, Resource } from '../registry.js';
import { ApiError, badRequest, methodNotAllowed } from '../status.js';
import type { ObjectStore, StoreEvent } from '../store.js';
import { listOptions, parseRv } from './reads.js';

/** One event of a watch stream. */
interface WatchEvent {
  type: string;
  object: unknown;
}

/** The watch parameters of a request. */
interface WatchParams {
  /** Replay the history after this resourceVersion (undefined: start with the current objects). */
  from?: number;
  timeoutSeconds: number;
  bookmarks: boolean;
  sendInitial: boolean;
}

type Matcher = (o: KubeObject) => boolean;

/** A watch stream open on one response. */
export class WatchStream {
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe?: () => void;
  private columnsSent = false;
  closed = false;

  constructor(
    readonly res: http.ServerResponse,
    private readonly r: Resource,
    private readonly format: Format,
    private readonly onClose: (w: WatchStream) => void,
  ) {
    res.on('close', () => this.cleanup());
  }

  /** Writes one event line (objects in the stream's format; Tables carry the column definitions once). */
  send(type: string, object: unknown): void {
    if (this.closed) return;
    let out = object;
    if (type !== 'ERROR' && type !== 'BOOKMARK' && isObject(object)) {
      out = renderObject(this.r, object as KubeObject, this.format, !this.columnsSent);
      if (this.format.table) this.columnsSent = true;
    }
    this.res.write(JSON.stringify({ type, object: out }) + '\n');
  }

  /** Writes a BOOKMARK event at resourceVersion `rv`, with these annotations if any. */
  bookmark(rv: number, annotations: Record<string, string> = {}): void {
    this.send('BOOKMARK', {
      kind: this.r.kind,
      apiVersion: this.r.apiVersion,
      metadata: { resourceVersion: String(rv), ...(Object.keys(annotations).length ? { annotations } : {}) },
    });
  }

  /** Attaches the store subscription and timers that keep the stream going. */
  attach(unsubscribe: () => void, timers: NodeJS.Timeout[]): void {
    this.unsubscribe = unsubscribe;
    this.timers = timers;
    if (this.closed) this.cleanup();
  }

  /** Ends the chunked response properly (the client sees a normal end of stream). */
  end(): void {
    if (!this.closed) this.res.end();
    this.cleanup();
  }

  /** Cuts the connection without ending the chunked body (the client sees a broken stream). */
  destroy(): void {
    this.res.socket?.destroy();
    this.res.destroy();
    this.cleanup();
  }

  private cleanup(): void {
    if (this.closed && !this.unsubscribe && this.timers.length === 0) return;
    this.closed = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.onClose(this);
  }
}

/** Closes these streams, gracefully (normal end of stream) or not (connection reset); returns how many there were. */
export function closeWatches(watches: Set<WatchStream>, graceful: boolean): number {
  const ws = [...watches];
  for (const w of ws) {
    if (graceful) w.end();
    else w.destroy();
  }
  return ws.length;
}

/** GET with `?watch=true` or on a `/watch/` path: opens a stream (405 while watches are disabled). */
export function serveWatch(rc: ResourceRequest): void {
  const store = rc.state.store;
  if (!rc.state.faults.watchEnabled) throw methodNotAllowed('watch is disabled on this server');
  const matches = rc.handle.matcher(listOptions(rc.query, rc.namespace, rc.name));
  const p = watchParams(rc.query);
  // Everything up to the subscription happens synchronously, so no event is lost or doubled.
  const initial = initialEvents(store, rc.resource.key, matches, p);
  const w = openStream(rc);
  for (const ev of initial.events) w.send(ev.type, ev.object);
  if (initial.failure) {
    w.send('ERROR', initial.failure.toStatus());
    w.end();
    return;
  }
  if (p.sendInitial && p.bookmarks) w.bookmark(store.rv, { 'k8s.io/initial-events-end': 'true' });
  const unsubscribe = store.subscribe((e) => {
    if (e.resource !== rc.resource.key) return;
    const ev = convertEvent(e, matches);
    if (ev) w.send(ev.type, ev.object);
  });
  w.attach(unsubscribe, streamTimers(rc, w, p));
}

function watchParams(q: URLSearchParams): WatchParams {
  const rvParam = q.get('resourceVersion') ?? '';
  const timeoutParam = q.get('timeoutSeconds');
  const timeoutSeconds = timeoutParam ? Number(timeoutParam) : 0;
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0)
    throw badRequest(`timeoutSeconds: Invalid value: "${timeoutParam ?? ''}"`);
  return {
    timeoutSeconds,
    bookmarks: isTrue(q.get('allowWatchBookmarks')),
    sendInitial: q.get('sendInitialEvents') === 'true',
    from: rvParam === '' || rvParam === '0' ? undefined : parseRv(rvParam),
  };
}

/** What a stream sends before it goes live: ADDED for the current objects, or the history after `from` (or why not). */
function initialEvents(
  store: ObjectStore,
  key: string,
  matches: Matcher,
  p: WatchParams,
): { events: WatchEvent[]; failure?: ApiError } {
  if (p.from === undefined || p.sendInitial) {
    return { events: store.list(key).flatMap((o) => (matches(o) ? [{ type: 'ADDED', object: o }] : [])) };
  }
  try {
    return { events: store.eventsSince(key, p.from).flatMap((e) => convertEvent(e, matches) ?? []) };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return { events: [], failure: err };
  }
}

/** Answers with the headers of a chunked stream and registers the stream with the server. */
function openStream(rc: ResourceRequest): WatchStream {
  rc.res.writeHead(200, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-cache, private',
    'Transfer-Encoding': 'chunked',
  });
  rc.res.flushHeaders();
  rc.req.socket.setNoDelay(true);
  rc.req.socket.setTimeout(0);
  const w = new WatchStream(rc.res, rc.resource, rc.format, (x) => rc.state.watches.delete(x));
  rc.state.watches.add(w);
  return w;
}

/** The stream's timers: its end after timeoutSeconds, and periodic bookmarks (not on Table streams). */
function streamTimers(rc: ResourceRequest, w: WatchStream, p: WatchParams): NodeJS.Timeout[] {
  const timers: NodeJS.Timeout[] = [];
  if (p.timeoutSeconds > 0) timers.push(setTimeout(() => w.end(), p.timeoutSeconds * 1000));
  if (p.bookmarks && !rc.format.table) {
    const t = setInterval(() => w.bookmark(rc.state.store.rv), rc.state.opts.bookmarkIntervalMs);
    t.unref();
    timers.push(t);
  }
  return timers;
}

/** The watch event a stream with this filter sees for a store event (ADDED/DELETED when an object enters or leaves the selection). */
function convertEvent(e: StoreEvent, matches: Matcher): { type: string; object: KubeObject } | undefined {
  if (e.type === 'DELETED') return matches(e.object) ? { type: 'DELETED', object: e.object } : undefined;
  const now = matches(e.object);
  const before = e.prev ? matches(e.prev) : false;
  if (now && !before) return { type: 'ADDED', object: e.object };
  if (now && before) return { type: e.type, object: e.object };
  if (!now && before && e.prev) {
    const gone = clone(e.prev);
    gone.metadata = { ...(gone.metadata ?? {}), resourceVersion: e.object.metadata?.resourceVersion ?? '' };
    return { type: 'DELETED', object: gone };
  }
  return undefined;
}
