/**
 * What the distributions' tools look at, checked without them: the changelog (one source,
 * packaging/changelog.yaml, written by nfpm-lite as nfpm writes it into both packages), the
 * maintainer scripts' use of debhelper's helpers, and the lintian overrides and rpmlint
 * configuration, each entry with its reason. Running lintian and rpmlint on built packages:
 * test/system/lint.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

interface ChangelogEntry {
  semver: string;
  date: Date;
  packager: string;
  changes: string[];
}
interface NfpmLiteChangelog {
  readChangelog(file: string): ChangelogEntry[];
  debChangelog(name: string, entries: ChangelogEntry[]): string;
  rpmChangelog(entries: ChangelogEntry[]): string;
  readNfpmYaml(file: string): Record<string, unknown>;
}
const lite = async (): Promise<NfpmLiteChangelog> =>
  (await import(pathToFileURL(resolve('packaging/nfpm-lite.mjs')).href)) as NfpmLiteChangelog;

/** A changelog in chglog's format, in a temporary file. */
function changelogFile(yaml: string): { file: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'wgo-chglog-'));
  const file = join(dir, 'changelog.yaml');
  writeFileSync(file, yaml);
  return { file, done: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Lines of a maintainer script that are not comments. */
const code = (file: string): string[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => !/^\s*#/.test(l));

const TWO_ENTRIES = `
- semver: 1.1.0-1
  date: 2024-01-02T03:04:05Z
  packager: P <p@example.invalid>
  deb:
    urgency: high
    distributions: [stable]
  changes:
    - note: "first\\nsecond\\n\\nthird"
    - note: other
- semver: 1.0.0-1
  date: 2024-01-01T00:00:00Z
  packager: P <p@example.invalid>
  changes:
    - note: old
`;

describe('unit: packaging: the changelog (packaging/changelog.yaml)', () => {
  it("names the version being built first: package.json's version and nfpm.yaml's release; dated, newest first, short lines", async () => {
    const l = await lite();
    const entries = l.readChangelog('packaging/changelog.yaml');
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    const nfpm = l.readNfpmYaml('nfpm.yaml');
    assert.equal(nfpm.changelog, 'packaging/changelog.yaml');
    assert.equal(entries[0]?.semver, `${pkg.version}-${String(nfpm.release)}`, 'add an entry for the new version');
    assert.equal(entries[0]?.packager, nfpm.maintainer);
    for (const [i, e] of entries.entries()) {
      assert.ok(
        e.date.getTime() <= Date.now(),
        `${e.semver}: not dated in the future (rpmlint: changelog-time-in-future)`,
      );
      if (i > 0) assert.ok(e.date < entries[i - 1]!.date, `${e.semver}: older than the entry above it`);
      assert.ok(e.changes.length > 0, `${e.semver}: says what changed`);
      for (const c of e.changes)
        assert.ok(!c.includes('\n') && c.length <= 72, `one line of at most 72 characters: ${c}`);
    }
  });

  it("is written in Debian's format as chglog's Debian template (nfpm's changelog.Debian.gz) writes it", async () => {
    const l = await lite();
    const { file, done } = changelogFile(TWO_ENTRIES);
    try {
      assert.equal(
        l.debChangelog('wg-overlay', l.readChangelog(file)),
        [
          'wg-overlay (1.1.0-1) stable; urgency=high',
          '  * first',
          '   - second',
          '   - third',
          '  * other',
          '',
          ' -- P <p@example.invalid>  Tue, 02 Jan 2024 03:04:05 +0000',
          '',
          'wg-overlay (1.0.0-1)',
          '  * old',
          '',
          ' -- P <p@example.invalid>  Mon, 01 Jan 2024 00:00:00 +0000',
          '',
        ].join('\n'),
      );
    } finally {
      done();
    }
  });

  it('is written as an rpm %changelog as nfpm writes it: newest first, "PACKAGER - SEMVER", one "- " line per change', async () => {
    const l = await lite();
    const { file, done } = changelogFile(TWO_ENTRIES);
    try {
      const entries = l.readChangelog(file).reverse();
      assert.equal(
        l.rpmChangelog(entries),
        [
          '* Tue Jan 02 2024 P <p@example.invalid> - 1.1.0-1',
          '- first',
          'second',
          'third',
          '- other',
          '',
          '* Mon Jan 01 2024 P <p@example.invalid> - 1.0.0-1',
          '- old',
          '',
        ].join('\n'),
      );
    } finally {
      done();
    }
  });
});

describe('unit: packaging: maintainer scripts as debhelper writes them, linters configured with reasons', () => {
  it('the .deb scripts enable with deb-systemd-helper and start, restart and stop with deb-systemd-invoke: systemctl only for daemon-reload', () => {
    for (const s of ['postinst', 'prerm', 'postrm']) {
      const lines = code(`packaging/scripts/deb/${s}`);
      // lintian's maintainer-script-calls-systemctl, and command-with-path-in-maintainer-script.
      for (const line of lines) {
        if (/^(?:.+;)?\s*systemctl\b/.test(line)) assert.match(line, /daemon-reload/, `${s}: ${line}`);
        assert.doesNotMatch(line, /\/usr\/sbin\/policy-rc\.d/, `${s}: deb-systemd-invoke asks policy-rc.d`);
      }
    }
    const postinst = code('packaging/scripts/deb/postinst').join('\n');
    assert.match(postinst, /deb-systemd-helper --quiet was-enabled "\$UNIT"/);
    assert.match(postinst, /deb-systemd-helper enable "\$UNIT"/);
    assert.match(postinst, /deb-systemd-invoke try-restart "\$UNIT"/);
    assert.match(postinst, /deb-systemd-invoke start "\$UNIT"/);
    assert.match(
      code('packaging/scripts/deb/prerm').join('\n'),
      /"\$1" = remove .*\n\s+deb-systemd-invoke stop wg-overlay\.service/,
    );
    assert.match(code('packaging/scripts/deb/postrm').join('\n'), /deb-systemd-helper mask "\$UNIT"/);
  });

  it('every lintian override and every rpmlint filter has its reason on the line above; lint.sh is valid bash', () => {
    const overrides = readFileSync('packaging/lintian/wg-overlay', 'utf8').split('\n');
    const tags = overrides.filter((l) => l !== '' && !l.startsWith('#'));
    assert.ok(tags.length > 0);
    for (const [i, line] of overrides.entries()) {
      if (line === '' || line.startsWith('#')) continue;
      assert.match(line, /^wg-overlay: [a-z0-9.+-]+( .*)?$/, `an override: ${line}`);
      assert.match(overrides[i - 1] ?? '', /^# \S/, `the reason for ${line}`);
    }
    const toml = readFileSync('packaging/rpmlint.toml', 'utf8').split('\n');
    const filters = toml.filter((l) => /^\s+'.*',$/.test(l));
    assert.ok(filters.length > 0);
    for (const [i, line] of toml.entries()) {
      if (/^\s+'.*',$/.test(line)) assert.match(toml[i - 1] ?? '', /^\s+# \S/, `the reason for ${line.trim()}`);
      else if (/^[A-Za-z]+ = /.test(line) && !line.startsWith('Filters = '))
        assert.match(toml[i - 1] ?? '', /^# \S/, `the reason for ${line}`);
    }
    assert.ok(!toml.some((l) => l.includes('no-signature')), 'the missing signature stays visible');
    const r = spawnSync('bash', ['-n', 'packaging/lint.sh'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
});
