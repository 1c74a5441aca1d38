/*
 * Failures a test injects on purpose: the next requests (those a filter accepts) fail with a
 * given status and a Status body (`failNext`), and watches can be refused (`setWatchEnabled`).
 */
import { ApiError, reasonForCode } from './status.js';

/** What a `failNext` filter sees of a request. */
export interface RequestInfo {
  method: string;
  path: string;
  query: URLSearchParams;
  watch: boolean;
}

/** Options of `failNext`. */
export interface FailOptions {
  /** Status message (default: `injected failure (<code>)`). */
  message?: string;
  /** Only requests for which this returns true consume the failure (default: every request). */
  match?: (req: RequestInfo) => boolean;
  /** Send a Retry-After header (client-go then retries 429/5xx by itself). */
  retryAfterSeconds?: number;
}

interface Failure extends FailOptions {
  remaining: number;
  status: number;
}

/** The failures a test asked for, consumed by the requests they match. */
export class Faults {
  /** While false, watch requests get 405 MethodNotAllowed. */
  watchEnabled = true;
  private failures: Failure[] = [];

  /** Makes the next `n` requests (that `opts.match` accepts) fail with `status`. */
  failNext(n: number, status: number, opts: FailOptions): void {
    if (n > 0) this.failures.push({ ...opts, remaining: n, status });
  }

  /** Throws the first pending failure that this request matches (and counts it down); does nothing when none does. */
  inject(info: RequestInfo): void {
    if (this.failures.length === 0) return;
    const f = this.failures.find((x) => x.remaining > 0 && (!x.match || x.match(info)));
    if (!f) return;
    f.remaining--;
    this.failures = this.failures.filter((x) => x.remaining > 0);
    const d = f.retryAfterSeconds !== undefined ? { retryAfterSeconds: f.retryAfterSeconds } : undefined;
    throw new ApiError(f.status, reasonForCode(f.status), f.message ?? `injected failure (${f.status})`, d);
  }
}
