/**
 * The exit statuses of every `wg-overlay` command, defined once.
 */

/** Success. */
export const EXIT_OK = 0;
/** A failure (the API server, the interface, an unexpected error). */
export const EXIT_FAILURE = 1;
/** A usage error: unknown command or option. */
export const EXIT_USAGE = 2;
/** A configuration an admin must fix (EX_CONFIG); the unit does not restart on it. */
export const EXIT_CONFIG = 78;
