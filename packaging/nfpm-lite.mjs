#!/usr/bin/env node
// Builds the .deb and the .rpm that `nfpm pkg` would build from nfpm.yaml, with dpkg-deb and
// rpmbuild, for machines where nfpm cannot be installed. nfpm.yaml stays the only package
// description: this reads it (the subset of nfpm's format that wg-overlay uses, anything else is
// refused with an error rather than silently ignored) and follows nfpm's conventions: env
// expansion in version/release/arch/maintainer/vendor and the relation lists, per-packager
// `overrides` and `contents[].packager`, semver versions (prerelease as ~pre), conffiles for
// config types, file modes from file_info.mode (else the source mode minus umask 002), nfpm's
// file names (name_version-release_arch.deb, name-version-release.arch.rpm), and the changelog
// (goreleaser/chglog's YAML) written as nfpm writes it: /usr/share/doc/NAME/changelog.Debian.gz
// from chglog's Debian template, and the rpm's %changelog from nfpm's rpm notes template.
//
//   node packaging/nfpm-lite.mjs deb|rpm [--config nfpm.yaml] [--target DIR]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

/** Fields of nfpm.yaml this builder understands (others make it stop). */
const KNOWN_TOP = new Set([
  'name',
  'arch',
  'platform',
  'version',
  'version_schema',
  'release',
  'epoch',
  'prerelease',
  'version_metadata',
  'section',
  'priority',
  'maintainer',
  'vendor',
  'homepage',
  'license',
  'description',
  'umask',
  'depends',
  'recommends',
  'suggests',
  'conflicts',
  'provides',
  'replaces',
  'contents',
  'scripts',
  'overrides',
  'rpm',
  'deb',
  'changelog',
]);
const OVERRIDABLE = [
  'depends',
  'recommends',
  'suggests',
  'conflicts',
  'provides',
  'replaces',
  'contents',
  'scripts',
  'umask',
];
const RELATIONS = ['depends', 'recommends', 'suggests', 'conflicts', 'provides', 'replaces'];
const SUPPORTED_TYPES = new Set([
  '',
  'config',
  'config|noreplace',
  'doc',
  'license',
  'licence',
  'readme',
  'dir',
  'symlink',
]);
const SCRIPT_KEYS = ['preinstall', 'postinstall', 'preremove', 'postremove'];

/** nfpm (GOARCH) architecture names → deb and rpm names. */
const DEB_ARCH = {
  all: 'all',
  amd64: 'amd64',
  arm64: 'arm64',
  386: 'i386',
  arm7: 'armhf',
  arm6: 'armel',
  arm5: 'armel',
  ppc64le: 'ppc64el',
  s390x: 's390x',
  riscv64: 'riscv64',
};
const RPM_ARCH = {
  all: 'noarch',
  amd64: 'x86_64',
  arm64: 'aarch64',
  386: 'i386',
  arm7: 'armv7hl',
  arm6: 'armv6hl',
  arm5: 'armv5tel',
  ppc64le: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

/** Like Go's os.ExpandEnv: $VAR and ${VAR}; unset variables expand to ''. */
export function expandEnv(text, env = process.env) {
  return String(text).replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_m, a, b) => env[a ?? b] ?? '',
  );
}

function fail(msg) {
  throw new Error(`nfpm-lite: ${msg}`);
}

/** Reads nfpm.yaml (YAML 1.1 like nfpm's parser, so `mode: 0644` is octal). */
export function readNfpmYaml(file) {
  const doc = YAML.parse(readFileSync(file, 'utf8'), { version: '1.1' });
  if (!doc || typeof doc !== 'object') fail(`${file}: not a YAML mapping`);
  return doc;
}

