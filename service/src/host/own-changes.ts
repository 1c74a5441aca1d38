/**
 * What the daemon itself just did to the interface and its routes, so that the interface monitor
 * (`ip monitor`) can tell its own changes from real drift: a route the route adapter deleted, or
 * link churn while the interface owner recreates the link, must not force a re-read of the host.
 */
import { normalizeCidr } from '../net/ip.js';
import { ROUTE_PROTO } from './routes.js';

/** A deletion of one of the daemon's own routes (`proto 77`): ours only when announced, even during churn. */
const OWN_ROUTE_DELETED = new RegExp(`^Deleted .* proto ${ROUTE_PROTO}(?: |$)`);

/** Expected events, each for a short while. */
export class OwnChanges {
  private readonly routes = new Map<string, number>();
  private linkUntil = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** The deletion of a route to `dst` is ours for the next `ttlMs`. */
  expectRouteDeletion(dst: string, ttlMs = 5_000): void {
    this.routes.set(normalizeCidr(dst) ?? dst, this.now() + ttlMs);
  }

  /** Every link and route event on the interface is ours for the next `ttlMs` (a recreate in progress). */
  expectLinkChurn(ttlMs = 10_000): void {
    this.linkUntil = this.now() + ttlMs;
  }

  /** The churn is over: events still in flight are ours for `graceMs`, and drift counts again after that. */
  linkChurnDone(graceMs = 1_000): void {
    this.linkUntil = Math.min(this.linkUntil, this.now() + graceMs);
  }

  /** True when a monitor line reports something this process did itself. */
  isOwn(line: string): boolean {
    const t = this.now();
    if (t < this.linkUntil && !OWN_ROUTE_DELETED.test(line)) return true;
    const m = /^Deleted (?:(?:unicast|local|broadcast) )?(\S+) /.exec(line);
    if (!m) return false;
    const dst = m[1]!.includes('/') ? m[1]! : `${m[1]}/${m[1]!.includes(':') ? 128 : 32}`;
    const key = normalizeCidr(dst) ?? dst;
    const until = this.routes.get(key);
    if (until === undefined) return false;
    this.routes.delete(key);
    return t < until;
  }
}
