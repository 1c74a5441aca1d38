/**
 * What a failed Kubernetes API call means, in a form fit for one log line.
 */
import { describeError } from '../log/logger.js';

/** The message of the Status an API error carries ('' when it has none). */
export function apiErrorMessage(err: unknown): string {
  const e = err as { body?: unknown };
  try {
    const body =
      typeof e?.body === 'string' ? (JSON.parse(e.body) as { message?: unknown }) : (e?.body as { message?: unknown });
    return typeof body?.message === 'string' ? body.message : '';
  } catch {
    return ''; // not JSON
  }
}

/** Why an API call failed, in a form fit for a log line (the HTTP status and the server's message). */
export function describeApiError(err: unknown): string {
  const e = err as { code?: number };
  if (typeof e?.code === 'number' && e.code >= 100) {
    const msg = apiErrorMessage(err);
    return `HTTP ${e.code}${msg ? `: ${msg}` : ''}`;
  }
  return describeError(err);
}

/** The HTTP status of an API error, when it has one. */
export function httpStatus(err: unknown): number | undefined {
  const e = err as { code?: number; statusCode?: number };
  return typeof e?.code === 'number' ? e.code : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
}

/** True when an API error means the resource type is not served (CRD missing). */
export function isNotFound(err: unknown): boolean {
  return httpStatus(err) === 404;
}
