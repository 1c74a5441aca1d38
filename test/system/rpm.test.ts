/**
 * The .rpm built from the same nfpm.yaml: its metadata, relations, files, config flags and
 * scriptlets as `rpm -q…p` reports them (scratch --dbpath), and its layout and modes once
 * installed with `rpm --root` into an empty scratch root. The scratch root has no /bin/sh, so
 * the install runs with --noscripts --nodeps; the scriptlets themselves run in
 * maintainer-scripts.test.ts, against a real systemd.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTools, run } from '../support/process.js';
import { buildPackages, type BuiltPackages } from '../support/machines/nspawn.js';

/** What the rpm installs: path, type (d: dir, f: file), mode. */
const LAYOUT: Array<[string, 'd' | 'f', number]> = [
  ['/etc/wg-overlay', 'd', 0o755],
  ['/etc/wg-overlay/wg-overlay.conf', 'f', 0o644],
  ['/usr/bin/wg-overlay', 'f', 0o755],
  ['/usr/lib/systemd/system/wg-overlay-fail-closed.service', 'f', 0o644],
  ['/usr/lib/systemd/system/wg-overlay.service', 'f', 0o644],
  ['/usr/lib/systemd/system/wg-quick@.service.d/wg-overlay.conf', 'f', 0o644],
  ['/usr/lib/sysusers.d/wg-overlay.conf', 'f', 0o644],
  ['/usr/lib/wg-overlay', 'd', 0o755],
  ['/usr/lib/wg-overlay/notify-socket', 'f', 0o755],
  ['/usr/lib/wg-overlay/polkit-interface', 'f', 0o755],
  ['/usr/lib/wg-overlay/secrets-access', 'f', 0o755],
  ['/usr/lib/wg-overlay/wg-overlay.mjs', 'f', 0o644],
  ['/usr/lib/wg-overlay/wg-quick-hook', 'f', 0o755],
  ['/usr/lib/wg-overlay/wireguard-go', 'f', 0o755],
  ['/usr/share/bash-completion/completions/wg-overlay', 'f', 0o644],
  ['/usr/share/doc/wg-overlay', 'd', 0o755],
  ['/usr/share/doc/wg-overlay/copyright', 'f', 0o644],
  ['/usr/share/doc/wg-overlay/install.md', 'f', 0o644],
  ['/usr/share/doc/wg-overlay/metrics.md', 'f', 0o644],
  ['/usr/share/man/man5/wg-overlay.conf.5.gz', 'f', 0o644],
  ['/usr/share/man/man8/wg-overlay.8.gz', 'f', 0o644],
  ['/usr/share/polkit-1/rules.d/10-wg-overlay.rules', 'f', 0o644],
  ['/usr/share/wg-overlay', 'd', 0o755],
  ['/usr/share/wg-overlay/kubernetes', 'd', 0o755],
  ['/usr/share/wg-overlay/kubernetes/connect-rbac.yaml', 'f', 0o644],
  ['/usr/share/wg-overlay/kubernetes/crd-peer.yaml', 'f', 0o644],
  ['/usr/share/wg-overlay/kubernetes/node-policy.yaml', 'f', 0o644],
  ['/usr/share/wg-overlay/kubernetes/rbac.yaml', 'f', 0o644],
  ['/usr/share/wg-overlay/monitoring', 'd', 0o755],
  ['/usr/share/wg-overlay/monitoring/wg-overlay-alerts.yaml', 'f', 0o644],
  ['/usr/share/wg-overlay/monitoring/wg-overlay-dashboard.json', 'f', 0o644],
];

