/**
 * The documentation of the command line, from its one description (service/src/cli/commands.ts):
 * `wg-overlay --help` (main.ts), the manual pages wg-overlay(8) and wg-overlay.conf(5) and the
 * bash completion (service/src/cli/manual.ts, written at package build time by
 * packaging/docs.mjs). Each command's own --help text is checked against its entry, the pages are
 * rendered by man-db with its warnings on, and the completion runs in bash; a command added to the
 * description appears in all three at once.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { pathToFileURL } from 'node:url';
import { COMMANDS, EXIT_STATUSES, FILES, renderUsage, type CliCommand } from '../../../service/src/cli/commands.js';
import { GRAPH_USAGE } from '../../../service/src/cli/graph.js';
import { DEFAULT_KUBECONFIG_PATH, KUBECONFIG_USAGE, TOKEN_FILE_NAME } from '../../../service/src/cli/kubeconfig.js';
import {
  parseConfDoc,
  renderBashCompletion,
  renderConfManPage,
  renderManPage,
  roffSynopsis,
  roffText,
} from '../../../service/src/cli/manual.js';
import { CONNECT_USAGE } from '../../../service/src/cli/connect.js';
import { SHOWCONF_USAGE } from '../../../service/src/cli/showconf.js';
import { STATUS_USAGE } from '../../../service/src/cli/status.js';
import { loadConfig } from '../../../service/src/config/config.js';
import * as exitStatus from '../../../service/src/exit-status.js';
import { main } from '../../../service/src/main.js';
import { plainMan } from '../../support/man.js';

const INFO = { version: '1.2.3', date: '2026-01-02' };

/** The options a usage text or a synopsis names (--name), without --help. */
function optionsIn(text: string): string[] {
  return [...new Set([...text.matchAll(/(?<![\w-])--([a-z][a-z-]*)/g)].map((m) => m[1]!))]
    .filter((o) => o !== 'help')
    .sort();
}

/** The module's options of a command (without help). */
function optionsOf(c: CliCommand): string[] {
  return c.options
    .map((o) => o.name)
    .filter((o) => o !== 'help')
    .sort();
}

/** Runs `main` with its stdout captured. */
async function mainOutput(args: string[]): Promise<{ code: number; out: string }> {
  const orig = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await main(args), out };
  } finally {
    process.stdout.write = orig;
  }
}