/** Splits a semver-ish version like nfpm: 1.2.3-rc1+git → { version: 1.2.3, prerelease: rc1, metadata: git }. */
export function parseSemver(v) {
  const m = /^v?(\d+(?:\.\d+){0,2})(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$/.exec(v);
  if (!m) return undefined;
  const parts = m[1].split('.');
  while (parts.length < 3) parts.push('0');
  return { version: parts.join('.'), prerelease: m[2] ?? '', metadata: m[3] ?? '' };
}

/**
 * Reads a changelog in goreleaser/chglog's format (what nfpm's `changelog:` names): a YAML list
 * of entries, each with semver, date, packager, optional deb.urgency/deb.distributions, and
 * changes[].note. Returns the entries as given (nfpm keeps the file's order for the .deb).
 */
export function readChangelog(file) {
  const entries = YAML.parse(readFileSync(file, 'utf8'));
  if (!Array.isArray(entries)) fail(`${file}: a changelog is a YAML list of entries`);
  return entries.map((e, i) => {
    const where = `${file}: entry ${i + 1}`;
    for (const k of Object.keys(e ?? {}))
      if (!['semver', 'date', 'packager', 'deb', 'changes', 'notes'].includes(k))
        fail(`${where}: unsupported field "${k}"`);
    const date = new Date(e.date);
    if (!e.semver || Number.isNaN(date.getTime()) || !e.packager)
      fail(`${where}: semver, date and packager are required`);
    const changes = (e.changes ?? []).map((c) => String(c.note ?? ''));
    return { semver: String(e.semver), date, packager: String(e.packager), deb: e.deb, changes };
  });
}

/** Go's time.Format("Mon, 02 Jan 2006 15:04:05 -0700") in UTC, as chglog's Debian template writes it. */
const debDate = (d) => d.toUTCString().replace(/GMT$/, '+0000');

/** "Mon Jan 02 2006", the date of an rpm %changelog entry (in UTC). */
function rpmDate(d) {
  const [weekday, day, month, year] = d.toUTCString().replace(',', '').split(' ');
  return `${weekday} ${month} ${day} ${year}`;
}

/** The changelog in Debian's format: chglog's DebTemplate, trimmed, as nfpm writes it. */
export function debChangelog(name, entries) {
  const text = entries
    .map((e) => {
      const dists = e.deb ? ` ${(e.deb.distributions ?? []).join(' ')}; urgency=${e.deb.urgency || 'low'}` : '';
      const changes = e.changes.map((note) => {
        const [first, ...rest] = note.split('\n');
        return [`  * ${first}`, ...rest.filter((l) => l.trim() !== '').map((l) => `   - ${l}`)].join('\n');
      });
      return `${name} (${e.semver})${dists}\n${changes.join('\n')}\n\n -- ${e.packager}  ${debDate(e.date)}\n`;
    })
    .join('\n');
  return `${text.trim()}\n`;
}

/** The changelog as an rpm spec's %changelog: nfpm's entries, newest first, "PACKAGER - SEMVER". */
export function rpmChangelog(entries) {
  return [...entries]
    .sort((a, b) => b.date - a.date)
    .map((e) => {
      const notes = e.changes
        .map((note) => {
          const [first, ...rest] = note.split('\n');
          return [`- ${first}`, ...rest.filter((l) => l.trim() !== '')].join('\n');
        })
        .join('\n');
      return `* ${rpmDate(e.date)} ${e.packager} - ${e.semver}\n${notes.trim()}\n`;
    })
    .join('\n');
}

/**
 * The package as nfpm would see it for one packager: env expanded, overrides applied, contents
 * filtered by `packager`, version split. `root` resolves `src` paths; `env` feeds expansion.
 */
export function resolvePackage(raw, packager, { root = process.cwd(), env = process.env } = {}) {
  if (packager !== 'deb' && packager !== 'rpm') fail(`unknown packager ${packager}`);
  for (const k of Object.keys(raw)) if (!KNOWN_TOP.has(k)) fail(`unsupported field "${k}" in nfpm.yaml`);
  const cfg = { ...raw };
  const ov = raw.overrides?.[packager] ?? {};
  for (const k of Object.keys(ov)) {
    if (!OVERRIDABLE.includes(k) && k !== 'deb' && k !== 'rpm') fail(`unsupported override "${packager}.${k}"`);
    if (OVERRIDABLE.includes(k)) cfg[k] = ov[k];
  }
  for (const k of Object.keys(raw.overrides ?? {}))
    if (!['deb', 'rpm', 'apk', 'archlinux', 'ipk'].includes(k)) fail(`unknown override target "${k}"`);

  const x = (v) => (v === undefined || v === null ? '' : expandEnv(String(v), env));
  const name = x(cfg.name);
  if (!/^[a-z0-9][a-z0-9+.-]+$/.test(name)) fail(`bad package name "${name}"`);
  const arch = x(cfg.arch);
  const platform = x(cfg.platform) || 'linux';
  if (platform !== 'linux') fail(`platform "${platform}" is not supported`);
  const rawVersion = x(cfg.version);
  if (!rawVersion) fail('version is empty (is the environment variable it names set?)');
  let version = rawVersion;
  let prerelease = x(cfg.prerelease);
  let metadata = x(cfg.version_metadata);
  if ((cfg.version_schema ?? 'semver') === 'semver') {
    const sv = parseSemver(rawVersion);
    if (sv) {
      version = sv.version;
      prerelease ||= sv.prerelease;
      metadata ||= sv.metadata;
    }
  }
  const pkgArch =
    packager === 'deb'
      ? raw.deb?.arch
        ? x(raw.deb.arch)
        : DEB_ARCH[arch]
      : raw.rpm?.arch
        ? x(raw.rpm.arch)
        : RPM_ARCH[arch];
  if (!pkgArch) fail(`architecture "${arch}" has no ${packager} name here; set ${packager}.arch`);

  const relations = {};
  for (const r of RELATIONS) relations[r] = (cfg[r] ?? []).map((d) => x(d)).filter(Boolean);

  const umask = cfg.umask ?? 0o002;
  const contents = [];
  for (const c of cfg.contents ?? []) {
    if (c.packager && c.packager !== packager) continue;
    const type = c.type ?? '';
    if (!SUPPORTED_TYPES.has(type))
      fail(`contents type "${type}" (${c.dst}) is not supported by this builder; use nfpm`);
    for (const k of Object.keys(c))
      if (!['src', 'dst', 'type', 'packager', 'file_info', 'expand'].includes(k))
        fail(`contents field "${k}" (${c.dst}) is not supported by this builder; use nfpm`);
    const expand = (v) => (c.expand ? x(v) : String(v));
    const dst = posix.normalize(expand(c.dst));
    if (!dst.startsWith('/')) fail(`contents dst must be absolute: ${dst}`);
    const fi = c.file_info ?? {};
    if ((fi.owner && fi.owner !== 'root') || (fi.group && fi.group !== 'root'))
      fail(`${dst}: owners other than root are not supported by this builder; use nfpm`);
    const entry = { dst, type, owner: 'root', group: 'root' };
    if (type === 'dir') {
      entry.mode = fi.mode ?? 0o755;
    } else if (type === 'symlink') {
      if (!c.src) fail(`symlink ${dst} needs src (the target)`);
      entry.target = expand(c.src);
    } else {
      if (!c.src) fail(`${dst}: src missing`);
      entry.src = resolve(root, expand(c.src));
      if (!existsSync(entry.src)) fail(`${dst}: source ${entry.src} does not exist`);
      if (!statSync(entry.src).isFile()) fail(`${dst}: source ${entry.src} is not a regular file`);
      entry.mode = fi.mode ?? statSync(entry.src).mode & 0o7777 & ~umask;
    }
    contents.push(entry);
  }
  const dsts = contents.map((c) => c.dst);
  const dup = dsts.find((d, i) => dsts.indexOf(d) !== i);
  if (dup) fail(`${dup} is listed twice for ${packager}`);

  const scripts = {};
  for (const [k, v] of Object.entries(cfg.scripts ?? {})) {
    if (!SCRIPT_KEYS.includes(k)) fail(`script "${k}" is not supported by this builder; use nfpm`);
    const p = resolve(root, x(v));
    if (!existsSync(p)) fail(`script ${k}: ${p} does not exist`);
    scripts[k] = p;
  }
  let changelog;
  if (raw.changelog) {
    const file = resolve(root, x(raw.changelog));
    if (!existsSync(file)) fail(`changelog ${file} does not exist`);
    changelog = readChangelog(file);
    if (packager === 'deb') {
      // nfpm adds the Debian changelog as a file of the package.
      const dst = `/usr/share/doc/${name}/changelog.Debian.gz`;
      if (contents.some((c) => c.dst === dst)) fail(`${dst} is listed in contents and made from the changelog`);
      const data = gzipSync(Buffer.from(debChangelog(name, changelog)), { level: 9 });
      contents.push({ dst, type: 'changelog', owner: 'root', group: 'root', mode: 0o644, data });
    }
  }
  const specific = raw[packager] ?? {};
  const allowedSpecific =
    packager === 'deb' ? ['arch', 'compression', 'fields'] : ['arch', 'summary', 'group', 'compression', 'packager'];
  for (const k of Object.keys(specific))
    if (!allowedSpecific.includes(k)) fail(`${packager}.${k} is not supported by this builder; use nfpm`);
  if (packager === 'deb' && raw.deb?.scripts) fail('deb.scripts is not supported by this builder; use nfpm');
  if (packager === 'rpm' && raw.rpm?.scripts) fail('rpm.scripts is not supported by this builder; use nfpm');

  return {
    packager,
    name,
    arch: pkgArch,
    version,
    prerelease,
    metadata,
    release: x(cfg.release),
    epoch: x(cfg.epoch),
    section: x(cfg.section),
    priority: x(cfg.priority),
    maintainer: x(cfg.maintainer),
    vendor: x(cfg.vendor),
    homepage: x(cfg.homepage),
    license: x(cfg.license),
    description: String(cfg.description ?? 'no description given').trim(),
    relations,
    contents,
    scripts,
    specific,
    changelog,
  };
}

/** The full version string as each packager writes it (nfpm's rules). */
export function fullVersion(p) {
  let v = p.version;
  if (p.prerelease) v += `~${p.prerelease}`;
  if (p.metadata) v += `+${p.metadata}`;
  if (p.packager === 'deb') {
    if (p.release) v += `-${p.release}`;
    if (p.epoch) v = `${p.epoch}:${v}`;
  }
  return v;
}

/** nfpm's conventional output file name. */
export function conventionalFileName(p) {
  if (p.packager === 'deb') {
    let v = p.version;
    if (p.prerelease) v += `~${p.prerelease}`;
    if (p.metadata) v += `+${p.metadata}`;
    if (p.release) v += `-${p.release}`;
    return `${p.name}_${v}_${p.arch}.deb`;
  }
  let v = p.version;
  if (p.prerelease) v += `~${p.prerelease}`;
  if (p.metadata) v += `+${p.metadata}`;
  return `${p.name}-${v}-${p.release || '1'}.${p.arch}.rpm`;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}${r.stdout}`);
  return r;
}

/** Writes the package's files into `root` (a staging tree) with their modes. */
function stage(p, root) {
  const ensureDir = (d) => {
    const parts = d.split('/').filter(Boolean);
    let cur = root;
    for (const part of parts) {
      cur = join(cur, part);
      if (!existsSync(cur)) {
        mkdirSync(cur);
        chmodSync(cur, 0o755);
      }
    }
  };
  for (const c of p.contents) {
    const target = join(root, c.dst);
    if (c.type === 'dir') {
      ensureDir(c.dst);
      chmodSync(target, c.mode);
      continue;
    }
    ensureDir(posix.dirname(c.dst));
    if (c.type === 'symlink') {
      symlinkSync(c.target, target);
      continue;
    }
    if (c.data) writeFileSync(target, c.data);
    else copyFileSync(c.src, target);
    chmodSync(target, c.mode);
  }
}

/** Debian's folded multi-line field: first line the synopsis, then the extended description. */
function debDescription(text) {
  const [first, ...rest] = text.split('\n');
  return [first, ...rest.map((l) => (l.trim() === '' ? ' .' : ` ${l}`))].join('\n');
}

/** Builds the .deb into `targetDir` with dpkg-deb; returns its path. */
export function buildDeb(p, targetDir) {
  const work = mkdtempSync(join(tmpdir(), 'nfpm-lite-deb-'));
  try {
    const root = join(work, 'root');
    mkdirSync(root);
    chmodSync(root, 0o755);
    stage(p, root);
    const debian = join(root, 'DEBIAN');
    mkdirSync(debian);
    chmodSync(debian, 0o755);
    let bytes = 0;
    const md5 = [];
    const conffiles = [];
    for (const c of p.contents) {
      if (c.type === 'dir' || c.type === 'symlink') continue;
      const data = c.data ?? readFileSync(c.src);
      bytes += data.length;
      md5.push(`${createHash('md5').update(data).digest('hex')}  ${c.dst.slice(1)}`);
      if (c.type.startsWith('config')) conffiles.push(c.dst);
    }
    const field = (k, v) => (v ? `${k}: ${v}\n` : '');
    const control =
      field('Package', p.name) +
      field('Version', fullVersion(p)) +
      field('Section', p.section) +
      field('Priority', p.priority) +
      field('Architecture', p.arch) +
      field('Maintainer', p.maintainer) +
      field('Installed-Size', String(Math.ceil(bytes / 1024))) +
      field('Replaces', p.relations.replaces.join(', ')) +
      field('Provides', p.relations.provides.join(', ')) +
      field('Depends', p.relations.depends.join(', ')) +
      field('Recommends', p.relations.recommends.join(', ')) +
      field('Suggests', p.relations.suggests.join(', ')) +
      field('Conflicts', p.relations.conflicts.join(', ')) +
      Object.entries(p.specific.fields ?? {})
        .map(([k, v]) => field(k, v))
        .join('') +
      field('Homepage', p.homepage) +
      `Description: ${debDescription(p.description)}\n`;
    writeFileSync(join(debian, 'control'), control, { mode: 0o644 });
    writeFileSync(join(debian, 'md5sums'), md5.join('\n') + '\n', { mode: 0o644 });
    if (conffiles.length > 0) writeFileSync(join(debian, 'conffiles'), conffiles.join('\n') + '\n', { mode: 0o644 });
    const debScript = { preinstall: 'preinst', postinstall: 'postinst', preremove: 'prerm', postremove: 'postrm' };
    for (const [k, file] of Object.entries(p.scripts)) {
      const dst = join(debian, debScript[k]);
      copyFileSync(file, dst);
      chmodSync(dst, 0o755);
    }
    mkdirSync(targetDir, { recursive: true });
    const out = join(targetDir, conventionalFileName(p));
    const comp = p.specific.compression ?? 'gzip';
    run('dpkg-deb', ['--root-owner-group', `-Z${comp}`, '--build', root, out]);
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Escapes text for a spec file (rpm expands %macros everywhere). */
const specEscape = (s) => String(s).replace(/%/g, '%%');

/** Builds the .rpm into `targetDir` with rpmbuild (no spec file kept: it is generated from nfpm.yaml). */
export function buildRpm(p, targetDir) {
  const work = mkdtempSync(join(tmpdir(), 'nfpm-lite-rpm-'));
  try {
    const stageDir = join(work, 'stage');
    mkdirSync(stageDir);
    stage(p, stageDir);
    const tag = (k, v) => (v ? `${k}: ${specEscape(v)}\n` : '');
    const summary = p.specific.summary || p.description.split('\n')[0];
    let spec =
      tag('Name', p.name) +
      tag('Version', p.prerelease || p.metadata ? fullVersion(p) : p.version) +
      tag('Release', p.release || '1') +
      tag('Epoch', p.epoch) +
      tag('Summary', summary) +
      tag('License', p.license) +
      tag('URL', p.homepage) +
      tag('Vendor', p.vendor) +
      tag('Packager', p.specific.packager || p.maintainer) +
      tag('Group', p.specific.group) +
      tag('BuildArch', p.arch) +
      'AutoReqProv: no\n' +
      p.relations.depends.map((d) => tag('Requires', d)).join('') +
      p.relations.recommends.map((d) => tag('Recommends', d)).join('') +
      p.relations.suggests.map((d) => tag('Suggests', d)).join('') +
      p.relations.conflicts.map((d) => tag('Conflicts', d)).join('') +
      p.relations.provides.map((d) => tag('Provides', d)).join('') +
      p.relations.replaces.map((d) => tag('Obsoletes', d)).join('') +
      `\n%description\n${specEscape(p.description)}\n\n` +
      `%install\nmkdir -p %{buildroot}\ncp -a ${stageDir}/. %{buildroot}/\n\n`;
    const rpmScript = { preinstall: 'pre', postinstall: 'post', preremove: 'preun', postremove: 'postun' };
    for (const [k, file] of Object.entries(p.scripts)) {
      spec += `%${rpmScript[k]}\n${specEscape(readFileSync(file, 'utf8'))}\n`;
    }
    spec += '%files\n';
    for (const c of p.contents) {
      const attr = c.type === 'symlink' ? '' : `%attr(${c.mode.toString(8).padStart(4, '0')},${c.owner},${c.group}) `;
      const kind =
        c.type === 'dir'
          ? '%dir '
          : c.type === 'config|noreplace'
            ? '%config(noreplace) '
            : c.type === 'config'
              ? '%config '
              : c.type === 'doc' || c.type === 'readme'
                ? '%doc '
                : c.type === 'license' || c.type === 'licence'
                  ? '%license '
                  : '';
      spec += `${kind}${attr}"${specEscape(c.dst)}"\n`;
    }
    if (p.changelog?.length) spec += `\n%changelog\n${specEscape(rpmChangelog(p.changelog))}`;
    const specFile = join(work, `${p.name}.spec`);
    writeFileSync(specFile, spec);
    mkdirSync(targetDir, { recursive: true });
    const payload = { gzip: 'w9.gzdio', xz: 'w6.xzdio', zstd: 'w19.zstdio', lzma: 'w6.lzdio' }[
      p.specific.compression ?? 'gzip'
    ];
    if (!payload) fail(`rpm compression ${p.specific.compression} is not supported`);
    const top = join(work, 'top');
    run('rpmbuild', [
      '-bb',
      '--quiet',
      '--define',
      `_topdir ${top}`,
      '--define',
      `_rpmdir ${resolve(targetDir)}`,
      '--define',
      `_build_name_fmt ${conventionalFileName(p)}`,
      '--define',
      `_binary_payload ${payload}`,
      '--define',
      '__os_install_post %{nil}',
      '--define',
      '_build_id_links none',
      '--define',
      '__brp_mangle_shebangs %{nil}',
      '--define',
      '_unpackaged_files_terminate_build 1',
      '--target',
      p.arch,
      specFile,
    ]);
    return join(targetDir, conventionalFileName(p));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function main(argv) {
  const [packager, ...rest] = argv;
  let config = 'nfpm.yaml';
  let target = '.';
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--config') config = rest[++i];
    else if (rest[i] === '--target') target = rest[++i];
    else fail(`unknown argument ${rest[i]}`);
  }
  if (packager !== 'deb' && packager !== 'rpm') {
    process.stderr.write('usage: node packaging/nfpm-lite.mjs deb|rpm [--config nfpm.yaml] [--target DIR]\n');
    return 2;
  }
  const p = resolvePackage(readNfpmYaml(config), packager, { root: dirname(resolve(config)) });
  const out = packager === 'deb' ? buildDeb(p, target) : buildRpm(p, target);
  process.stdout.write(`${out}\n`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (c) => {
      process.exitCode = c;
    },
    (e) => {
      process.stderr.write(`${e.message}\n`);
      process.exitCode = 1;
    },
  );
}