describe('system: the .rpm (rpm -qp and rpm --root)', function () {
  this.timeout(5 * 60_000);

  let work: string;
  let pkg: BuiltPackages;
  let db: string;
  const rpmq = async (...args: string[]): Promise<string> =>
    (await run('rpm', ['--dbpath', db, ...args, pkg.rpm])).stdout;

  before(async () => {
    await requireTools(['rpm', 'rpmbuild', 'dpkg-deb']);
    work = await mkdtemp(join(tmpdir(), 'wgs-rpm-'));
    db = join(work, 'db');
    pkg = await buildPackages(join(work, 'pk'));
    await run('rpm', ['--dbpath', db, '--initdb']);
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('rpm -qip: name, version, release, noarch, license, summary', async () => {
    const info = await rpmq('-qip');
    const field = (k: string): string => new RegExp(`^${k}\\s*: (.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
    assert.equal(field('Name'), 'wg-overlay');
    assert.equal(field('Version'), pkg.version);
    assert.equal(field('Release'), '1');
    assert.equal(field('Architecture'), 'noarch');
    assert.equal(field('License'), 'Apache-2.0');
    assert.equal(field('Summary'), 'WireGuard mesh between the nodes of a Kubernetes cluster');
    assert.match(
      pkg.rpm,
      new RegExp(`/wg-overlay-${pkg.version.replace(/\./g, '\\.')}-1\\.noarch\\.rpm$`),
      "nfpm's file name",
    );
  });

  it('rpm -qp --changelog: the entries of packaging/changelog.yaml, newest first, the newest naming this version', async () => {
    const log = await rpmq('-qp', '--changelog');
    const heads = log.split('\n').filter((l) => l.startsWith('* '));
    assert.ok(heads.length > 0, log);
    assert.match(
      heads[0]!,
      /^\* \w{3} \w{3} \d{2} \d{4} wg-overlay maintainers <wg-overlay@example\.invalid> - \S+-1$/,
    );
    const changelog = await readFile('packaging/changelog.yaml', 'utf8');
    const newest = /^- semver: (\S+)$/m.exec(changelog)?.[1];
    assert.ok(heads[0]!.endsWith(` - ${newest}`));
    assert.equal(heads.length, [...changelog.matchAll(/^- semver: /gm)].length);
  });

  it(
    'rpm -qp --requires/--suggests: nodejs >= 18.19, wireguard-tools, iproute, kill, polkit, nftables, setpriv, ' +
      'unshare, perl(Socket), perl(POSIX); wireguard-go only suggested; no automatic requires',
    async () => {
      const requires = (await rpmq('-qp', '--requires'))
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('rpmlib('));
      assert.deepEqual(
        requires.sort(),
        [
          '/bin/sh',
          '/bin/sh',
          '/bin/sh',
          '/usr/bin/kill',
          '/usr/bin/setpriv',
          '/usr/bin/unshare',
          'iproute',
          'nftables',
          'nodejs >= 18.19',
          'perl(POSIX)',
          'perl(Socket)',
          'polkit',
          'wireguard-tools',
        ].sort(),
      );
      assert.deepEqual((await rpmq('-qp', '--suggests')).trim().split('\n'), ['wireguard-go']);
      assert.equal((await rpmq('-qp', '--recommends')).trim(), '');
    },
  );

  it('rpm -qlp/-qcp: the files of nfpm.yaml, the config file %config(noreplace), docs flagged', async () => {
    const files = (await rpmq('-qlp')).trim().split('\n');
    assert.deepEqual(
      files,
      LAYOUT.map(([p]) => p),
    );
    assert.deepEqual((await rpmq('-qcp')).trim().split('\n'), ['/etc/wg-overlay/wg-overlay.conf']);
    const flags = Object.fromEntries(
      (
        await rpmq(
          '-qp',
          '--qf',
          '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]',
        )
      )
        .trim()
        .split('\n')
        .map((l) => {
          const [p, ...rest] = l.split(' ');
          return [p, rest.join(' ')];
        }),
    );
    assert.equal(flags['/etc/wg-overlay/wg-overlay.conf'], 'cn -rw-r--r-- root:root', 'config + noreplace');
    assert.equal(flags['/usr/share/doc/wg-overlay/install.md'], 'd -rw-r--r-- root:root');
    assert.equal(flags['/usr/share/doc/wg-overlay/copyright'], 'dl -rw-r--r-- root:root', '%license (implies doc)');
    assert.equal(flags['/usr/bin/wg-overlay'], ' -rwxr-xr-x root:root');
    assert.equal(flags['/usr/share/man/man8/wg-overlay.8.gz'], 'd -rw-r--r-- root:root', 'manual pages are docs');
    assert.equal(flags['/usr/lib/wg-overlay'], ' drwxr-xr-x root:root');
  });

  it(
    'rpm -qp --scripts: Fedora-style %post (preset), %preun (disable --now on erase), %postun ' +
      '(try-restart on upgrade), systemd calls guarded',
    async () => {
      const scripts = await rpmq('-qp', '--scripts');
      const part = (name: string): string =>
        new RegExp(`^${name} scriptlet \\(using /bin/sh\\):\\n([\\s\\S]*?)(?=^\\w+ scriptlet|$(?![\\s\\S]))`, 'm').exec(
          scripts,
        )?.[1] ?? '';
      const post = part('postinstall');
      const preun = part('preuninstall');
      const postun = part('postuninstall');
      assert.match(post, /if \[ "\$1" -eq 1 \] .*\n\s+systemctl --no-reload preset wg-overlay\.service/);
      const code = (body: string): string =>
        body
          .split('\n')
          .filter((l) => !/^\s*#/.test(l))
          .join('\n');
      assert.doesNotMatch(
        code(post),
        /systemctl (--no-reload )?(enable|start)/,
        'RPM convention: no enable/start on install',
      );
      assert.match(preun, /if \[ "\$1" -eq 0 \]/);
      assert.match(preun, /systemctl --no-reload disable --now wg-overlay\.service/);
      assert.match(postun, /if \[ "\$1" -ge 1 \]; then\n\s+systemctl --no-block try-restart wg-overlay\.service/);
      assert.doesNotMatch(postun, /rm -rf/, 'RPM erase keeps /var/lib/wg-overlay (documented)');
      for (const [name, body] of [
        ['post', post],
        ['preun', preun],
        ['postun', postun],
      ] as const) {
        assert.ok(body.length > 0, `${name} scriptlet present`);
        const r = await run('sh', ['-n'], { input: body, allowFailure: true });
        assert.equal(r.exitCode, 0, `${name} is valid sh: ${r.stderr}`);
      }
      assert.equal(part('preinstall'), '', 'no %pre');
    },
  );

  it('rpm --root SCRATCH -i --nodeps --noscripts installs that layout with its modes; -V is clean; -e removes it', async () => {
    const root = join(work, 'root');
    await run('rpm', ['--root', root, '--initdb']);
    await run('rpm', ['--root', root, '-i', '--nodeps', '--noscripts', pkg.rpm]);
    for (const [p, type, mode] of LAYOUT) {
      const st = await stat(join(root, p));
      assert.equal(
        type === 'd' ? st.isDirectory() : st.isFile(),
        true,
        `${p} is a ${type === 'd' ? 'directory' : 'file'}`,
      );
      assert.equal(st.mode & 0o7777, mode, `${p}: mode ${(st.mode & 0o7777).toString(8)}`);
      assert.equal(st.uid, 0, `${p} owned by root`);
    }
    const bundle = await stat(join(root, '/usr/lib/wg-overlay/wg-overlay.mjs'));
    assert.ok(bundle.size > 100_000, 'the bundled runtime is in place');
    assert.equal(
      (await run('rpm', ['--root', root, '-V', '--nodeps', 'wg-overlay'], { allowFailure: true })).stdout,
      '',
    );
    const q = await run('rpm', ['--root', root, '-q', 'wg-overlay']);
    assert.equal(q.stdout.trim(), `wg-overlay-${pkg.version}-1.noarch`);
    await run('rpm', ['--root', root, '-e', '--nodeps', '--noscripts', 'wg-overlay']);
    for (const [p] of LAYOUT) {
      await assert.rejects(stat(join(root, p)), `${p} removed on erase`);
    }
  });
});
