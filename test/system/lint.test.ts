/**
 * The packages as the distributions' own tools judge them: lintian (Debian) on the .deb and
 * rpmlint (Fedora, openSUSE) on the .rpm, run by packaging/lint.sh on packages freshly built by
 * packaging/build.sh, report nothing that packaging/lintian/wg-overlay or packaging/rpmlint.toml
 * do not override with a reason (rpmlint's missing signature aside: packages are signed when
 * they are published). The tools are installed from Debian's archive when they are missing; the
 * test is skipped, saying why, only when that is impossible.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../support/process.js';
import { buildPackages, type BuiltPackages } from '../support/machines/nspawn.js';

/** Whether a command is on PATH. */
async function have(cmd: string): Promise<boolean> {
  return !(await run('sh', ['-c', `command -v ${cmd}`], { allowFailure: true })).failed;
}

/** Installs lintian and rpmlint with apt when one is missing; the reason they cannot be, or undefined. */
async function ensureLinters(): Promise<string | undefined> {
  if ((await have('lintian')) && (await have('rpmlint'))) return undefined;
  if (!(await have('apt-get'))) return 'lintian or rpmlint is missing and there is no apt-get to install them';
  const r = await run(
    'apt-get',
    ['-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '-qq', '--no-install-recommends', 'lintian', 'rpmlint'],
    { allowFailure: true, timeoutMs: 10 * 60_000, env: { DEBIAN_FRONTEND: 'noninteractive' } },
  );
  if (r.failed) return `apt-get install lintian rpmlint failed:\n${r.stderr.trim()}`;
  return (await have('lintian')) && (await have('rpmlint')) ? undefined : 'lintian or rpmlint is still missing';
}

describe('system: lintian and rpmlint on the freshly built packages (packaging/lint.sh)', function () {
  this.timeout(15 * 60_000);

  let work: string;
  let pkg: BuiltPackages;

  before(async function () {
    const missing = await ensureLinters();
    if (missing) {
      console.log(`      SKIPPED: the distributions' package checkers cannot be installed here: ${missing}`);
      this.skip();
    }
    work = await mkdtemp(join(tmpdir(), 'wgs-lint-'));
    pkg = await buildPackages(join(work, 'pk'));
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('lintian: no error, warning or info tag; every override used; rpmlint: no error but no-signature, no warning', async () => {
    const r = await run('bash', ['packaging/lint.sh', pkg.deb, pkg.rpm], { allowFailure: true, timeoutMs: 5 * 60_000 });
    const out = r.stdout + r.stderr;
    console.log(
      out
        .split('\n')
        .filter((l) => /^(lintian|rpmlint): /.test(l))
        .map((l) => `      (${l})`)
        .join('\n'),
    );
    assert.equal(r.exitCode, 0, `packaging/lint.sh reports:\n${out}`);
    assert.match(out, /^lintian: 0 errors, 0 warnings, 0 info tags; \d+ overridden/m);
    assert.match(out, /^rpmlint: 1 errors \(1 of them no-signature\), 0 warnings/m);
    assert.doesNotMatch(out, /unused-override|mismatched-override/);
  });

  it('a regression fails the check: a maintainer script calling systemctl start is reported by lintian', async () => {
    // The same package with one line changed, repacked with dpkg-deb.
    const dir = join(work, 'bad');
    await run('dpkg-deb', ['-R', pkg.deb, dir]);
    await run('sh', ['-c', `printf 'systemctl start wg-overlay.service\\n' >> "$1/DEBIAN/postinst"`, 'sh', dir]);
    const bad = join(work, 'bad.deb');
    await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-b', dir, bad]);
    const r = await run('bash', ['packaging/lint.sh', bad, pkg.rpm], { allowFailure: true, timeoutMs: 5 * 60_000 });
    assert.equal(r.exitCode, 1);
    assert.match(r.stdout, /^W: wg-overlay: maintainer-script-calls-systemctl \[postinst:\d+\]$/m);
  });
});
