/**
 * The fail-closed rule set's drops, read from its counters every few seconds: counted by family
 * and reason (the metric), shown by `status`, and one journal line naming the destination ranges
 * when drops start (then at most one a minute per counter while they go on).
 */
import type { CommandRunner } from '../exec/runner.js';
import { FIREWALL_TABLE, parseCounters, parseElementCounters } from '../host/nft-rules.js';
import { describeError, type Logger } from '../log/logger.js';
import type { BlockedRange } from '../mesh/desired/firewall.js';
import type { Part } from './part.js';

/** What `status` shows of the drops. */
export interface DropReport {
  /** Packets dropped since the table was loaded (it outlives the daemon), by counter (`carried4`, `kept6`, …). */
  byCounter: Record<string, number>;
  total: number;
  /** The latest drops this daemon saw: when, and the ranges (with what they are). */
  latest?: { at: number; ranges: string[] } | undefined;
}

/** Options of {@link FirewallDrops}. */
export interface FirewallDropsOptions {
  runner: CommandRunner;
  log: Logger;
  everyMs: number;
  /** The blocked ranges of the rule set in force (undefined: the rule set is off). */
  blocked: () => readonly BlockedRange[] | undefined;
  /** Told of new drops: family, reason (the metric's labels) and packets. */
  onDrops: (family: 'ipv4' | 'ipv6', reason: string, packets: number) => void;
  /** Clock in ms (tests). */
  now?: () => number;
}

const REASONS: Record<string, string> = { carried: 'carried', kept: 'kept', pods: 'pod-network' };
const QUIET_MS = 60_000;

/** Reads the rule set's counters now and then. */
export class FirewallDrops implements Part {
  readonly name = 'fail-closed drop counter';
  private timer: NodeJS.Timeout | undefined;
  private counters = new Map<string, number>();
  private elements = new Map<string, number>();
  private loggedAt = new Map<string, number>();
  private dropping = new Set<string>();
  private latest: DropReport['latest'];

  constructor(private readonly o: FirewallDropsOptions) {}

  start(): void {
    const poll = (): void => {
      this.poll().catch((err: unknown) => this.o.log.debug(`fail closed: reading the counters: ${describeError(err)}`));
    };
    poll(); // the baseline: what was dropped before this daemon started is not counted again
    this.timer = setInterval(poll, this.o.everyMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The drops so far, for `status`. */
  report(): DropReport {
    const byCounter = Object.fromEntries(this.counters);
    return { byCounter, total: [...this.counters.values()].reduce((a, b) => a + b, 0), latest: this.latest };
  }

  /** One read of the counters (the first one is the baseline: packets dropped before this daemon are not counted again). */
  async poll(): Promise<void> {
    const [family, table] = FIREWALL_TABLE.split(' ') as [string, string];
    const r = await this.o.runner.run('nft', ['-j', 'list', 'counters', 'table', family, table], {
      allowFailure: true,
    });
    if (r.exitCode !== 0) return;
    const now = this.o.now?.() ?? Date.now();
    const first = this.counters.size === 0;
    for (const [name, packets] of parseCounters(r.stdout)) {
      const before = this.counters.get(name);
      this.counters.set(name, packets);
      const m = /^(carried|kept|pods)([46])$/.exec(name);
      if (!m || first) continue;
      // A table loaded anew starts from 0.
      const delta = before === undefined || packets < before ? packets : packets - before;
      if (delta === 0) {
        this.dropping.delete(name);
        continue;
      }
      this.o.onDrops(m[2] === '4' ? 'ipv4' : 'ipv6', REASONS[m[1]!]!, delta);
      const started = !this.dropping.has(name);
      this.dropping.add(name);
      if (started || now - (this.loggedAt.get(name) ?? 0) >= QUIET_MS) {
        this.loggedAt.set(name, now);
        await this.logDrops(name, delta, now);
      }
    }
  }

  /** One line naming the ranges whose element counters rose. */
  private async logDrops(set: string, delta: number, now: number): Promise<void> {
    const [family, table] = FIREWALL_TABLE.split(' ') as [string, string];
    const r = await this.o.runner.run('nft', ['-j', 'list', 'set', family, table, set], { allowFailure: true });
    const what = new Map((this.o.blocked() ?? []).map((b) => [b.dst, b]));
    const ranges: string[] = [];
    if (r.exitCode === 0)
      for (const e of parseElementCounters(r.stdout)) {
        const key = `${set} ${e.element}`;
        const before = this.elements.get(key) ?? 0;
        this.elements.set(key, e.packets);
        if (e.packets > before || (e.packets > 0 && e.packets < before)) {
          const b = what.get(e.element);
          ranges.push(b ? `${e.element} (${b.what})` : e.element);
        }
      }
    this.latest = { at: now, ranges };
    const where = ranges.length
      ? ranges.slice(0, 3).join(', ') + (ranges.length > 3 ? ` and ${ranges.length - 3} more` : '')
      : set;
    this.o.log.warning(
      `fail closed: dropped ${delta} packet(s) to ${where} that would have left in clear, not through the tunnel ` +
        '(the interface or a route is missing); see wg-overlay status',
    );
  }
}
