/**
 * What the Node and external-peer sources have in common: the state they report, the handler
 * they report to, and the start/stop contract the daemon drives them by.
 */

/** The state of one API source: listed and watching, failing, or (external peers only) not served. */
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
