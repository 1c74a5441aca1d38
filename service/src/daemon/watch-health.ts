/**
 * The one tracker of API watch health, for Nodes and external peers alike: each source's state
 * and since when, which feeds the status file, the watch metrics and the `/healthz` verdict.
 */
import { describeApiError } from '../kube/api-errors.js';
import type { SourceState } from '../kube/source.js';
import type { WatchStatus } from '../status/snapshot.js';

/** The resources the daemon watches. */
export type WatchedResource = 'nodes' | 'peers';

/** Tracks the state of the Node and the external-peer sources. */
export class WatchHealth {
  private readonly state: Record<WatchedResource, WatchStatus>;
  private readonly listeners: Array<(which: WatchedResource, s: WatchStatus) => void> = [];

  constructor(private readonly now: () => number = Date.now) {
    const t = now();
    this.state = { nodes: { state: 'starting', since: t }, peers: { state: 'starting', since: t } };
  }

  /** Calls `fn` after every report. */
  onReport(fn: (which: WatchedResource, s: WatchStatus) => void): void {
    this.listeners.push(fn);
  }

  /** Records a source's state (`since` moves only when the state changes). */
  report(which: WatchedResource, state: SourceState, err?: unknown): void {
    const cur = this.state[which];
    const error = err === undefined || state === 'up' ? undefined : describeApiError(err);
    if (cur.state !== state || cur.error !== error) {
      this.state[which] = { state, since: cur.state === state ? cur.since : this.now(), ...(error ? { error } : {}) };
    }
    for (const fn of this.listeners) fn(which, this.state[which]);
  }

  /** Both sources' states, for the status file. */
  snapshot(): Record<WatchedResource, WatchStatus> {
    return { nodes: { ...this.state.nodes }, peers: { ...this.state.peers } };
  }

  /** Milliseconds a source has been down (or never up), 0 when up or when the Peer CRD is absent. */
  downForMs(which: WatchedResource): number {
    const s = this.state[which];
    return s.state === 'down' || s.state === 'starting' ? this.now() - s.since : 0;
  }

  /** Whether a source counts as connected (up, or the Peer CRD is simply not installed). */
  isUp(which: WatchedResource): boolean {
    const s = this.state[which].state;
    return s === 'up' || s === 'absent';
  }
}
