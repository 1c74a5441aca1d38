/**
 * The packages' maintainer scripts where the distribution conventions differ from the booted
 * Debian install of package-lifecycle.test.ts:
 *  - the .deb installed and purged where systemd is not running (a chroot or an image build):
 *    enabled by symlink as debhelper does, but no systemctl call touches a service manager;
 *  - the .deb on a booted systemd where the admin said otherwise, which deb-systemd-helper and
 *    deb-systemd-invoke honour as they do for every debhelper package: a policy-rc.d that forbids
 *    starting services (containers, image builds), a preset that disables the unit, a mask, and
 *    a disable that a reinstall keeps;
 *  - the .rpm's scriptlets (taken from the package with `rpm -qp --qf`) run against a real
 *    systemd: %post applies the preset policy (Fedora's "disable *" leaves it disabled), %postun
 *    try-restarts on upgrade, %preun disables and stops on erase and not on upgrade.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { requireTools, run } from '../support/process.js';
import { TestNetwork } from '../support/namespaces/underlay.js';
import {
  buildPackages,
  debDependencies,
  debianRoot,
  NspawnContainer,
  ScratchRoot,
  type BuiltPackages,
} from '../support/machines/nspawn.js';

/** A systemctl that logs its arguments and then runs the real one. */
const SYSTEMCTL_LOGGER = '#!/bin/sh\necho "$*" >> /var/tmp/systemctl.log\nexec /usr/bin/systemctl "$@"\n';

/** systemctl verbs that act on a running service manager. */
const RUNTIME_VERBS = /\b(daemon-reload|start|stop|restart|try-restart|reload|reload-or-restart|--now|is-active)\b/;

