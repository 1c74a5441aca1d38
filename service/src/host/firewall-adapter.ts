/**
 * The fail-closed adapter: keeps the daemon's own nftables table (`inet wg_overlay`, never another)
 * equal to the desired rule set, and saves the whole table as an nft script in the state dir, which
 * wg-overlay-fail-closed.service loads at boot before the network comes up. While the table is
 * known to hold what it applied, a change is the element diff in one `nft` transaction and the same
 * input twice runs nothing; after a restart or `invalidate()` it reads the table first (adopting a
 * table that holds the same), and replaces the whole table in one transaction when its layout
 * differs. With the rule set off, it deletes the table and the saved script.
 */
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { CommandRunner } from '../exec/runner.js';
import { firewallDelta, type BlockedRange, type BlockReason, type DesiredFirewall } from '../mesh/desired/firewall.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { DebouncedWriter } from '../util/debounced-writer.js';
import { inStep } from './apply-error.js';
import type { AppliedChange } from './change.js';
import {
  deltaSets,
  diffSets,
  elementCommands,
  elementsOf,
  FIREWALL_TABLE,
  parseTable,
  renderTable,
  SET_NAMES,
  type SetChanges,
  type SetElements,
} from './nft-rules.js';

/** The saved rule set's file name in the state dir (the boot unit loads it from there). */
export const FIREWALL_FILE = 'fail-closed.nft';

/** The longest element diff sent as one command line (a larger one replaces the table from the file). */
const MAX_DIFF_TEXT = 64 * 1024;

/** What the adapter knows the host holds. */
interface Known {
  /** The interface the rules name; undefined when the table is absent. */
  iface: string | undefined;
  sets: SetElements;
}

/** Keeps the daemon's nftables table equal to the desired rule set. */
export class FirewallAdapter {
  private known: Known | undefined;
  /** The rule set applied last while the table is known (the same object again: nothing to do). */
  private last: DesiredFirewall | undefined;
  private readonly file: string;
  /** The saved script's next contents (rendered when written), and why the last write failed. */
  private pending: { iface: string; sets: SetElements } | undefined;
  private saveError: Error | undefined;
  private readonly saver: DebouncedWriter<Error | undefined>;

  /**
   * `saveDelayMs`: how long a change waits before the saved script is written (asked each time;
   * 0, the default: before the change is applied). A large mesh waits, so that a change costs no
   * rewrite of the whole table; the script is written at once whenever nft loads it, and by `flush()`.
   */
  constructor(
    private readonly runner: CommandRunner,
    stateDir: string,
    private readonly saveDelayMs: () => number = () => 0,
  ) {
    this.file = join(stateDir, FIREWALL_FILE);
    this.saver = new DebouncedWriter({ write: () => this.writePending(), delayMs: saveDelayMs });
  }

  /** Writes the saved script now if a change is waiting for it (the daemon stops); rejects when it cannot. */
  async flush(): Promise<void> {
    const err = await this.saver.flush();
    if (err) throw err;
  }

  /** Forgets what the host holds: the next `set()` reads it first. */
  invalidate(): void {
    this.known = undefined;
  }

  /**
   * The blocked ranges the table on the host holds (what the mesh carried before this process
   * started), with their owners; undefined when there is no table.
   */
  async adopt(): Promise<Pick<DesiredFirewall, 'blocked'> | undefined> {
    const known = await this.read();
    this.known = known;
    if (known.iface === undefined) return undefined;
    const blocked: BlockedRange[] = [];
    for (const [name, elements] of known.sets) {
      const m = /^(carried|kept|pods)[46]$/.exec(name);
      if (!m) continue;
      const reason: BlockReason = m[1] === 'pods' ? 'pod-network' : (m[1] as BlockReason);
      for (const e of elements) {
        const [, dst, owner] = /^(\S+)(?: comment "(.*)")?$/.exec(e) ?? [];
        if (dst)
          blocked.push({ dst, reason, owner: owner ?? '', what: `range of ${owner ?? 'a Node'} (found at start)` });
      }
    }
    return { blocked };
  }

  /** Makes the table equal `desired` (removes it when the rule set is off); a repeat with equal input runs nothing. */
  async set(desired: DesiredFirewall): Promise<AppliedChange[]> {
    if (this.known && desired === this.last) return [];
    const from = this.known && this.last;
    const known = this.known ?? (await inStep('firewall', () => this.read()));
    this.known = undefined; // until this run is through
    this.last = undefined;
    if (!desired.enabled) {
      if (known.iface !== undefined) await inStep('firewall', () => this.remove());
      this.known = { iface: undefined, sets: new Map() };
      return known.iface === undefined
        ? []
        : [{ what: `deleted nftables table ${FIREWALL_TABLE}`, why: 'fail_closed = off' }];
    }
    let sets: SetElements;
    let changes: AppliedChange[];
    const delta = firewallDelta(desired);
    if (known.iface === desired.iface && from && delta?.from === from) {
      // Derived from the rule set the table holds: the changed elements only (the sets updated in place).
      sets = known.sets;
      const diff = deltaSets(sets, from, desired, delta);
      changes = await inStep('firewall', () => this.patch(diff, sets, desired.iface));
    } else {
      sets = elementsOf(desired);
      changes =
        known.iface === desired.iface
          ? await inStep('firewall', () => this.patch(diffSets(known.sets, sets), sets, desired.iface))
          : await inStep('firewall', () => this.replace(desired.iface, sets, known.iface === undefined));
    }
    this.known = { iface: desired.iface, sets };
    this.last = desired;
    return changes;
  }

