/**
 * What one run of the reconcile loop (`daemon/loop.ts`) reports: read by the status view, the
 * metrics and the health verdict, but the loop's own result (hence here, not in `status/`).
 */
import type { ApplyStep } from '../host/apply-error.js';

/** A summary of one reconcile run: whether it applied, what it changed, how long it took. */
export interface ReconcileReport {
  ok: boolean;
  error?: string;
  /** The step that failed (set when `ok` is false and the failure came from a known step). */
  errorStep?: ApplyStep;
  /** Set when wg0.conf could not be written (the live mesh may still have been applied). */
  configFileError?: string;
  /** Changes applied by that run, one line each. */
  changes: string[];
  durationMs: number;
  at: number;
}
