/**
 * The typed error of a failed apply: which step failed (the `kind` label of the apply-error
 * metric), with a message that carries context but never key material or whole command lines.
 */

/** The steps of a reconcile run that change something. */
export type ApplyStep = 'publish' | 'interface' | 'peers' | 'routes' | 'config-file' | 'firewall';

/** A failed step of a reconcile run. */
export class ApplyError extends Error {
  constructor(
    readonly step: ApplyStep,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ApplyError';
  }
}

/** Runs `fn`, turning any error it throws into an ApplyError of `step` (an ApplyError passes through). */
export async function inStep<T>(step: ApplyStep, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApplyError) throw err;
    throw new ApplyError(step, err instanceof Error ? err.message : String(err), { cause: err });
  }
}
