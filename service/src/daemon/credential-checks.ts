/**
 * Checks of this node's credential as daemon parts: whether node-policy.yaml is in force (a dry
 * run at start and at each config reload, retried while the answer tells nothing) and when the
 * token expires (read at start, at each reload and every hour; warned about from 14 days ahead,
 * once a day).
 */
import type { NodePolicyProbe, PolicyVerdict } from '../kube/node-policy-probe.js';
import { tokenClaims, tokenExpiryNotice } from '../kube/token.js';
import { describeError, type Logger } from '../log/logger.js';
import { Backoff } from '../util/backoff.js';
import { formatMs } from '../util/duration.js';
import type { Part } from './part.js';

/** The state of node-policy.yaml as the last dry run showed it. */
export type PolicyState = PolicyVerdict['state'];

/** What the policy check needs. */
export interface NodePolicyCheckOptions {
  probe: NodePolicyProbe;
  /** This node's Node. */
  node: string;
  log: Logger;
  /** Told the state after every dry run. */
  onState: (state: PolicyState) => void;
  /** Delay before the first retry after an answer that tells nothing (doubling up to 10 min). */
  retryMs: number;
}

/** The warning when the policy is not in force: what a stolen token could do, and what to do. */
export function policyNotEnforcedWarning(node: string): string {
  return (
    `node-policy.yaml is not in force: a dry-run write of a label on this node's own Node ${node} was accepted, so ` +
    "whoever steals this node's token can change any Node (labels, taints, pod CIDRs, any annotation: as far as " +
    "RBAC allows), e.g. redirect other nodes' tunnels or evict their pods, until the token expires. Apply it once " +
    'per cluster (Kubernetes 1.30+): kubectl apply -f /usr/share/wg-overlay/kubernetes/node-policy.yaml, then ' +
    '`systemctl reload wg-overlay` checks again'
  );
}

/** Checks whether node-policy.yaml refuses what it must, at start and when asked (a reload). */
export class NodePolicyCheck implements Part {
  readonly name = 'node policy check';
  private timer: NodeJS.Timeout | undefined;
  /** Each check counts up; the retries of an older one stop. */
  private generation = 0;
  private stopped = false;
  private readonly backoff: Backoff;

  constructor(private readonly o: NodePolicyCheckOptions) {
    this.backoff = new Backoff(o.retryMs, 10 * 60_000);
  }

  start(): void {
    void this.check();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Checks now (replacing any retry pending); resolves with the first answer. */
  check(): Promise<PolicyVerdict> {
    clearTimeout(this.timer);
    this.backoff.reset();
    this.generation += 1;
    return this.run(this.generation, true);
  }

  private async run(generation: number, first: boolean): Promise<PolicyVerdict> {
    const verdict = await this.o.probe.probe(this.o.node);
    if (generation !== this.generation || this.stopped) return verdict;
    this.o.onState(verdict.state);
    const { log, node } = this.o;
    if (verdict.state === 'enforced')
      log.info(
        `node-policy.yaml is in force: a dry-run write of a label on Node ${node} was refused (${verdict.detail})`,
      );
    else if (verdict.state === 'not-enforced') log.warning(policyNotEnforcedWarning(node));
    else {
      const ms = this.backoff.next();
      const line = `cannot tell whether node-policy.yaml is in force (${verdict.detail}); checking again in ${formatMs(ms)}`;
      if (first) log.notice(line);
      else log.debug(line);
      this.timer = setTimeout(() => void this.run(generation, false), ms);
    }
    return verdict;
  }
}

/** What the token check needs. */
export interface TokenExpiryCheckOptions {
  /** The token the daemon authenticates with now (its file read afresh). */
  token: () => Promise<string | undefined>;
  log: Logger;
  /** Told the token's expiry (unix seconds) after every read; undefined when it names none. */
  onExpiry: (unixSeconds: number | undefined) => void;
  /** Between reads of the token (an hour). */
  intervalMs: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

const DAY_MS = 24 * 3600_000;

/** Reads the token's expiry at start, at each reload and every interval; warns from 14 days ahead, once a day. */
export class TokenExpiryCheck implements Part {
  readonly name = 'token expiry check';
  private timer: NodeJS.Timeout | undefined;
  private lastExpiry: number | undefined;
  private lastSaidAt: number | undefined;

  constructor(private readonly o: TokenExpiryCheckOptions) {}

  start(): void {
    void this.check(true);
    this.timer = setInterval(() => void this.check(false), this.o.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Reads the token and says what its expiry calls for: `asked` (start, a reload) always says it,
   * the hourly reads at most once a day, or when the token was replaced.
   */
  async check(asked: boolean): Promise<void> {
    const { log } = this.o;
    const now = (this.o.now ?? Date.now)();
    let token: string | undefined;
    try {
      token = await this.o.token();
    } catch (err) {
      log.debug(`token expiry check: ${describeError(err)}`);
      return;
    }
    const expiresAt = token ? tokenClaims(token)?.expiresAt : undefined;
    const seconds = expiresAt ? Math.floor(expiresAt.getTime() / 1000) : undefined;
    this.o.onExpiry(seconds);
    if (seconds !== this.lastExpiry) {
      if (this.lastExpiry !== undefined && expiresAt)
        log.info(`this node's Kubernetes token was replaced: it expires at ${expiresAt.toISOString()}`);
      this.lastExpiry = seconds;
      this.lastSaidAt = undefined;
    }
    const notice = tokenExpiryNotice(expiresAt, now);
    if (notice.level === 'ok' || !notice.message) return;
    if (!asked && this.lastSaidAt !== undefined && now - this.lastSaidAt < DAY_MS) return;
    this.lastSaidAt = now;
    if (notice.level === 'error') log.error(notice.message);
    else log.warning(notice.message);
  }
}