  /** Reads the table: absent, or its sets and whether its layout is this version's. */
  private async read(): Promise<Known> {
    const r = await this.runner.run('nft', ['-j', 'list', 'table', ...FIREWALL_TABLE.split(' ')], {
      allowFailure: true,
    });
    if (r.exitCode !== 0) {
      if (/No such file or directory|does not exist/i.test(r.stderr)) return { iface: undefined, sets: new Map() };
      const why =
        r.exitCode < 0 || /ENOENT/.test(r.stderr)
          ? 'nft could not be run: install nftables, or set [wireguard] fail_closed = off'
          : r.stderr.trim() || `exit ${r.exitCode}`;
      throw new Error(`reading nftables table ${FIREWALL_TABLE}: ${why}`);
    }
    const t = parseTable(r.stdout);
    // Another layout (an older version's, or edited by hand) is replaced whole: no interface name matches it.
    return { iface: t.layoutMatches ? t.iface : '(another layout)', sets: t.sets };
  }

  /** The element changes as one transaction; the saved script is rewritten. */
  private async patch(diff: SetChanges, to: SetElements, iface: string): Promise<AppliedChange[]> {
    const deletes: string[] = [];
    const adds: string[] = [];
    const changes: AppliedChange[] = [];
    for (const name of SET_NAMES) {
      const { gone = [], come = [] } = diff.get(name) ?? {};
      if (gone.length) deletes.push(...elementCommands('delete', name, gone));
      if (come.length) adds.push(...elementCommands('add', name, come));
      if (gone.length + come.length > 0)
        changes.push({ what: `fail-closed set ${name}: ${describeDiff(gone, come)}`, why: 'the rule set changed' });
    }
    if (changes.length === 0) {
      if (this.pending) this.pending = { iface, sets: to };
      return [];
    }
    const script = [...deletes, ...adds].join('\n');
    this.pending = { iface, sets: to };
    if (script.length > MAX_DIFF_TEXT) {
      await this.flush();
      await this.runner.run('nft', ['-f', this.file]);
      return changes;
    }
    // Before the change (or, in a large mesh, a moment after it: the boot unit loads the latest).
    if (this.saveDelayMs() <= 0 || this.saveError) await this.flush();
    else void this.saver.changed();
    const r = await this.runner.run('nft', [script], { allowFailure: true });
    if (r.exitCode !== 0) {
      // The table changed under the daemon (an element gone or there already): the whole table anew.
      await this.flush();
      await this.runner.run('nft', ['-f', this.file]);
    }
    return changes;
  }

  /** The whole table anew, from the saved script, in one transaction. */
  private async replace(iface: string, sets: SetElements, fresh: boolean): Promise<AppliedChange[]> {
    this.pending = { iface, sets };
    await this.flush();
    await this.runner.run('nft', ['-f', this.file]);
    const count = [...sets.values()].reduce((n, s) => n + s.size, 0);
    return [
      {
        what: `nftables table ${FIREWALL_TABLE} ${fresh ? 'created' : 'replaced'} (${count} elements, interface ${iface})`,
        why: fresh ? 'fail_closed = on' : 'the table on the host was not the one this version writes',
      },
    ];
  }

  /** Writes the pending script (the sets as they are now); never rejects: resolves with why it could not. */
  private async writePending(): Promise<Error | undefined> {
    const p = this.pending;
    if (!p) return this.saveError;
    this.pending = undefined;
    try {
      await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.file, renderTable(p.iface, p.sets), 0o600);
      this.saveError = undefined;
    } catch (err) {
      // Written at once on the next change (which then fails as this write did) or flush.
      this.pending ??= p;
      this.saveError = err instanceof Error ? err : new Error(String(err));
    }
    return this.saveError;
  }

  private async remove(): Promise<void> {
    await this.runner.run('nft', ['delete', 'table', ...FIREWALL_TABLE.split(' ')]);
    this.pending = undefined;
    this.saveError = undefined;
    await this.saver.flush(); // a write in progress ends before the file goes
    await rm(this.file, { force: true });
  }
}

/** A set's change in a few words: the first elements that came and went, and how many. */
function describeDiff(gone: readonly string[], come: readonly string[]): string {
  const short = (l: readonly string[]): string =>
    l
      .slice(0, 3)
      .map((e) => e.replace(/ comment "(.*)"$/, ' ($1)'))
      .join(', ') + (l.length > 3 ? ` and ${l.length - 3} more` : '');
  return [come.length ? `+${short(come)}` : '', gone.length ? `-${short(gone)}` : ''].filter(Boolean).join(' ');
}
