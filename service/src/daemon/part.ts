/**
 * The contract every long-lived part of the daemon follows: started in order, stopped in reverse.
 */

/** A long-lived part of the daemon (a source, the loop, a writer, a server, a monitor …). */
export interface Part {
  /** Names the part in log lines. */
  readonly name: string;
  /** Starts it; a part that cannot start throws (the daemon then stops what it started). */
  start(): void | Promise<void>;
  /** Stops it; must not throw and should return promptly. */
  stop(): void | Promise<void>;
}