describe('system: maintainer scripts (no systemd running; RPM scriptlets on a real systemd)', function () {
  this.timeout(10 * 60_000);

  let work: string;
  let pkg: BuiltPackages;
  let root: string;

  before(async () => {
    await requireTools(['debootstrap', 'systemd-nspawn', 'dpkg-deb', 'rpm', 'rpmbuild', 'nsenter', 'mount']);
    work = await mkdtemp(join(tmpdir(), 'wgs-scripts-'));
    pkg = await buildPackages(join(work, 'pk'));
    await run('rpm', ['--dbpath', join(work, 'rpmdb'), '--initdb']);
    root = await debianRoot({ prefetch: [...(await debDependencies(pkg.deb)), 'wireguard-go'] });
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  describe('the .deb where systemd is not running', () => {
    let s: ScratchRoot;
    let log = '';
    before(async () => {
      s = await ScratchRoot.create([root]);
      await writeFile(s.path('/usr/local/sbin/systemctl'), SYSTEMCTL_LOGGER, { mode: 0o755 });
      await writeFile(s.path(`/var/tmp/${basename(pkg.deb)}`), await readFile(pkg.deb));
      // The logger is on PATH and logs (so an empty log means no calls, not a broken logger).
      await s.exec(['systemctl', '--version']);
      assert.match(await readFile(s.path('/var/tmp/systemctl.log'), 'utf8'), /^--version$/m);
      await writeFile(s.path('/var/tmp/systemctl.log'), '');
    });
    after(async () => {
      await s?.remove();
    });

    it(
      'apt-get install enables the unit (symlink, as debhelper does) without any systemctl call to a ' +
        'manager, and says what to configure',
      async () => {
        assert.equal(
          (await s.exec(['test', '-d', '/run/systemd/system'], { allowFailure: true })).exitCode,
          1,
          'no systemd running in the scratch root',
        );
        const r = await s.exec(
          ['apt-get', 'install', '-y', '--no-install-recommends', `/var/tmp/${basename(pkg.deb)}`],
          {
            timeoutMs: 10 * 60_000,
          },
        );
        assert.match(r.stdout + r.stderr, /Setting up wg-overlay \(/);
        assert.match(r.stdout + r.stderr, /not configured yet/);
        assert.equal(
          (await s.exec(['readlink', '/etc/systemd/system/multi-user.target.wants/wg-overlay.service'])).stdout.trim(),
          '/lib/systemd/system/wg-overlay.service',
        );
        // The system user is there for the first start (systemd-sysusers needs no running systemd).
        assert.match(
          (await s.exec(['getent', 'passwd', 'wg-overlay'])).stdout,
          /^wg-overlay:x:\d+:\d+:.*:\/usr\/sbin\/nologin$/m,
        );
        log = await readFile(s.path('/var/tmp/systemctl.log'), 'utf8').catch(() => '');
        const runtime = log.split('\n').filter((l) => l.includes('wg-overlay') && RUNTIME_VERBS.test(l));
        assert.deepEqual(runtime, [], `systemctl calls that need a running systemd:\n${log}`);
      },
    );

    it(
      'apt-get purge removes state, kubeconfig, token and the wg-quick files wg-overlay wrote (only those), ' +
        'still without systemctl calls; the user stays',
      async () => {
        await s.exec([
          'sh',
          '-c',
          [
            'mkdir -p /var/lib/wg-overlay /etc/wireguard',
            'echo key > /var/lib/wg-overlay/private.key',
            'echo kc > /etc/wg-overlay/kubeconfig',
            'echo tok > /etc/wg-overlay/token',
            'printf "# managed by wg-overlay\\n[Interface]\\n" > /etc/wireguard/wg0.conf',
            'printf "[Interface]\\n" > /etc/wireguard/mine.conf',
            ': > /var/tmp/systemctl.log',
          ].join(' && '),
        ]);
        await s.exec(['apt-get', 'purge', '-y', 'wg-overlay'], { timeoutMs: 5 * 60_000 });
        for (const p of [
          '/var/lib/wg-overlay',
          '/etc/wg-overlay',
          '/etc/wireguard/wg0.conf',
          '/etc/systemd/system/multi-user.target.wants/wg-overlay.service',
        ]) {
          assert.equal((await s.exec(['test', '-e', p], { allowFailure: true })).exitCode, 1, `${p} removed by purge`);
        }
        assert.equal(
          (await s.exec(['test', '-f', '/etc/wireguard/mine.conf'], { allowFailure: true })).exitCode,
          0,
          'a wg-quick file wg-overlay did not write stays',
        );
        // Debian keeps system users on purge (files it owned may remain anywhere).
        assert.equal((await s.exec(['getent', 'passwd', 'wg-overlay'], { allowFailure: true })).exitCode, 0);
        log = await readFile(s.path('/var/tmp/systemctl.log'), 'utf8').catch(() => '');
        assert.deepEqual(
          log.split('\n').filter((l) => RUNTIME_VERBS.test(l)),
          [],
          `systemctl calls that need a running systemd:\n${log}`,
        );
      },
    );
  });

  describe('the .deb on a booted systemd: policy-rc.d, presets, masks and a disable are honoured', () => {
    let net: TestNetwork;
    let c: NspawnContainer;
    const apt = (...args: string[]) =>
      c.exec('apt-get', [...args, '-y', '--no-install-recommends'], {
        env: { DEBIAN_FRONTEND: 'noninteractive' },
        timeoutMs: 10 * 60_000,
      });
    const install = () => apt('install', `/var/tmp/${basename(pkg.deb)}`);
    /** Whether it is enabled, and whether it was ever started (postinst's start fails with 78 here: no kubeconfig). */
    const state = async (): Promise<{ enabled: string; started: boolean }> => ({
      enabled: (await c.exec('systemctl', ['is-enabled', 'wg-overlay'], { allowFailure: true })).stdout.trim(),
      started:
        (await c.show('wg-overlay', ['ExecMainStartTimestampMonotonic'])).ExecMainStartTimestampMonotonic !== '0',
    });

    before(async () => {
      net = await TestNetwork.create({ nodes: 1 });
      c = await NspawnContainer.boot({ name: 'wgs-deb-policy', layers: [root], netns: net.nodes[0]!.netns });
      await c.writeFile(`/var/tmp/${basename(pkg.deb)}`, await readFile(pkg.deb));
    });
    after(async () => {
      await c?.stop();
      await net?.destroy();
    });

    it('a policy-rc.d that forbids starting services (101): the unit is enabled, and not started', async () => {
      await c.writeFile('/usr/sbin/policy-rc.d', '#!/bin/sh\nexit 101\n', 0o755);
      await install();
      assert.deepEqual(await state(), { enabled: 'enabled', started: false });
      await c.exec('rm', ['/usr/sbin/policy-rc.d']);
      await apt('purge', 'wg-overlay');
    });

    it('a preset that disables wg-overlay.service: installed disabled, and not started', async () => {
      await c.writeFile('/etc/systemd/system-preset/10-wg-overlay.preset', 'disable wg-overlay.service\n');
      await install();
      assert.deepEqual(await state(), { enabled: 'disabled', started: false });
      await c.exec('rm', ['/etc/systemd/system-preset/10-wg-overlay.preset']);
      await apt('purge', 'wg-overlay');
    });

    it('a unit the admin masked: stays masked, and is not started', async () => {
      await c.exec('systemctl', ['mask', 'wg-overlay.service']);
      await install();
      assert.deepEqual(await state(), { enabled: 'masked', started: false });
      await c.exec('systemctl', ['unmask', 'wg-overlay.service']);
      await apt('purge', 'wg-overlay');
    });

    it("without any of them: enabled and started (exit 78 without a kubeconfig); an admin's disable survives remove and reinstall", async () => {
      await install();
      await c.waitForUnit('wg-overlay', ['ActiveState', 'ExecMainStatus'], (p) => p.ActiveState === 'failed');
      assert.deepEqual(await state(), { enabled: 'enabled', started: true });
      assert.equal((await c.show('wg-overlay', ['ExecMainStatus'])).ExecMainStatus, '78');
      await c.exec('systemctl', ['disable', 'wg-overlay.service']);
      await c.exec('systemctl', ['reset-failed', 'wg-overlay.service']);
      await apt('remove', 'wg-overlay');
      await install();
      assert.equal((await state()).enabled, 'disabled', 'the disable is kept');
      assert.equal(
        (await c.show('wg-overlay', ['ActiveState'])).ActiveState,
        'inactive',
        'a disabled unit is not started',
      );
      await apt('purge', 'wg-overlay');
    });
  });

  describe('the .rpm scriptlets on a booted systemd', () => {
    let net: TestNetwork;
    let c: NspawnContainer;
    const scriptlet = async (tag: 'POSTIN' | 'PREUN' | 'POSTUN'): Promise<string> =>
      (await run('rpm', ['--dbpath', join(work, 'rpmdb'), '-qp', '--qf', `%{${tag}}`, pkg.rpm])).stdout;
    const runScript = (name: string, arg: number) => c.exec('sh', [`/var/tmp/${name}`, String(arg)]);
    // `systemctl is-enabled` reads the unit files now; the UnitFileState property is cached until daemon-reload.
    const state = async (): Promise<Record<string, string>> => ({
      ...(await c.show('wg-overlay', ['LoadState', 'ActiveState', 'MainPID'])),
      enabled: (await c.exec('systemctl', ['is-enabled', 'wg-overlay'], { allowFailure: true })).stdout.trim(),
    });

    before(async () => {
      net = await TestNetwork.create({ nodes: 1 });
      c = await NspawnContainer.boot({ name: 'wgs-rpm', layers: [root], netns: net.nodes[0]!.netns });
      // The rpm's files, installed from the host into the container's root without scriptlets.
      await run('rpm', ['--root', c.root, '-i', '--nodeps', '--noscripts', pkg.rpm]);
      for (const [name, tag] of [
        ['post', 'POSTIN'],
        ['preun', 'PREUN'],
        ['postun', 'POSTUN'],
      ] as const)
        await c.writeFile(`/var/tmp/${name}`, await scriptlet(tag));
      // Fedora's policy: services are disabled unless a preset enables them.
      await c.writeFile('/etc/systemd/system-preset/99-default-disable.preset', 'disable *\n');
      // Something that can run here without a cluster: the scriptlets are what is tested.
      await c.writeFile(
        '/etc/systemd/system/wg-overlay.service.d/test.conf',
        '[Service]\nType=simple\nExecStart=\nExecStart=/bin/sleep infinity\n',
      );
    });
    after(async () => {
      await c?.stop();
      await net?.destroy();
    });

    it('%post on install ($1 = 1) applies the preset: disabled under Fedora\'s "disable *", enabled by an enabling preset', async () => {
      await runScript('post', 1);
      assert.deepEqual(await state(), {
        LoadState: 'loaded',
        enabled: 'disabled',
        ActiveState: 'inactive',
        MainPID: '0',
      });
      await c.writeFile('/etc/systemd/system-preset/50-wg-overlay.preset', 'enable wg-overlay.service\n');
      await runScript('post', 1);
      assert.equal((await state()).enabled, 'enabled');
      await runScript('post', 2);
      assert.equal((await state()).ActiveState, 'inactive', '%post never starts it');
    });

    it('%postun on upgrade ($1 >= 1) try-restarts a running service; %preun on upgrade leaves it alone', async () => {
      // An upgrade runs the new package's %post ($1 = 2) before the old one's %preun and %postun
      // ($1 = 1). It creates the user wg-overlay, without which the unit cannot start
      // (217/USER): this test must not depend on the install test above having run (--grep).
      await runScript('post', 2);
      const started = await c.exec('systemctl', ['start', 'wg-overlay'], { allowFailure: true });
      assert.equal(
        started.exitCode,
        0,
        `systemctl start wg-overlay: ${started.stderr}\n` +
          (await c.exec('journalctl', ['--no-pager', '-u', 'wg-overlay'], { allowFailure: true })).stdout,
      );
      const before = await state();
      assert.equal(before.ActiveState, 'active');
      await runScript('preun', 1);
      assert.deepEqual(await state(), before, '%preun 1 (upgrade) changes nothing');
      await runScript('postun', 1);
      const after = await c.waitForUnit(
        'wg-overlay',
        ['ActiveState', 'MainPID'],
        (p) => p.ActiveState === 'active' && p.MainPID !== before.MainPID && p.MainPID !== '0',
      );
      assert.notEqual(after.MainPID, before.MainPID, 'restarted');
    });

    it('%preun on erase ($1 = 0) disables and stops it; %postun on erase keeps /var/lib/wg-overlay', async () => {
      await c.exec('mkdir', ['-p', '/var/lib/wg-overlay']);
      await c.writeFile('/var/lib/wg-overlay/private.key', 'key\n', 0o600);
      await runScript('preun', 0);
      const s = await state();
      assert.equal(s.enabled, 'disabled');
      assert.equal(s.ActiveState, 'inactive');
      await runScript('postun', 0);
      assert.equal(
        (await c.exec('test', ['-f', '/var/lib/wg-overlay/private.key'], { allowFailure: true })).exitCode,
        0,
        'state kept on rpm erase',
      );
    });
  });
});
