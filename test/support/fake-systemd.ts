/**
 * A stand-in for systemd's Manager on a private D-Bus system bus, for tests without a booted
 * systemd: StartUnit/RestartUnit/StopUnit of `wg-quick@<if>.service` run the real `wg-quick` in
 * the calling node and finish with a JobRemoved signal, like systemd. Run as a script inside a
 * test node: `node fake-systemd.js BUS_ADDRESS`; it prints one line per call on stdout.
 * Also exports the dbus-daemon config for such a bus.
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

function sh(script: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', script], (err, stdout, stderr) => {
      process.stdout.write(`  ${script}: ${err ? `failed: ${stderr.trim()}` : 'ok'}\n`);
      resolve(!err);
    });
  });
}

class Manager extends dbus.interface.Interface {
  private job = 0;

  constructor() {
    super('org.freedesktop.systemd1.Manager');
  }

  Subscribe(): void {
    process.stdout.write('Subscribe\n');
  }

  private run(verb: string, unit: string, script: string): string {
    this.job += 1;
    const id = this.job;
    const path = `/org/freedesktop/systemd1/job/${id}`;
    process.stdout.write(`${verb} ${unit}\n`);
    setTimeout(() => {
      void sh(script).then((ok) => this.JobRemoved(id, path, unit, ok ? 'done' : 'failed'));
    }, 1);
    return path;
  }

  RestartUnit(unit: string, _mode: string): string {
    const m = /^wg-quick@(.+)\.service$/.exec(unit);
    return this.run('RestartUnit', unit, m ? `wg-quick down ${m[1]} 2>&1; wg-quick up ${m[1]}` : 'false');
  }

  StartUnit(unit: string, _mode: string): string {
    const m = /^wg-quick@(.+)\.service$/.exec(unit);
    return this.run('StartUnit', unit, m ? `ip link show ${m[1]} >/dev/null 2>&1 || wg-quick up ${m[1]}` : 'false');
  }

  StopUnit(unit: string, _mode: string): string {
    const m = /^wg-quick@(.+)\.service$/.exec(unit);
    return this.run('StopUnit', unit, m ? `wg-quick down ${m[1]}` : 'false');
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

/** Connects to the bus at `address`, takes org.freedesktop.systemd1 and serves the Manager. */
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
    process.stderr.write('usage: fake-systemd.js BUS_ADDRESS\n');
    process.exit(2);
  }
  serveFakeSystemd(address).then(() => process.stdout.write('fake systemd ready\n'), (err: unknown) => {
    process.stderr.write(`fake systemd: ${String(err)}\n`);
    process.exit(1);
  });
}
