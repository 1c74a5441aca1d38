/**
 * Durations for log lines: whole seconds from one second up, milliseconds below.
 */

/** Formats a duration in ms as `250 ms` or `10 s`. */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${Math.round(ms / 1000)} s`;
}
