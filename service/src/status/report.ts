/**
 * What one reconcile run reports, for the status file, the metrics and the health verdict.
 */
import type { ApplyStep } from '../host/apply-error.js';

/** A summary of the latest run. */
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