/** man-db rendering a page as lintian does it: warnings on standard error, the text on stdout. */
function man(page: string): { text: string; warnings: string } {
  const dir = mkdtempSync(join(tmpdir(), 'wgo-man-'));
  try {
    const file = join(dir, 'page.roff');
    writeFileSync(file, page);
    const env = { ...process.env, MANWIDTH: '80', LC_ALL: 'C.UTF-8' };
    const r = spawnSync('man', ['--warnings', '-E', 'UTF-8', '-l', file], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    return { text: plainMan(r.stdout), warnings: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What the completion offers for a command line whose last word is being completed. */
function complete(script: string, words: string[]): string[] {
  const quoted = words.map((w) => `'${w.replace(/'/g, "'\\''")}'`).join(' ');
  const r = spawnSync(
    'bash',
    [
      '-c',
      `eval "$1"; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _wg_overlay; printf '%s\\n' "\${COMPREPLY[@]}"`,
      'bash',
      script,
    ],
    { encoding: 'utf8', cwd: resolve('packaging') },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).sort();
}

/** A command another engineer might add: one entry. */
const TUNNEL: CliCommand = {
  name: 'tunnel',
  synopsis: ['[--kubeconfig FILE] [--name NAME] [--private-key FILE] [--keep] [--status]'],
  summary: 'join the mesh from outside the cluster',
  description: 'Connects this machine to the mesh as an external peer.',
  options: [
    { name: 'kubeconfig', value: 'FILE', complete: 'file', description: 'The kubeconfig to use.' },
    { name: 'name', value: 'NAME', description: 'The name of the Peer.' },
    { name: 'private-key', value: 'FILE', complete: 'file', description: 'The private key file.' },
    { name: 'keep', description: 'Keep the interface up on exit.' },
    { name: 'status', description: 'Show the connection.' },
  ],
};

describe('unit: packaging: the command line description (--help, man pages, completion)', function () {
  this.timeout(30_000);

  it('`wg-overlay --help` is rendered from the description: every form and summary; no command is exit 2', async () => {
    const help = await mainOutput(['--help']);
    assert.equal(help.code, 0);
    assert.equal(help.out, renderUsage());
    // A long form is wrapped before an option group, its continuation indented.
    const unwrapped = help.out.replace(/\n {3,}(?=\[)/g, ' ');
    for (const c of COMMANDS) {
      for (const form of c.synopsis) assert.ok(unwrapped.includes(`  ${c.name}${form ? ` ${form}` : ''}`), form);
      assert.ok(help.out.includes(c.summary), c.summary);
      assert.ok(c.summary.length <= 64, `${c.name}: summary of at most 64 characters`);
    }
    for (const line of help.out.split('\n')) assert.ok(line.length <= 100, `--help line of at most 100: ${line}`);
    assert.equal((await mainOutput([])).code, exitStatus.EXIT_USAGE);
  });

  it("main.ts dispatches exactly the described commands and aliases, and every command's options are in its synopsis", () => {
    const source = readFileSync('service/src/main.ts', 'utf8');
    const cases = [...source.matchAll(/^\s*case '([^']+)':/gm)].map((m) => m[1]!).sort();
    const described = COMMANDS.flatMap((c) => [c.name, ...(c.aliases ?? [])]).sort();
    assert.deepEqual(cases, described);
    for (const c of COMMANDS) assert.deepEqual(optionsIn(c.synopsis.join(' ')), optionsOf(c), c.name);
  });

  it("each command's own --help names exactly the options of its entry", () => {
    const own: Record<string, string> = {
      kubeconfig: KUBECONFIG_USAGE,
      status: STATUS_USAGE,
      showconf: SHOWCONF_USAGE,
      graph: GRAPH_USAGE,
      connect: CONNECT_USAGE,
    };
    for (const c of COMMANDS) {
      const hasHelp = c.options.some((o) => o.name === 'help');
      assert.equal(hasHelp, c.name in own, `${c.name}: --help in the description iff the command prints its own usage`);
      if (own[c.name]) assert.deepEqual(optionsIn(own[c.name]!), optionsOf(c), c.name);
    }
  });

  it('wg-overlay(8): NAME, every command, form and option, FILES, SIGNALS, EXIT STATUS; man renders it without a warning', () => {
    const page = renderManPage(INFO);
    assert.match(page, /^\.TH WG\\-OVERLAY 8 "2026-01-02" "wg\\-overlay 1\.2\.3" "System Administration"$/m);
    assert.match(page, /^\.SH NAME\nwg\\-overlay \\- WireGuard mesh between the nodes of a Kubernetes cluster$/m);
    const { text, warnings } = man(page);
    assert.equal(warnings, '', 'man --warnings');
    for (const c of COMMANDS) {
      assert.ok(text.includes(`   ${c.name}\n`), `a subsection for ${c.name}`);
      for (const o of c.options)
        assert.match(text, new RegExp(`^ {7}(-${o.short}, )?--${o.name}\\b`, 'm'), `${c.name} --${o.name}`);
    }
    for (const section of ['SYNOPSIS', 'DESCRIPTION', 'COMMANDS', 'FILES', 'SIGNALS', 'EXIT STATUS', 'SEE ALSO'])
      assert.match(text, new RegExp(`^${section}$`, 'm'));
    for (const s of ['SIGHUP', 'SIGTERM, SIGINT']) assert.match(text, new RegExp(`^ {7}${s}`, 'm'));
    for (const f of FILES) assert.ok(text.includes(f.term), f.term);
  });

  it('the exit statuses in the manual are those of exit-status.ts and /usr/bin/wg-overlay; FILES names the real paths', async () => {
    const codes = Object.values(exitStatus).map(String);
    const wrapper = [...readFileSync('packaging/wrapper/wg-overlay', 'utf8').matchAll(/exit (\d+)/g)].map((m) => m[1]!);
    assert.deepEqual(EXIT_STATUSES.map((s) => s.term).sort(), [...codes, ...wrapper].sort());
    const terms = FILES.map((f) => f.term).join(' ');
    assert.ok(terms.includes(`${DEFAULT_KUBECONFIG_PATH}, /etc/wg-overlay/${TOKEN_FILE_NAME}`));
    const { config } = await loadConfig('packaging/wg-overlay.conf');
    for (const p of [config.state.dir, config.state.runtimeDir, config.kubernetes.kubeconfig])
      assert.ok(terms.includes(p), p);
  });

  it('roff: hyphens are minus signs, `code` is bold, a leading dot is escaped; synopsis words are bold, placeholders italic', () => {
    assert.equal(roffText('a `wg-overlay status` b'), 'a \\fBwg\\-overlay status\\fR b');
    assert.equal(roffText('.hidden and \\'), '\\&.hidden and \\e');
    assert.equal(
      roffSynopsis('peer NAME [--allowed-ips CIDR,...]'),
      '\\fBpeer\\fR \\fINAME\\fR [\\fB\\-\\-allowed\\-ips\\fR \\fICIDR\\fR,...]',
    );
  });

  it('wg-overlay.conf(5): every section and key of packaging/wg-overlay.conf with its default, rendered without a warning', () => {
    const source = readFileSync('packaging/wg-overlay.conf', 'utf8');
    const doc = parseConfDoc(source);
    assert.equal(doc.path, '/etc/wg-overlay/wg-overlay.conf');
    const keys = [...source.matchAll(/^# ([a-z][a-z0-9_]*) =(?: (.*))?$/gm)].map(
      (m) => `${m[1]} =${m[2] ? ` ${m[2]}` : ''}`,
    );
    assert.ok(keys.length > 30);
    const { text, warnings } = man(renderConfManPage(source, INFO));
    assert.equal(warnings, '', 'man --warnings');
    for (const s of doc.sections) assert.match(text, new RegExp(`^ {3}\\[${s.name}\\]$`, 'm'));
    for (const k of keys) assert.match(text, new RegExp(`^ {7}${k.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm'), k);
    assert.deepEqual(
      doc.sections.flatMap((s) =>
        s.entries.flatMap((e) => e.keys.map((k) => `${k.key} =${k.value ? ` ${k.value}` : ''}`)),
      ),
      keys,
    );
  });

  it("the bash completion: commands, each command's options, file names for FILE values, showconf's peer|node", () => {
    const script = renderBashCompletion();
    assert.equal(spawnSync('bash', ['-n'], { input: script }).status, 0);
    assert.deepEqual(complete(script, ['wg-overlay', 's']), ['showconf', 'status']);
    assert.deepEqual(complete(script, ['wg-overlay', 'showconf', '']), ['node', 'peer']);
    assert.deepEqual(complete(script, ['wg-overlay', 'showconf', 'peer', '']), []);
    assert.deepEqual(complete(script, ['wg-overlay', 'showconf', '--via', 'a', 'peer', 'x', '--w']), ['--wg-quick']);
    assert.deepEqual(complete(script, ['wg-overlay', 'graph', '--config', 'wg-overlay.c']), ['wg-overlay.conf']);
    assert.deepEqual(complete(script, ['wg-overlay', 'graph', '--config', '=', 'wg-overlay.c']), ['wg-overlay.conf']);
    assert.deepEqual(complete(script, ['wg-overlay', 'kubeconfig', '--server', '']), []);
    assert.deepEqual(complete(script, ['wg-overlay', 'kubeconfig', '--token-']), ['--token-file', '--token-only']);
    assert.deepEqual(complete(script, ['wg-overlay', '--v']), ['--version']);
    for (const c of COMMANDS)
      for (const o of c.options)
        assert.ok(complete(script, ['wg-overlay', c.name, '-']).includes(`--${o.name}`), `${c.name} --${o.name}`);
  });

  it('a new command is one entry: it appears in --help, the manual page and the completion at once', () => {
    const commands = [...COMMANDS, TUNNEL];
    const usage = renderUsage(commands);
    assert.ok(usage.includes(`  tunnel ${TUNNEL.synopsis[0]}`));
    assert.ok(usage.includes(TUNNEL.summary));
    const { text, warnings } = man(renderManPage(INFO, commands));
    assert.equal(warnings, '');
    assert.match(text, /^ {3}tunnel$/m);
    assert.match(text, /^ {7}--private-key FILE$/m);
    const script = renderBashCompletion(commands);
    assert.ok(complete(script, ['wg-overlay', 'tu']).includes('tunnel'));
    assert.deepEqual(complete(script, ['wg-overlay', 'tunnel', '--k']), ['--keep', '--kubeconfig']);
    assert.deepEqual(complete(script, ['wg-overlay', 'tunnel', '--private-key', 'wg-overlay.c']), ['wg-overlay.conf']);
  });
});

describe('unit: packaging: packaging/docs.mjs (the build-time generator)', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wgo-docs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the pages (gzip -9n, the same bytes every time) and the completion, dated by the changelog', async () => {
    const docs = (await import(pathToFileURL(resolve('packaging/docs.mjs')).href)) as {
      writeDocs(out: string, version: string): Promise<void>;
      releaseDate(): string;
    };
    await docs.writeDocs(join(dir, 'a'), '9.8.7');
    await docs.writeDocs(join(dir, 'b'), '9.8.7');
    const info = { version: '9.8.7', date: docs.releaseDate() };
    for (const [file, text] of [
      ['wg-overlay.8.gz', renderManPage(info)],
      ['wg-overlay.conf.5.gz', renderConfManPage(readFileSync('packaging/wg-overlay.conf', 'utf8'), info)],
    ] as const) {
      const gz = readFileSync(join(dir, 'a', file));
      assert.deepEqual(gz, readFileSync(join(dir, 'b', file)), `${file} is reproducible`);
      assert.equal(gz.readUInt32LE(4), 0, `${file}: no time stamp`);
      assert.equal(gz[3]! & 0x08, 0, `${file}: no file name`);
      assert.equal(gz[8], 2, `${file}: maximum compression`);
      assert.equal(gunzipSync(gz).toString(), text);
    }
    assert.equal(readFileSync(join(dir, 'a', 'wg-overlay.bash'), 'utf8'), renderBashCompletion());
  });
});
