/**
 * Whether node-policy.yaml is in force for this node's credential, found out by asking: a dry-run
 * merge patch of this node's own Node that sets a label, which the policy must refuse
 * (`?dryRun=All`: nothing is stored either way). An admission denial means it is in force; the
 * write going through means it is not; any other answer (API down, no RBAC grant, no such Node)
 * tells nothing.
 */
import { describeError } from '../log/logger.js';
import { ANNOTATION_PREFIX } from '../mesh/annotations.js';
import { apiErrorMessage, describeApiError, httpStatus } from './api-errors.js';
import { NodePatcher } from './node-publisher.js';

/** The label the dry run tries to set (no write is ever stored with it). */
export const PROBE_LABEL = `${ANNOTATION_PREFIX}node-policy-check`;

/** What one dry run showed. */
export type PolicyVerdict =
  /** Refused by admission; `detail` is the server's message. */
  | { state: 'enforced'; detail: string }
  /** The label write went through (as a dry run). */
  | { state: 'not-enforced' }
  /** Anything else; `detail` says what happened. */
  | { state: 'unknown'; detail: string };

/** Asks the API whether a write the policy must refuse is refused. */
export interface NodePolicyProbe {
  /** Tries the dry-run write on Node `node`; never rejects. */
  probe(node: string): Promise<PolicyVerdict>;
}

/** Whether a message is an admission denial: a ValidatingAdmissionPolicy's ("denied request") or a webhook's ("denied the request"). */
function isAdmissionDenial(message: string): boolean {
  return /ValidatingAdmissionPolicy .* denied request|admission webhook .* denied the request/.test(message);
}

/** Judges the outcome of the dry run (pure): what it says about the policy. */
export function judgePolicyProbe(outcome: { ok: true } | { error: unknown }): PolicyVerdict {
  if ('ok' in outcome) return { state: 'not-enforced' };
  const err = outcome.error;
  const status = httpStatus(err);
  const message = apiErrorMessage(err);
  if ((status === 403 || status === 422) && isAdmissionDenial(message)) return { state: 'enforced', detail: message };
  if (status !== undefined && status >= 100) return { state: 'unknown', detail: describeApiError(err) };
  return { state: 'unknown', detail: describeError(err) };
}

/** The probe through the API: a merge patch with `dryRun=All`. */
export class ApiNodePolicyProbe extends NodePatcher implements NodePolicyProbe {
  async probe(node: string): Promise<PolicyVerdict> {
    try {
      await this.patchMetadata(node, { labels: { [PROBE_LABEL]: 'dry-run' } }, true);
      return judgePolicyProbe({ ok: true });
    } catch (error) {
      return judgePolicyProbe({ error });
    }
  }
}
