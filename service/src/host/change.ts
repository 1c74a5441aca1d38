/**
 * One change a host adapter made, as it is logged: what was done and why.
 */

/** One applied change: `what` is logged as `<what> (why: <why>)` and counted in the run's report. */
export interface AppliedChange {
  what: string;
  why: string;
}
