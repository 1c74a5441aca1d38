/**
 * sd_notify without systemd: a perl stand-in for systemd's notification socket (a bound unix
 * datagram socket that prints what it receives) and the real packaging/libexec/notify-socket,
 * which hands the daemon a connected datagram socket. The daemon's Notifier writes its messages
 * there itself (no child process), falls back to systemd-notify when that socket is unusable,
 * and does nothing without NOTIFY_SOCKET. (That systemd attributes the datagrams to the main PID,
 * so NotifyAccess=main works for the unprivileged service, is checked in the system tier.)
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { requireTools, run, spawnProcess, type TestProcess } from '../../support/process.js';

/** Receives datagrams on PATH and prints each as one JSON string per line. */
const RECEIVER = `
use strict; use warnings; use Socket qw(PF_UNIX SOCK_DGRAM pack_sockaddr_un);
my $p = shift; unlink $p;
socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or die "socket: $!";
bind($s, pack_sockaddr_un($p)) or die "bind: $!";
$| = 1; print "listening\\n";
while (1) { my $buf; defined(recv($s, $buf, 65536, 0)) or die "recv: $!"; $buf =~ s/\\\\/\\\\\\\\/g; $buf =~ s/\\n/\\\\n/g; print "dgram:$buf\\n"; }
`;

/** A script that sends what the daemon sends, through the compiled Notifier, then exits. */
const SENDER = (distNotify: string): string => `
import { createNotifier } from ${JSON.stringify(distNotify)};
const lines = [];
const log = { warning: (m) => lines.push('warning: ' + m), info() {}, notice() {}, error() {}, debug() {} };
const n = createNotifier(log);
await n.ready('mesh applied: 2 peers\\nsecond line');
await n.status('reconciling');
await n.reloading();
await n.stopping();
console.log(JSON.stringify({ pid: process.pid, lines }));
`;

describe('integration: sd_notify through an inherited datagram socket (packaging/libexec/notify-socket)', function () {
  this.timeout(30_000);
  let dir: string;
  let sock: string;
  let receiver: TestProcess;
  let script: string;

  before(async () => {
    await requireTools(['perl', 'node', 'systemd-notify']);
    dir = await mkdtemp(join(tmpdir(), 'wgo-notify-'));
    sock = join(dir, 'notify');
    await writeFile(join(dir, 'receiver.pl'), RECEIVER);
    script = join(dir, 'sender.mjs');
    await writeFile(script, SENDER(resolve('dist/service/src/systemd/notify.js')));
    receiver = spawnProcess('perl', [join(dir, 'receiver.pl'), sock], { env: { PATH: process.env.PATH ?? '' } });
    await receiver.waitForOutput('listening');
  });

  after(async () => {
    await receiver?.stop('SIGKILL', 0);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const received = (): string[] =>
    receiver
      .output()
      .split('\n')
      .filter((l) => l.startsWith('dgram:'))
      .map((l) => l.slice(6).replace(/\\n/g, '\n').replace(/\\\\/g, '\\'));
  const sent = async (
    env: Record<string, string>,
    viaHelper: boolean,
  ): Promise<{ pid: number; lines: string[]; datagrams: string[] }> => {
    const before = received().length;
    const cmd = viaHelper ? ['perl', resolve('packaging/libexec/notify-socket'), 'node', script] : ['node', script];
    const r = await run(cmd[0]!, cmd.slice(1), { env: { PATH: process.env.PATH ?? '', ...env } });
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { pid: number; lines: string[] };
    const deadline = Date.now() + (env.NOTIFY_SOCKET ? 5_000 : 300);
    while (received().length < before + (env.WG_OVERLAY_NOTIFY_FD ? 8 : 4) && Date.now() < deadline)
      await new Promise((res) => setTimeout(res, 20));
    return { ...out, datagrams: received().slice(before) };
  };

  it('through notify-socket: one datagram per notification, written by the daemon itself, status kept to one line', async () => {
    const r = await sent({ NOTIFY_SOCKET: sock }, true);
    assert.deepEqual(r.lines, [], 'no warnings');
    assert.deepEqual(r.datagrams, [
      'READY=1\nSTATUS=mesh applied: 2 peers second line',
      'STATUS=reconciling',
      'RELOADING=1',
      'STOPPING=1',
    ]);
  });

  it('an abstract NOTIFY_SOCKET ("@name") works too', async () => {
    const name = `wgo-notify-test-${process.pid}`;
    const abstract = spawnProcess('perl', ['-e', RECEIVER.replace('unlink $p;', '$p =~ s/^@/\\0/;'), `@${name}`], {
      env: { PATH: process.env.PATH ?? '' },
    });
    try {
      await abstract.waitForOutput('listening');
      await run('perl', [resolve('packaging/libexec/notify-socket'), 'node', script], {
        env: { PATH: process.env.PATH ?? '', NOTIFY_SOCKET: `@${name}` },
      });
      await abstract.waitForOutput('dgram:STOPPING=1');
      assert.match(abstract.output(), /dgram:READY=1\\nSTATUS=mesh applied/);
    } finally {
      await abstract.stop('SIGKILL', 0);
    }
  });

  it('a descriptor that is not a socket: one warning, then systemd-notify carries the same messages', async () => {
    const r = await sent({ NOTIFY_SOCKET: sock, WG_OVERLAY_NOTIFY_FD: '99' }, false);
    assert.equal(r.lines.length, 1, r.lines.join('\n'));
    assert.match(r.lines[0]!, /file descriptor 99 \(WG_OVERLAY_NOTIFY_FD\) failed: .*using systemd-notify from now on/);
    // systemd-notify 252 adds MAINPID=<the daemon> to each message and follows it with BARRIER=1.
    const ours = r.datagrams.filter((d) => d !== 'BARRIER=1').map((d) => d.split('\n'));
    assert.ok(
      ours.every((lines) => lines.includes(`MAINPID=${r.pid}`)),
      ours.join(' | '),
    );
    assert.deepEqual(
      ours.map((lines) => lines.filter((l) => !l.startsWith('MAINPID=')).join('\n')),
      ['READY=1\nSTATUS=mesh applied: 2 peers second line', 'STATUS=reconciling', 'RELOADING=1', 'STOPPING=1'],
    );
  });

  it('without NOTIFY_SOCKET nothing is sent, and notify-socket only runs the command', async () => {
    const r = await sent({}, true);
    assert.deepEqual(r.lines, []);
    assert.deepEqual(r.datagrams, []);
  });
});
