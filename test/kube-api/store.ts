/*
 * The object store behind the test API server, playing etcd's part: objects per resource type,
 * one global resourceVersion counter, an ordered event history with a retention limit and
 * compaction (so old resourceVersions expire with 410), point-in-time snapshots for
 * `resourceVersionMatch=Exact` and list continuation, and synchronous change subscribers
 * that the watch streams hang off.
 */
import { clone } from './json.js';
import type { KubeObject } from './registry.js';
import { ApiError, expired } from './status.js';

/** The kind of change a watch event reports. */
export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One committed change: the object after it (for DELETED: the last state, carrying the delete's version) and before it. */
export interface StoreEvent {
  rv: number;
  resource: string;
  key: string;
  type: EventType;
  object: KubeObject;
  prev?: KubeObject;
}

/** Objects, resourceVersions and event history for every resource type of one server. */
export class ObjectStore {
  /** The latest resourceVersion handed out. */
  rv = 1;
  /** Watches and exact reads need resourceVersion >= this; older ones answer 410 Expired. */
  compactedRv = 1;
  private readonly data = new Map<string, Map<string, KubeObject>>();
  private history: StoreEvent[] = [];
  private readonly listeners = new Set<(e: StoreEvent) => void>();

  constructor(readonly historyLimit = 10000) {}

  private bucket(resource: string): Map<string, KubeObject> {
    let b = this.data.get(resource);
    if (!b) {
      b = new Map();
      this.data.set(resource, b);
    }
    return b;
  }

  /** A copy of the object stored under `key`, or undefined. */
  get(resource: string, key: string): KubeObject | undefined {
    return clone(this.data.get(resource)?.get(key));
  }

  /** Copies of all objects of a resource type, sorted by key. */
  list(resource: string): KubeObject[] {
    return this.listShared(resource).map((o) => clone(o));
  }

  /**
   * The stored objects themselves (not copies), sorted by key: for callers that only read them
   * and copy what they hand out (a list page copies its page, not the whole collection).
   */
  listShared(resource: string): readonly KubeObject[] {
    const b = this.data.get(resource);
    if (!b) return [];
    return [...b.keys()].sort().map((k) => b.get(k) as KubeObject);
  }

  /** Copies of the objects of a resource type as they were at resourceVersion `at` (410 if history no longer reaches back). */
  snapshot(resource: string, at: number): KubeObject[] {
    return this.snapshotShared(resource, at).map((o) => clone(o));
  }

  /** The objects (not copies) of a resource type as they were at `at`, sorted by key (410 if expired). */
  snapshotShared(resource: string, at: number): readonly KubeObject[] {
    this.checkRetained(at);
    const state = new Map(this.data.get(resource) ?? []);
    for (let i = this.history.length - 1; i >= 0; i--) {
      const e = this.history[i] as StoreEvent;
      if (e.rv <= at) break;
      if (e.resource !== resource) continue;
      if (e.prev) state.set(e.key, e.prev);
      else state.delete(e.key);
    }
    return [...state.keys()].sort().map((k) => state.get(k) as KubeObject);
  }

  /** Throws 410 Expired when events after `from` are no longer all retained, 504 when `from` is in the future. */
  checkRetained(from: number): void {
    if (from < this.compactedRv) throw expired(from, this.compactedRv);
    if (from > this.rv) {
      throw new ApiError(504, 'Timeout', `Too large resource version: ${from}, current: ${this.rv}`, {
        causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
        retryAfterSeconds: 1,
      });
    }
  }

  /** Events of a resource type after resourceVersion `from`, oldest first (410 if expired). */
  eventsSince(resource: string, from: number): StoreEvent[] {
    this.checkRetained(from);
    return this.history.filter((e) => e.rv > from && e.resource === resource).map((e) => clone(e));
  }

  /** Stores `obj` (ADDED/MODIFIED) or removes the object (DELETED), assigning the next resourceVersion; returns the event. */
  commit(resource: string, key: string, type: EventType, obj: KubeObject): StoreEvent {
    const b = this.bucket(resource);
    const prev = b.get(key);
    const rv = ++this.rv;
    const stored = clone(obj);
    stored.metadata = { ...(stored.metadata ?? {}), resourceVersion: String(rv) };
    if (type === 'DELETED') b.delete(key);
    else b.set(key, stored);
    const event: StoreEvent = { rv, resource, key, type, object: stored };
    if (prev) event.prev = prev;
    this.history.push(event);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift() as StoreEvent;
      this.compactedRv = dropped.rv;
    }
    for (const l of [...this.listeners]) l(clone(event));
    return clone(event);
  }

  /** Forgets all history: every resourceVersion handed out so far becomes too old (like an etcd compaction past them). */
  expire(): void {
    this.rv += 1;
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** Calls `fn` synchronously for every committed event; returns the unsubscribe function. */
  subscribe(fn: (e: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
