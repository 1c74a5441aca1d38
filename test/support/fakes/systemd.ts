/**
 * A stand-in for systemd's Manager on a private D-Bus system bus, for tests without a booted
 * systemd: StartUnit/RestartUnit/StopUnit of `wg-quick@<if>.service` run the real `wg-quick` in
 * the calling node and finish with a JobRemoved signal, like systemd. Run as a script inside a
 * test node: `node test/support/fakes/systemd.js BUS_ADDRESS`; it prints one line per call on stdout.
 * Also exports the dbus-daemon config for such a bus, and (`startFakeSystemd`) an in-process
 * stand-in with test units that need no wg-quick:
 *
 * - `test-ok.service`: the job ends "done" after `jobDelayMs` (0: right after the reply, same tick)
 * - `test-fail.service`: the job ends "failed" after `jobDelayMs`
 * - `test-noreply.service`: the method call is never answered
 * - `test-nojob.service`: the call is answered, the job never ends
 */
import { execFile } from 'node:child_process';
import dbus from 'dbus-next';

/** A dbus-daemon configuration for a private system bus anyone may use, listening at `socket`. */
export function privateBusConfig(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`;
}

/** Options of the stand-in (the script uses the defaults). */
export interface FakeSystemdOptions {
  /** How long a job of test-ok/test-fail.service takes (ms); 0 sends its JobRemoved right after the reply. Default 1. */
  jobDelayMs?: number;
  /** Where each call is reported; default stdout, one line per call (the script's output). */
  report?: (line: string) => void;
}

const stdoutReport = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

function sh(script: string, report: (line: string) => void): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', script], (err, stdout, stderr) => {
      report(`  ${script}: ${err ? `failed: ${stderr.trim()}` : 'ok'}`);
      resolve(!err);
    });
  });
}

class Manager extends dbus.interface.Interface {
  private job = 0;
  private foreignJob = 1_000_000;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly opts: FakeSystemdOptions = {}) {
    super('org.freedesktop.systemd1.Manager');
  }

  private get report(): (line: string) => void {
    return this.opts.report ?? stdoutReport;
  }

  Subscribe(): void {
    this.report('Subscribe');
  }

  private later(ms: number, f: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopped) f();
    }, ms);
    this.timers.add(t);
  }

  /** Starts a job: `script` (a shell command) or, for the test units, a fixed result. */
  private run(verb: string, unit: string, script: string): string | Promise<string> {
    this.job += 1;
    const id = this.job;
    const path = `/org/freedesktop/systemd1/job/${id}`;
    this.report(`${verb} ${unit}`);
    const delay = this.opts.jobDelayMs ?? 1;
    const finish = (result: string): void => {
      if (!this.stopped) this.JobRemoved(id, path, unit, result);
    };
    switch (unit) {
      case 'test-ok.service':
      case 'test-fail.service': {
        const result = unit === 'test-ok.service' ? 'done' : 'failed';
        // 0: the signal goes out in the same tick as the reply (and usually in the same read).
        if (delay === 0) process.nextTick(() => finish(result));
        else this.later(delay, () => finish(result));
        return path;
      }
      case 'test-noreply.service':
        return new Promise<string>(() => undefined);
      case 'test-nojob.service':
        return path;
      default:
        this.later(1, () => {
          void sh(script, this.report).then((ok) => finish(ok ? 'done' : 'failed'));
        });
        return path;
    }
  }

  RestartUnit(unit: string, _mode: string): string | Promise<string> {
    const m = /^wg-quick@(.+)\.service$/.exec(unit);
    return this.run('RestartUnit', unit, m ? `wg-quick down ${m[1]} 2>&1; wg-quick up ${m[1]}` : 'false');
  }

  StartUnit(unit: string, _mode: string): string | Promise<string> {
    const m = /^wg-quick@(.+)\.service$/.exec(unit);
    return this.run('StartUnit', unit, m ? `ip link show ${m[1]} >/dev/null 2>&1 || wg-quick up ${m[1]}` : 'false');
  }

  StopUnit(unit: string, _mode: string): string | Promise<string> {
    const m = /^wg-quick@(.+)\.service$/.exec(unit);
    return this.run('StopUnit', unit, m ? `wg-quick down ${m[1]}` : 'false');
  }

  /** Sends JobRemoved for `count` jobs nobody asked this Manager for (the host's other jobs). */
  emitForeignJobs(count: number, unit: string): void {
    for (let i = 0; i < count; i += 1) {
      this.foreignJob += 1;
      this.JobRemoved(this.foreignJob, `/org/freedesktop/systemd1/job/${this.foreignJob}`, unit, 'done');
    }
  }

  /** Cancels the jobs still running; they end without a signal. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  JobRemoved(id: number, job: string, unit: string, result: string): [number, string, string, string] {
    return [id, job, unit, result];
  }
}

Manager.configureMembers({
  methods: {
    Subscribe: {},
    RestartUnit: { inSignature: 'ss', outSignature: 'o' },
    StartUnit: { inSignature: 'ss', outSignature: 'o' },
    StopUnit: { inSignature: 'ss', outSignature: 'o' },
  },
  signals: {
    JobRemoved: { signature: 'uoss' },
  },
});

/** A stand-in Manager serving on a bus, for tests in this process. */
export interface FakeSystemd {
  /** Its connection to the bus. */
  readonly bus: dbus.MessageBus;
  /** Sends JobRemoved for `count` jobs this stand-in never started (default unit `foreign.service`). */
  emitForeignJobs(count: number, unit?: string): void;
  /** Stops its jobs and leaves the bus. */
  close(): void;
}

/** Connects to the bus at `address`, takes org.freedesktop.systemd1 and serves the Manager. */
export async function startFakeSystemd(address: string, opts: FakeSystemdOptions = {}): Promise<FakeSystemd> {
  const report = opts.report ?? stdoutReport;
  const bus = dbus.sessionBus({ busAddress: address });
  const manager = new Manager(opts);
  // A listener must be there (an 'error' without one throws); a bus that goes away only reports.
  bus.on('error', (err: unknown) => report(`bus error: ${String(err)}`));
  bus.export('/org/freedesktop/systemd1', manager);
  try {
    await bus.requestName('org.freedesktop.systemd1', 0);
  } catch (err) {
    manager.stop();
    bus.disconnect();
    throw err;
  }
  return {
    bus,
    emitForeignJobs: (count, unit = 'foreign.service') => manager.emitForeignJobs(count, unit),
    close: () => {
      manager.stop();
      try {
        bus.disconnect();
      } catch {
        /* already gone */
      }
    },
  };
}

/** Connects to the bus at `address`, takes org.freedesktop.systemd1 and serves the Manager (the script). */
export async function serveFakeSystemd(address: string): Promise<dbus.MessageBus> {
  const bus = dbus.sessionBus({ busAddress: address });
  bus.on('error', (err: unknown) => process.stderr.write(`bus error: ${String(err)}\n`));
  bus.export('/org/freedesktop/systemd1', new Manager());
  await bus.requestName('org.freedesktop.systemd1', 0);
  return bus;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'))) {
  const address = process.argv[2];
  if (!address) {
    process.stderr.write('usage: systemd.js BUS_ADDRESS\n');
    process.exit(2);
  }
  serveFakeSystemd(address).then(
    () => process.stdout.write('fake systemd ready\n'),
    (err: unknown) => {
      process.stderr.write(`fake systemd: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
