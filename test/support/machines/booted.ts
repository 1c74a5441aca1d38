/**
 * A booted Debian system under test, driven through one `exec`: the systemctl and journal helpers
 * that a systemd-nspawn container (nspawn.ts) and a qemu VM (kernel-vm.ts) share.
 */
import { sleep, type RunOptions, type RunResult } from '../process.js';

/** One journal entry (`journalctl -o json`), with MESSAGE decoded and PRIORITY a number. */
export interface JournalEntry {
  MESSAGE: string;
  PRIORITY: number;
  SYSLOG_IDENTIFIER?: string;
  _PID?: string;
  _SYSTEMD_UNIT?: string;
  _SYSTEMD_INVOCATION_ID?: string;
  __REALTIME_TIMESTAMP?: string;
  [key: string]: unknown;
}

/** The entries at warning or above (priority 4 or less), one `<N> message` line each; '' when there are none. */
export function warningLines(entries: readonly JournalEntry[]): string {
  return entries
    .filter((e) => e.PRIORITY <= 4)
    .map((e) => `<${e.PRIORITY}> ${e.MESSAGE}`)
    .join('\n');
}

/** A booted system: subclasses say how a command runs inside; everything else is built on that. */
export abstract class BootedSystem {
  /** Name for messages (machine name, host name). */
  abstract readonly name: string;

  /** Runs a command inside the system to completion (throws a CommandError unless `allowFailure`). */
  abstract exec(cmd: string, args?: readonly string[], opts?: RunOptions): Promise<RunResult>;

  /** Runs a shell script inside the system. */
  sh(script: string, opts: RunOptions = {}): Promise<RunResult> {
    return this.exec('sh', ['-c', script], opts);
  }

  /** Reads a file as the system sees it (its own /run, /tmp and mounts included). */
  async readFile(p: string): Promise<string> {
    return (await this.exec('cat', [p])).stdout;
  }

  /** `systemctl show UNIT -p …` as a map. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const r = await this.exec('systemctl', ['show', unit, ...props.map((p) => `--property=${p}`)]);
    const out: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
    }
    return out;
  }

  /** Polls `systemctl show` until `done` accepts the properties; throws with the last ones on timeout. */
  async waitForUnit(
    unit: string,
    props: string[],
    done: (p: Record<string, string>) => boolean,
    timeoutMs = 60_000,
  ): Promise<Record<string, string>> {
    const deadline = Date.now() + timeoutMs;
    let last: Record<string, string> = {};
    while (Date.now() < deadline) {
      last = await this.show(unit, props);
      if (done(last)) return last;
      await sleep(250);
    }
    const status = await this.exec('systemctl', ['status', '--no-pager', '-l', unit], { allowFailure: true });
    throw new Error(
      `${this.name}: ${unit} did not reach the expected state within ${timeoutMs} ms; last ${JSON.stringify(last)}\n${status.stdout}`,
    );
  }

  /**
   * Journal entries (`journalctl -o json`) matching the arguments, e.g. `['-u', 'wg-overlay']`.
   * A journalctl that fails with nothing to show is asked again (twice, a second apart), then
   * throws with its error: an empty list would read as "no such entry" and hide the cause.
   */
  async journal(args: string[]): Promise<JournalEntry[]> {
    let lines: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const r = await this.exec('journalctl', ['--no-pager', '-o', 'json', ...args], { allowFailure: true });
      lines = r.stdout.split('\n').filter((l) => l.trim().startsWith('{'));
      if (!r.failed || lines.length > 0) break;
      if (attempt === 3) {
        const why = r.signal ? `killed by ${r.signal}` : `exit code ${r.exitCode ?? 'none'}`;
        throw new Error(
          `${this.name}: ${r.command} failed ${attempt} times (${why}): ${r.stderr.trim() || 'no stderr'}`,
        );
      }
      await sleep(1_000);
    }
    return lines.map((l) => {
      const e = JSON.parse(l) as Record<string, unknown>;
      const msg = e.MESSAGE;
      return {
        ...e,
        MESSAGE: Array.isArray(msg) ? Buffer.from(msg as number[]).toString('utf8') : String(msg ?? ''),
        PRIORITY: Number(e.PRIORITY),
      } as JournalEntry;
    });
  }

  /**
   * Entries after `cursor`, of `unit` when given (its own lines and systemd's about it), filtered
   * here rather than by journalctl: systemd 252's journalctl skips the first matching entry when
   * --after-cursor is combined with -u or -p.
   */
  async entriesAfter(cursor: string, unit?: string): Promise<JournalEntry[]> {
    const all = await this.journal([`--after-cursor=${cursor}`]);
    if (!unit) return all;
    const u = unit.includes('.') ? unit : `${unit}.service`;
    return all.filter((e) => e._SYSTEMD_UNIT === u || e.UNIT === u || e.OBJECT_SYSTEMD_UNIT === u);
  }

  /** Polls until an entry after `cursor` (of `unit`) matches; returns it, or throws with what was seen. */
  async waitForEntry(
    cursor: string,
    unit: string | undefined,
    match: (e: JournalEntry) => boolean,
    timeoutMs = 30_000,
  ): Promise<JournalEntry> {
    const deadline = Date.now() + timeoutMs;
    let entries: JournalEntry[] = [];
    while (Date.now() < deadline) {
      entries = await this.entriesAfter(cursor, unit);
      const hit = entries.find(match);
      if (hit) return hit;
      await sleep(250);
    }
    const seen = entries.map((e) => `<${e.PRIORITY}> ${e.MESSAGE}`).join('\n');
    throw new Error(
      `${this.name}: no journal entry${unit ? ` of ${unit}` : ''} matched within ${timeoutMs} ms:\n${seen}`,
    );
  }

  /** The journal's current cursor, to read only what comes after it. */
  async cursor(): Promise<string> {
    const r = await this.exec('journalctl', ['--no-pager', '-n', '0', '--show-cursor', '-q']);
    const m = /-- cursor: (\S+)/.exec(r.stdout);
    if (!m) throw new Error(`${this.name}: no journal cursor in ${JSON.stringify(r.stdout)}`);
    return m[1]!;
  }
}
