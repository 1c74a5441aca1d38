/**
 * The admin's path, for real: a Debian 12 made with debootstrap (only Debian's repositories) is
 * booted with systemd-nspawn, `apt-get install ./wg-overlay_*.deb` pulls Debian's own nodejs 18
 * and runs the bundle on it, the unit runs under the real systemd with its sandbox, talks to
 * journald, brings wg0 up through wg-quick@wg0 over D-Bus, and the package upgrades and purges
 * the way Debian packages do. The daemon runs as the system user wg-overlay: polkit lets it start
 * and restart wg-quick@wg0 over D-Bus and nothing else, wg-quick@wg0 installs the daemon's
 * wg-quick file only after checking it, and `systemd-analyze security` rates the unit at most
 * 1.5. The Kubernetes API is the test API server on the host end of the container's network
 * (HTTPS), enforcing the shipped node policy; the node has its own Node-bound token, rotated on
 * the running service without a restart.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { KILO_PEER_RESOURCE, KubeApiServer, type KubeObject, type MintedToken } from '../kube-api/server.js';
import { requireTools, sleep, type RunResult } from '../support/process.js';
import type { TestNode } from '../support/namespaces/netns.js';
import { plainMan } from '../support/man.js';
import { warningLines } from '../support/machines/booted.js';
import { TestNetwork } from '../support/namespaces/underlay.js';
import {
  buildPackages,
  debDependencies,
  debianRoot,
  installedLayer,
  NspawnContainer,
  type BuiltPackages,
  type JournalEntry,
} from '../support/machines/nspawn.js';

const TOKEN = 'wg-overlay-system-test-token';
/** Files of a kubeadm node that the daemon must never read. */
const SECRETS = ['/etc/kubernetes/pki/ca.key', '/var/lib/kubelet/pki/kubelet.key', '/etc/ssl/private/host.key'];

/** Runs a command in the container as user wg-overlay (its own group, no capabilities). */
function asUser(c: NspawnContainer, cmd: string[]): Promise<RunResult> {
  return c.exec('setpriv', ['--reuid=wg-overlay', '--regid=wg-overlay', '--init-groups', '--', ...cmd], {
    allowFailure: true,
  });
}
const NODE = 'wgs-life';
/** A root-only file in /etc/wg-overlay that the config does not name. */
const UNRELATED = '/etc/wg-overlay/backup-admin.key';
const ANN = 'wg-overlay.io/';

/** The next patch version: the "higher version" of the upgrade test. */
function nextPatch(v: string): string {
  const [maj, min, patch] = v.split('.').map(Number);
  return `${maj}.${min}.${(patch ?? 0) + 1}`;
}

describe('system: the .deb in a booted Debian 12 (systemd-nspawn)', function () {
  this.timeout(20 * 60_000);

  let work: string;
  let pkg: BuiltPackages;
  let upgrade: BuiltPackages;
  let net: TestNetwork;
  let node: TestNode;
  let api: KubeApiServer;
  let c: NspawnContainer;
  let installOutput = '';
  /** The node's first token (Node-bound), replaced by the rotation test. */
  let nodeToken: MintedToken;
  /** InvocationID of the configured run of wg-overlay.service. */
  let invocation = '';
  let mainPid = '';

  const annotations = (): Record<string, string> =>
    (api.getNode(NODE)?.metadata?.annotations ?? {}) as Record<string, string>;
  const since = (cursor: string, unit = 'wg-overlay'): Promise<JournalEntry[]> => c.entriesAfter(cursor, unit);

  before(async function () {
    const t0 = Date.now();
    await requireTools(['debootstrap', 'systemd-nspawn', 'dpkg-deb', 'rpmbuild', 'nsenter', 'mount', 'flock']);
    work = await mkdtemp(join(tmpdir(), 'wgs-pkg-'));
    pkg = await buildPackages(join(work, 'v1'));
    upgrade = await buildPackages(join(work, 'v2'), nextPatch(pkg.version));
    const prefetch = [...(await debDependencies(pkg.deb)), 'wireguard-go'];
    const root = await debianRoot({ prefetch });
    const t1 = Date.now();

    net = await TestNetwork.create({ nodes: 1, hostAddress: true, labels: [NODE] });
    node = net.nodes[0]!;
    // Pods behind a node need forwarding; with it on, the daemon has no warning to log.
    await node.sysctl('net.ipv4.ip_forward', '1');
    api = new KubeApiServer({ host: net.underlay.hostAddress!, token: TOKEN, admission: true });
    // The admin applied /usr/share/wg-overlay/kubernetes/crd-peer.yaml and node-policy.yaml (install guide).
    api.registerResource(KILO_PEER_RESOURCE);
    api.createObjects(
      parseAllDocuments(await readFile('packaging/kubernetes/node-policy.yaml', 'utf8')).map(
        (d) => d.toJS() as KubeObject,
      ),
    );
    await api.start();
    api.createNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE } },
      spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] },
      status: {
        addresses: [
          { type: 'InternalIP', address: node.underlayAddress! },
          { type: 'Hostname', address: NODE },
        ],
      },
    });
    nodeToken = api.createServiceAccountToken({
      namespace: 'wg-overlay',
      name: 'wg-overlay',
      boundNode: NODE,
      expirationSeconds: 8760 * 3600,
    });
    // man-db, so that the manual pages can be read as an admin reads them (and systemd-analyze
    // verify finds the unit's Documentation=man: pages); installing it empties apt's cache, so
    // the packages the .deb needs are downloaded into the layer again.
    const layers = await installedLayer(root, ['man-db'], { prefetch });
    c = await NspawnContainer.boot({ name: NODE, layers, netns: node.netns });
    console.log(
      `      (packages built and Debian root ready in ${Math.round((t1 - t0) / 1000)} s, ` +
        `container booted in ${Math.round((Date.now() - t1) / 1000)} s)`,
    );
  });

  after(async () => {
    await c?.stop();
    await api?.stop();
    await net?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("apt-get install ./wg-overlay_*.deb pulls Debian's nodejs 18, wireguard-tools and iproute2, and the bundle runs on Node 18", async () => {
    await c.writeFile(`/var/tmp/${basename(pkg.deb)}`, await readFile(pkg.deb));
    const before = await c.exec('dpkg-query', ['-W', '-f=${Status}', 'nodejs'], { allowFailure: true });
    assert.doesNotMatch(before.stdout, /install ok installed/, 'nodejs must not be in the root before the install');
    // --no-install-recommends: wireguard-tools recommends a kernel module package (DKMS) that a
    // container without a kernel cannot use.
    const r = await c.exec('apt-get', ['install', '-y', '--no-install-recommends', `/var/tmp/${basename(pkg.deb)}`], {
      env: { DEBIAN_FRONTEND: 'noninteractive' },
      timeoutMs: 10 * 60_000,
    });
    installOutput = r.stdout + r.stderr;
    for (const p of ['nodejs', 'wireguard-tools', 'procps', 'polkitd', 'wg-overlay']) {
      assert.match(installOutput, new RegExp(`Setting up ${p} \\(`), `apt-get should set up ${p}:\n${installOutput}`);
    }
    const nodeVersion = (await c.exec('node', ['--version'])).stdout.trim();
    assert.match(nodeVersion, /^v18\.(19|[2-9]\d)\./, `Debian's nodejs should be 18.19+, got ${nodeVersion}`);
    const origin = (await c.exec('dpkg-query', ['-W', '-f=${Version} ${Maintainer}', 'nodejs'])).stdout;
    assert.match(origin, /debian/i, `nodejs should come from Debian: ${origin}`);
    assert.equal((await c.exec('wg-overlay', ['version'])).stdout.trim(), `wg-overlay ${pkg.version}`);
    const check = await c.exec('wg-overlay', ['check-config']);
    assert.match(check.stdout, /\/etc\/wg-overlay\/wg-overlay\.conf: OK/);
    // Layout and modes as installed.
    const files = [
      '755 root /usr/bin/wg-overlay',
      '644 root /usr/lib/wg-overlay/wg-overlay.mjs',
      '755 root /usr/lib/wg-overlay/notify-socket',
      '755 root /usr/lib/wg-overlay/secrets-access',
      '755 root /usr/lib/wg-overlay/polkit-interface',
      '755 root /usr/lib/wg-overlay/wg-quick-hook',
      '755 root /usr/lib/wg-overlay/wireguard-go',
      '644 root /lib/systemd/system/wg-overlay.service',
      '644 root /lib/systemd/system/wg-quick@.service.d/wg-overlay.conf',
      '644 root /usr/lib/sysusers.d/wg-overlay.conf',
      '644 root /usr/share/polkit-1/rules.d/10-wg-overlay.rules',
      '644 root /etc/wg-overlay/wg-overlay.conf',
      '644 root /usr/share/wg-overlay/kubernetes/rbac.yaml',
      '644 root /usr/share/wg-overlay/kubernetes/node-policy.yaml',
      '644 root /usr/share/wg-overlay/kubernetes/crd-peer.yaml',
      '644 root /usr/share/wg-overlay/kubernetes/connect-rbac.yaml',
      '644 root /usr/share/doc/wg-overlay/install.md',
      '644 root /usr/share/doc/wg-overlay/changelog.Debian.gz',
      '644 root /usr/share/man/man8/wg-overlay.8.gz',
      '644 root /usr/share/man/man5/wg-overlay.conf.5.gz',
      '644 root /usr/share/bash-completion/completions/wg-overlay',
      '644 root /usr/share/lintian/overrides/wg-overlay',
    ];
    const modes = (await c.sh(`stat -c "%a %U %n" ${files.map((f) => f.split(' ')[2]).join(' ')}`)).stdout;
    assert.equal(modes, `${files.join('\n')}\n`);
    // The system user: no login, no home, not root.
    const user = (await c.exec('getent', ['passwd', 'wg-overlay'])).stdout.trim().split(':');
    assert.notEqual(user[2], '0');
    assert.ok(Number(user[2]) < 1000, `a system uid: ${user.join(':')}`);
    assert.equal(user[6], '/usr/sbin/nologin');
    assert.equal((await c.exec('getent', ['group', 'wg-overlay'])).stdout.split(':')[2], user[3]);
    // wireguard-go's own system user: not the daemon's, in none of its groups.
    const wgUser = (await c.exec('getent', ['passwd', 'wg-overlay-wg'])).stdout.trim().split(':');
    assert.ok(Number(wgUser[2]) < 1000 && wgUser[2] !== '0' && wgUser[2] !== user[2], wgUser.join(':'));
    assert.equal(wgUser[6], '/usr/sbin/nologin');
    assert.equal((await c.exec('id', ['-Gn', 'wg-overlay-wg'])).stdout.trim(), 'wg-overlay-wg');
    assert.equal(
      (await c.exec('dpkg-query', ['-W', '-f=${Conffiles}', 'wg-overlay'])).stdout.trim().split(' ')[0],
      '/etc/wg-overlay/wg-overlay.conf',
    );
    const verify = await c.exec('systemd-analyze', ['verify', 'wg-overlay.service'], { allowFailure: true });
    assert.equal(verify.stdout + verify.stderr, '', 'systemd-analyze verify should find nothing to complain about');
  });

  it('man shows the installed wg-overlay(8) and wg-overlay.conf(5) without a warning; the bash completion sources and completes', async () => {
    const env = { MANWIDTH: '80', LC_ALL: 'C.UTF-8' };
    const page = await c.exec('man', ['--warnings', '-l', '/usr/share/man/man8/wg-overlay.8.gz'], { env });
    assert.equal(page.stderr, '', 'man --warnings says nothing');
    const text = plainMan(page.stdout);
    assert.match(text, /^NAME\n {7}wg-overlay - WireGuard mesh between the nodes of a Kubernetes cluster$/m);
    assert.match(
      text,
      new RegExp(`wg-overlay ${pkg.version.replace(/\./g, '\\.')} `),
      'the package version in the footer',
    );
    for (const cmd of ['run', 'check-config', 'kubeconfig', 'status', 'showconf', 'graph', 'version'])
      assert.match(text, new RegExp(`^ {3}${cmd}$`, 'm'), `the page describes ${cmd}`);
    for (const section of ['FILES', 'SIGNALS', 'EXIT STATUS']) assert.match(text, new RegExp(`^${section}$`, 'm'));
    // By name, through man-db's index (updated by its trigger when the package was installed).
    assert.equal(plainMan((await c.exec('man', ['wg-overlay'], { env })).stdout), text);
    const conf = plainMan((await c.exec('man', ['5', 'wg-overlay.conf'], { env })).stdout);
    assert.match(conf, /^ {7}listen_port = 51820$/m);
    assert.match((await c.exec('whatis', ['wg-overlay'])).stdout, /^wg-overlay \(8\) +- WireGuard mesh/m);
    // The completion, as bash-completion loads it (it is sourced on first use of the command).
    const r = await c.exec('bash', [
      '-c',
      'set -u; . /usr/share/bash-completion/completions/wg-overlay && complete -p wg-overlay && ' +
        'COMP_WORDS=(wg-overlay showconf "") COMP_CWORD=2 && _wg_overlay && echo "${COMPREPLY[*]}"',
    ]);
    assert.equal(r.stderr, '', 'sourcing prints nothing on stderr');
    assert.equal(r.stdout, 'complete -F _wg_overlay wg-overlay\npeer node\n');
    // --help and the page come from the same description.
    const help = (await c.exec('wg-overlay', ['--help'])).stdout;
    for (const line of help.split('\n').filter((l) => /^ {2}[a-z]/.test(l))) {
      const form = line.trim().split(/ {2,}/)[0]!;
      assert.ok(text.replace(/\s+/g, ' ').includes(`wg-overlay ${form}`), `the page shows ${form}`);
    }
  });

  it(
    'systemd-analyze security: exposure at most 1.5, every remaining point explained in the unit, and the ' +
      'documented figure is the measured one',
    async () => {
      const r = await c.exec('systemd-analyze', ['security', '--no-pager', 'wg-overlay.service'], {
        allowFailure: true,
      });
      const m = /Overall exposure level for wg-overlay\.service: (\d+\.\d+) (\S+)/.exec(r.stdout);
      assert.ok(m, `no exposure level in:\n${r.stdout}${r.stderr}`);
      const exposure = m[1]!;
      console.log(`      (systemd-analyze security: exposure ${exposure} ${m[2]})`);
      assert.ok(Number(exposure) <= 1.5, `exposure ${exposure} should be at most 1.5:\n${r.stdout}`);
      for (const good of [
        'User=/DynamicUser=',
        'CapabilityBoundingSet=~CAP_SYS_ADMIN',
        'CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)',
        'NoNewPrivileges=',
        'ProtectSystem=',
        'PrivateDevices=',
        'MemoryDenyWriteExecute=',
        'NotifyAccess=',
        'SupplementaryGroups=',
        'RemoveIPC=',
      ]) {
        assert.ok(
          r.stdout.split('\n').some((l) => l.startsWith(`✓ ${good} `)),
          `${good} should be ✓:\n${r.stdout}`,
        );
      }
      // Every ✗ line is explained in the unit file's comments.
      const unit = await readFile('systemd/wg-overlay.service', 'utf8');
      const comments = unit
        .split('\n')
        .filter((l) => l.startsWith('#'))
        .join('\n');
      const bad = r.stdout
        .split('\n')
        .filter((l) => l.startsWith('✗ '))
        .map((l) => l.slice(2).split(/\s+/)[0]!);
      assert.ok(bad.length > 0);
      for (const b of bad) assert.ok(comments.includes(b), `the unit's comments do not explain ${b}`);
      assert.ok(comments.includes(`rates this unit ${exposure}`), 'the unit states the measured figure');
      const documented: string[] = [];
      for (const f of ['README.md', 'docs/install.md']) {
        const text = await readFile(f, 'utf8').catch(() => '');
        const d = /`systemd-analyze security wg-overlay\.service`[^\n]*?\*\*(\d+\.\d+)\*\*/.exec(text);
        if (d) documented.push(`${f}: ${d[1]}`);
      }
      assert.ok(documented.length > 0, 'the install guide states the exposure figure');
      for (const d of documented)
        assert.equal(
          d.replace(/^.*: /, ''),
          exposure,
          `documented exposure (${d}) differs from the measured ${exposure}`,
        );
    },
  );

  it('a fresh install without a kubeconfig is enabled, fails once with status 78 and does not crash-loop; status says what is missing', async () => {
    assert.match(
      installOutput,
      /not configured yet.*\/etc\/wg-overlay\/kubeconfig does not exist/s,
      'postinst should tell the admin what to do',
    );
    assert.equal(
      (await c.exec('systemctl', ['is-enabled', 'wg-overlay'], { allowFailure: true })).stdout.trim(),
      'enabled',
      'Debian policy: enabled on install',
    );
    const failed = await c.waitForUnit(
      'wg-overlay',
      ['ActiveState', 'Result', 'ExecMainStatus', 'NRestarts'],
      (p) => p.ActiveState === 'failed',
      30_000,
    );
    assert.equal(failed.Result, 'exit-code');
    assert.equal(failed.ExecMainStatus, '78');
    // RestartSec=5s: a restart would have happened by now.
    await sleep(7_000);
    const later = await c.show('wg-overlay', ['ActiveState', 'NRestarts']);
    assert.deepEqual(later, { ActiveState: 'failed', NRestarts: '0' }, 'no restarts on exit status 78');
    const status = await c.exec('systemctl', ['status', '--no-pager', '-l', '-n', '20', 'wg-overlay'], {
      allowFailure: true,
    });
    assert.match(status.stdout, /status=78\/CONFIG/);
    assert.match(
      status.stdout,
      /kubeconfig \/etc\/wg-overlay\/kubeconfig does not exist: create it with `wg-overlay kubeconfig --server URL/,
    );
    const err = await c.journal(['-u', 'wg-overlay', '-p', 'err']);
    assert.ok(
      err.some(
        (e) =>
          e.SYSLOG_IDENTIFIER === 'wg-overlay' && e.PRIORITY === 3 && /kubeconfig .* does not exist/.test(e.MESSAGE),
      ),
      'the reason is logged at err',
    );
  });

  it(
    'wg-overlay kubeconfig (run on Node 18 in the container) writes a 0600 kubeconfig and token file from ' +
      'server URL, CA data and the piped Node-bound token',
    async () => {
      const caData = Buffer.from(api.caPem!).toString('base64');
      const r = await c.exec(
        'wg-overlay',
        ['kubeconfig', '--server', api.url!, '--ca-data', caData, '--token-file', '-'],
        { input: nodeToken.token },
      );
      assert.match(r.stdout, /wrote \/etc\/wg-overlay\/kubeconfig \(mode 0600\)/);
      assert.match(
        r.stdout,
        new RegExp(
          `wrote /etc/wg-overlay/token \\(mode 0600\\): system:serviceaccount:wg-overlay:wg-overlay, bound to Node ${NODE}, expires`,
        ),
      );
      assert.equal(
        (await c.exec('stat', ['-c', '%a %U %G', '/etc/wg-overlay/kubeconfig', '/etc/wg-overlay/token'])).stdout.trim(),
        '600 root root\n600 root root',
      );
      const again = await c.exec(
        'wg-overlay',
        ['kubeconfig', '--server', api.url!, '--ca-data', caData, '--token-file', '-'],
        { input: nodeToken.token, allowFailure: true },
      );
      assert.equal(again.exitCode, 1);
      assert.match(again.stderr, /already exists; add --force/);
    },
  );

  it(
    'systemctl enable --now: the unit is active only once the mesh is applied (READY=1), wg-quick@wg0 is ' +
      'up, and its Node is annotated',
    async () => {
      // This kernel has no WireGuard module: the admin installs userspace WireGuard (documented).
      await c.exec('apt-get', ['install', '-y', '--no-install-recommends', 'wireguard-go'], {
        env: { DEBIAN_FRONTEND: 'noninteractive' },
        timeoutMs: 5 * 60_000,
      });
      // What a node of a kubeadm cluster has and the daemon must never read (world-readable here on purpose).
      await c.sh(SECRETS.map((f) => `mkdir -p ${dirname(f)} && echo secret > ${f} && chmod 644 ${f}`).join(' && '));
      // An admin's own secret next to the credentials, which the config does not name: secrets-access leaves it alone.
      await c.writeFile(UNRELATED, 'not for the daemon\n', 0o600);
      const cursor = await c.cursor();
      await c.exec('systemctl', ['enable', '--now', 'wg-overlay'], { timeoutMs: 120_000 });
      const p = await c.show('wg-overlay', [
        'ActiveState',
        'SubState',
        'StatusText',
        'InvocationID',
        'MainPID',
        'NRestarts',
        'Type',
        'NotifyAccess',
      ]);
      assert.equal(p.ActiveState, 'active');
      assert.equal(p.SubState, 'running');
      assert.equal(p.Type, 'notify');
      // READY=1 and STATUS= came from the main process itself: systemd takes nothing else.
      assert.equal(p.NotifyAccess, 'main');
      assert.match(p.StatusText ?? '', /^mesh applied: 0 peers, \d+ routes, address 100\.\d+\.\d+\.\d+\/10$/);
      invocation = p.InvocationID!;
      mainPid = p.MainPID!;
      // Readiness ordering: the daemon's "mesh applied" comes before systemd's "Started".
      const lines = await since(cursor);
      const applied = lines.findIndex(
        (e) => e.SYSLOG_IDENTIFIER === 'wg-overlay' && e.MESSAGE.startsWith('mesh applied:'),
      );
      const started = lines.findIndex(
        (e) => e.SYSLOG_IDENTIFIER === 'systemd' && /^Started wg-overlay\.service/.test(e.MESSAGE),
      );
      assert.ok(
        applied >= 0 && started > applied,
        `expected "mesh applied" before "Started":\n${lines.map((e) => e.MESSAGE).join('\n')}`,
      );
      assert.equal((await c.exec('systemctl', ['is-active', 'wg-quick@wg0'])).stdout.trim(), 'active');
      const pub = (await c.exec('wg', ['show', 'wg0', 'public-key'])).stdout.trim();
      const a = annotations();
      assert.equal(a[`${ANN}public-key`], pub);
      assert.equal(a[`${ANN}endpoint`], `${node.underlayAddress}:51820`);
      assert.match(a[`${ANN}overlay-address`] ?? '', /^100\.\d+\.\d+\.\d+$/);
      assert.match(
        (await c.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', 'wg0'])).stdout,
        new RegExp(`inet ${a[`${ANN}overlay-address`]!.replace(/\./g, '\\.')}/10`),
      );
      // The sandbox lets the daemon write its status file (RuntimeDirectory=) for `wg-overlay status`.
      assert.equal((await c.exec('stat', ['-c', '%a', '/run/wg-overlay'])).stdout.trim(), '755');
      const st = await c.exec('wg-overlay', ['status'], { allowFailure: true });
      assert.equal(st.exitCode, 0, `wg-overlay status:\n${st.stdout}${st.stderr}`);
      assert.ok((await c.readFile('/run/wg-overlay/status.json')).includes(NODE));
    },
  );

  it("the daemon runs as user wg-overlay with CAP_NET_ADMIN only; the kubelet's and PKI files are out of its sight", async () => {
    const uid = (await c.exec('id', ['-u', 'wg-overlay'])).stdout.trim();
    const gid = (await c.exec('id', ['-g', 'wg-overlay'])).stdout.trim();
    const status = await c.readFile(`/proc/${mainPid}/status`);
    assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'), status);
    assert.match(status, new RegExp(`^Gid:\\s+${gid}\\s+${gid}\\s+${gid}\\s+${gid}$`, 'm'));
    assert.match(status, new RegExp(`^Groups:\\s*(${gid}\\s*)?$`, 'm'), 'no supplementary groups');
    // CAP_NET_ADMIN is bit 12.
    for (const set of ['CapEff', 'CapPrm', 'CapBnd', 'CapAmb'])
      assert.match(status, new RegExp(`^${set}:\\s+0000000000001000$`, 'm'), `${set}:\n${status}`);
    assert.match(status, /^NoNewPrivs:\s+1$/m);
    // Its children (ip -batch, ip monitor) are the same user.
    const kids = (await c.exec('ps', ['-o', 'uid=,comm=', '--ppid', mainPid])).stdout
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/));
    assert.ok(kids.length >= 1 && kids.every(([u]) => u === uid), JSON.stringify(kids));
    // The secrets: invisible in its mount namespace, unreadable to its user anyway.
    for (const f of SECRETS) {
      const r = await c.exec('nsenter', ['-t', mainPid, '-m', '--', 'cat', f], { allowFailure: true });
      assert.notEqual(r.exitCode, 0, `${f} is visible to the daemon: ${r.stdout}`);
    }
    assert.equal((await asUser(c, ['cat', '/etc/shadow'])).exitCode, 1);
    assert.equal((await asUser(c, ['cat', UNRELATED])).exitCode, 1);
    // Its own files: state and the kubeconfig (made readable to its group at start).
    assert.equal(
      (
        await c.sh(
          'stat -c "%U:%G %a %n" /var/lib/wg-overlay /var/lib/wg-overlay/private.key /var/lib/wg-overlay/wireguard ' +
            `/var/lib/wg-overlay/wireguard/wg0.conf /etc/wg-overlay/kubeconfig /etc/wg-overlay/token ${UNRELATED}`,
        )
      ).stdout,
      [
        'wg-overlay:wg-overlay 700 /var/lib/wg-overlay',
        'wg-overlay:wg-overlay 600 /var/lib/wg-overlay/private.key',
        'wg-overlay:wg-overlay 700 /var/lib/wg-overlay/wireguard',
        'wg-overlay:wg-overlay 600 /var/lib/wg-overlay/wireguard/wg0.conf',
        'root:wg-overlay 640 /etc/wg-overlay/kubeconfig',
        'root:wg-overlay 640 /etc/wg-overlay/token',
        // Not named by the config: secrets-access (run as root before the start) left it as it was.
        `root:root 600 ${UNRELATED}`,
        '',
      ].join('\n'),
    );
    // (The admin's file would keep /etc/wg-overlay after a purge, which the purge test checks is gone.)
    await c.exec('rm', [UNRELATED]);
    // Limits (a container without cgroup controllers of its own shows them without enforcing
    // them), and what the daemon uses: its resident memory, its threads plus its children.
    const lim = await c.show('wg-overlay', ['MemoryHigh', 'MemoryMax', 'TasksMax', 'CPUQuotaPerSecUSec']);
    assert.deepEqual(lim, {
      MemoryHigh: String(320 * 1024 * 1024),
      MemoryMax: String(512 * 1024 * 1024),
      TasksMax: '64',
      CPUQuotaPerSecUSec: '1s',
    });
    const rssMb = Math.round(Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]) / 1024);
    const tasks = Number(/^Threads:\s+(\d+)$/m.exec(status)?.[1]) + kids.length;
    console.log(`      (the daemon uses ${rssMb} MB resident and ${tasks} tasks)`);
    assert.ok(rssMb > 0 && rssMb < 320, `resident memory ${rssMb} MB`);
    assert.ok(tasks < 32, `tasks: ${tasks}`);
  });

  it("wg-quick@wg0: started by the daemon over D-Bus, wg0.conf installed from the daemon's copy, wireguard-go as wg-overlay-wg", async () => {
    const log = (await c.journal(['-u', 'wg-overlay'])).map((e) => e.MESSAGE);
    assert.ok(
      log.some((m) => /^started wg-quick@wg0\.service through systemd D-Bus/.test(m)),
      log.join('\n'),
    );
    const quick = (await c.journal(['-u', 'wg-quick@wg0'])).map((e) => e.MESSAGE);
    assert.ok(
      quick.includes('wg-overlay: installed /var/lib/wg-overlay/wireguard/wg0.conf as /etc/wireguard/wg0.conf'),
      quick.join('\n'),
    );
    assert.equal((await c.exec('stat', ['-c', '%U:%G %a', '/etc/wireguard/wg0.conf'])).stdout.trim(), 'root:root 600');
    assert.equal(
      await c.readFile('/etc/wireguard/wg0.conf'),
      await c.readFile('/var/lib/wg-overlay/wireguard/wg0.conf'),
    );
    // No kernel WireGuard here: wireguard-go, unprivileged and not the daemon's user, its socket
    // (made by the wrapper, group wg-overlay) reached through a root-owned link.
    assert.equal((await c.exec('ps', ['-o', 'user=', '-C', 'wireguard-go'])).stdout.trim(), 'wg-overlay-wg');
    assert.equal(
      (await c.exec('readlink', ['/run/wireguard/wg0.sock'])).stdout.trim(),
      '/run/wg-overlay-wireguard/wg0.sock',
    );
    assert.equal(
      (await c.exec('stat', ['-c', '%U %a', '/run/wireguard', '/run/wg-overlay-wireguard'])).stdout,
      'root 755\nroot 755\n',
    );
    assert.equal(
      (await c.exec('stat', ['-c', '%U:%G %a', '/run/wg-overlay-wireguard/wg0.sock'])).stdout.trim(),
      'wg-overlay-wg:wg-overlay 660',
    );
    const wgGid = (await c.exec('id', ['-g', 'wg-overlay-wg'])).stdout.trim();
    const wgStatus = await c.readFile(`/proc/${(await c.exec('pgrep', ['-o', 'wireguard-go'])).stdout.trim()}/status`);
    assert.match(wgStatus, /^CapEff:\s+0000000000001400$/m, 'CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only');
    assert.match(wgStatus, new RegExp(`^Groups:\\s*${wgGid}\\s*$`, 'm'), 'only its own group');
    // What wireguard-go's user cannot read: the daemon's token, kubeconfig and private key.
    for (const f of ['/etc/wg-overlay/token', '/etc/wg-overlay/kubeconfig', '/var/lib/wg-overlay/private.key']) {
      const r = await c.exec('setpriv', ['--reuid=wg-overlay-wg', '--regid=wg-overlay-wg', '--init-groups', 'cat', f], {
        allowFailure: true,
      });
      assert.equal(r.exitCode, 1, `${f} is readable to wg-overlay-wg`);
      assert.match(r.stderr, /Permission denied/);
    }
    // The daemon's user reaches the socket (as the daemon does for every wg set).
    assert.equal((await asUser(c, ['wg', 'show', 'wg0', 'public-key'])).exitCode, 0);
  });

  it("D-Bus as user wg-overlay: restarting wg-quick@wg0 is allowed; stopping it, another interface's and other units are refused", async () => {
    // The interface the service started with, recorded by its root ExecStartPre for the polkit rule.
    assert.equal(
      (await c.exec('stat', ['-c', '%U %a', '/run/wg-overlay-polkit', '/run/wg-overlay-polkit/interface'])).stdout,
      'root 755\nroot 644\n',
    );
    assert.equal(await c.readFile('/run/wg-overlay-polkit/interface'), 'wg0\n');
    const call = (method: string, unit: string): Promise<RunResult> =>
      asUser(c, [
        'busctl',
        'call',
        'org.freedesktop.systemd1',
        '/org/freedesktop/systemd1',
        'org.freedesktop.systemd1.Manager',
        method,
        'ss',
        unit,
        'replace',
      ]);
    const before = (await c.exec('pgrep', ['-o', 'wireguard-go'])).stdout.trim();
    const ok = await call('RestartUnit', 'wg-quick@wg0.service');
    assert.equal(ok.exitCode, 0, ok.stderr);
    await c.waitForUnit('wg-quick@wg0', ['ActiveState'], (x) => x.ActiveState === 'active');
    const deadline = Date.now() + 10_000;
    while (
      (await c.exec('pgrep', ['-o', 'wireguard-go'], { allowFailure: true })).stdout.trim() === before &&
      Date.now() < deadline
    )
      await sleep(100);
    assert.notEqual(
      (await c.exec('pgrep', ['-o', 'wireguard-go'])).stdout.trim(),
      before,
      'wg-quick@wg0 was restarted',
    );
    for (const [method, unit] of [
      ['StopUnit', 'wg-quick@wg0.service'],
      // Another WireGuard interface of the host's, which the daemon's wg-quick@wg0 grant does not cover.
      ['StartUnit', 'wg-quick@other.service'],
      ['RestartUnit', 'wg-quick@other.service'],
      ['RestartUnit', 'wg-overlay.service'],
      ['StartUnit', 'systemd-journald.service'],
      ['RestartUnit', 'polkit.service'],
      ['StartUnit', 'wg-quick@wg0.timer'],
      ['ReloadUnit', 'wg-quick@wg0.service'],
    ] as const) {
      const r = await call(method, unit);
      assert.equal(r.exitCode, 1, `${method} ${unit} should be refused`);
      assert.match(r.stderr, /Access denied|Interactive authentication required/, `${method} ${unit}: ${r.stderr}`);
    }
    const transient = await asUser(c, ['systemd-run', '--wait', '--pipe', '/bin/true']);
    assert.notEqual(transient.exitCode, 0, 'a transient unit (systemd-run) is refused');
    assert.match(transient.stderr, /Access denied|Interactive authentication required/);
    assert.equal((await c.exec('systemctl', ['is-active', 'wg-quick@wg0'])).stdout.trim(), 'active');
    // The daemon noticed the restart and put its routes back.
    await c.waitForUnit(
      'wg-overlay',
      ['ActiveState', 'NRestarts'],
      (x) => x.ActiveState === 'active' && x.NRestarts === '0',
    );
  });

  it("wg-quick@<if> refuses a daemon's wg-quick file with commands (PostUp and friends), and an admin's file is never replaced", async () => {
    // Another instance, wgt, so that the running daemon (which rewrites its own wg0.conf whenever
    // wg0 goes away) does not interfere: the hook acts on any interface the daemon has a file for.
    const staged = '/var/lib/wg-overlay/wireguard/wgt.conf';
    const good = (await c.readFile('/var/lib/wg-overlay/wireguard/wg0.conf')).replace(
      /^ListenPort = .*$/m,
      'ListenPort = 51999',
    );
    const exists = async (path: string): Promise<boolean> =>
      (await c.exec('test', ['-e', path], { allowFailure: true })).exitCode === 0;
    const asDaemon = (text: string): Promise<RunResult> =>
      c.exec(
        'setpriv',
        [
          '--reuid=wg-overlay',
          '--regid=wg-overlay',
          '--init-groups',
          'sh',
          '-c',
          `cat > ${staged}.new && mv ${staged}.new ${staged}`,
        ],
        { input: text },
      );
    for (const line of [
      'PostUp = touch /var/tmp/pwned',
      'PreUp = touch /var/tmp/pwned',
      'postdown = touch /var/tmp/pwned',
      'DNS = 192.0.2.1',
      'SaveConfig = true',
    ]) {
      assert.equal((await asDaemon(good.replace('[Interface]\n', `[Interface]\n${line}\n`))).exitCode, 0);
      const cursor = await c.cursor();
      const r = await c.exec('systemctl', ['start', 'wg-quick@wgt'], { allowFailure: true });
      assert.notEqual(r.exitCode, 0, `${line}: wg-quick@wgt should not start`);
      const lines = (await c.entriesAfter(cursor, 'wg-quick@wgt')).map((e) => e.MESSAGE);
      assert.ok(
        lines.some((m) =>
          /refusing to install \/var\/lib\/wg-overlay\/wireguard\/wgt\.conf as \/etc\/wireguard\/wgt\.conf: it is not a file wg-overlay writes/.test(
            m,
          ),
        ),
        lines.join('\n'),
      );
      assert.ok(
        !lines.some((m) => m.includes('pwned') || m.includes('192.0.2.1')),
        `no value is echoed to the journal:\n${lines.join('\n')}`,
      );
      assert.ok(!(await exists('/var/tmp/pwned')), `${line}: no command ran`);
      assert.ok(!(await exists('/etc/wireguard/wgt.conf')), 'nothing installed');
      await c.exec('systemctl', ['reset-failed', 'wg-quick@wgt']);
    }
    // A correct file, but /etc/wireguard/wgt.conf is the admin's own: left alone.
    assert.equal((await asDaemon(good)).exitCode, 0);
    await c.writeFile(
      '/etc/wireguard/wgt.conf',
      '[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n',
      0o600,
    );
    const cursor = await c.cursor();
    assert.notEqual((await c.exec('systemctl', ['start', 'wg-quick@wgt'], { allowFailure: true })).exitCode, 0);
    assert.ok(
      (await c.entriesAfter(cursor, 'wg-quick@wgt')).some((e) =>
        /refusing to replace \/etc\/wireguard\/wgt\.conf: it was not written by wg-overlay/.test(e.MESSAGE),
      ),
    );
    assert.equal(
      await c.readFile('/etc/wireguard/wgt.conf'),
      '[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n',
    );
    await c.exec('rm', ['-f', '/etc/wireguard/wgt.conf', staged]);
    await c.exec('systemctl', ['reset-failed', 'wg-quick@wgt']);
    // wg0 was never touched.
    assert.equal((await c.show('wg-overlay', ['ActiveState', 'MainPID'])).MainPID, mainPid);
    assert.equal((await c.exec('systemctl', ['is-active', 'wg-quick@wg0'])).stdout.trim(), 'active');
  });

  it('journalctl: one line per event at the right priorities, -p warning shows no problems, the private key never appears', async () => {
    const entries = await c.journal([`_SYSTEMD_INVOCATION_ID=${invocation}`]);
    const ours = entries.filter((e) => e.SYSLOG_IDENTIFIER === 'wg-overlay');
    const prio = (re: RegExp): number | undefined => ours.find((e) => re.test(e.MESSAGE))?.PRIORITY;
    assert.equal(prio(/^wg-overlay \S+ starting: node wgs-life, interface wg0/), 6, 'start line at info');
    assert.equal(prio(/^loaded the WireGuard private key/), 6);
    assert.equal(prio(/^systemd found on the system bus/), 6);
    assert.equal(prio(/^started wg-quick@wg0\.service through systemd D-Bus/), 6);
    assert.equal(prio(/^mesh applied:/), 5, 'mesh applied at notice');
    for (const e of ours) {
      assert.doesNotMatch(e.MESSAGE, /^<\d>/, 'the <N> prefix is consumed by journald');
      assert.doesNotMatch(e.MESSAGE, /\n/, 'one line per entry');
      assert.equal(e._SYSTEMD_UNIT, 'wg-overlay.service');
    }
    const problems = warningLines(await c.journal(['-u', 'wg-overlay', `_SYSTEMD_INVOCATION_ID=${invocation}`]));
    assert.equal(problems, '', 'a healthy start logs nothing at warning or above');
    const key = (await c.readFile('/var/lib/wg-overlay/private.key')).trim();
    assert.ok(key.length === 44);
    const all = await c.exec('journalctl', ['--no-pager', '-o', 'cat']);
    assert.ok(!all.stdout.includes(key), 'the private key must never reach the journal');
    assert.equal(
      (await c.exec('stat', ['-c', '%a', '/var/lib/wg-overlay'])).stdout.trim(),
      '700',
      'StateDirectoryMode=0700',
    );
  });

  it('systemctl reload (SIGHUP) applies a changed listen_port without restarting the daemon', async () => {
    const cursor = await c.cursor();
    // Edit and reload at once: the SIGHUP reload runs before the file watcher's (debounced) one.
    await c.sh(
      "sed -i 's/^# listen_port = 51820$/listen_port = 51821/' /etc/wg-overlay/wg-overlay.conf && " +
        "grep -q '^listen_port = 51821$' /etc/wg-overlay/wg-overlay.conf && systemctl reload wg-overlay",
    );
    await c.waitForEntry(cursor, 'wg-overlay', (e) => /listen port 51820 → 51821/.test(e.MESSAGE));
    const lines = (await since(cursor)).filter((e) => e.SYSLOG_IDENTIFIER === 'wg-overlay').map((e) => e.MESSAGE);
    const firstReload = lines.find((l) => l.startsWith('reloading '));
    assert.match(firstReload ?? '', /\(SIGHUP\)$/, `the first reload should be the SIGHUP one:\n${lines.join('\n')}`);
    assert.equal((await c.exec('wg', ['show', 'wg0', 'listen-port'])).stdout.trim(), '51821');
    const deadline = Date.now() + 10_000;
    while (annotations()[`${ANN}endpoint`] !== `${node.underlayAddress}:51821` && Date.now() < deadline)
      await sleep(100);
    assert.equal(annotations()[`${ANN}endpoint`], `${node.underlayAddress}:51821`);
    const p = await c.show('wg-overlay', ['ActiveState', 'MainPID', 'NRestarts']);
    assert.deepEqual(p, { ActiveState: 'active', MainPID: mainPid, NRestarts: '0' });
  });

  it('a token rotated with --token-only is used by the running, sandboxed service without a restart; the old one is revoked', async () => {
    const fresh = api.createServiceAccountToken({
      namespace: 'wg-overlay',
      name: 'wg-overlay',
      boundNode: NODE,
      expirationSeconds: 8760 * 3600,
    });
    const r = await c.exec('wg-overlay', ['kubeconfig', '--token-only', '--token-file', '-'], { input: fresh.token });
    assert.match(r.stdout, /no restart needed/);
    api.revokeToken(nodeToken.token);
    nodeToken = fresh;
    const mark = api.requests.length;
    // The API server ends watches now and then; the daemon reconnects with what is in the file.
    api.dropWatches();
    api.patchNode(NODE, { metadata: { annotations: { [`${ANN}endpoint`]: null } } });
    const deadline = Date.now() + 20_000;
    while (annotations()[`${ANN}endpoint`] !== `${node.underlayAddress}:51821` && Date.now() < deadline)
      await sleep(100);
    assert.equal(annotations()[`${ANN}endpoint`], `${node.underlayAddress}:51821`, 'republished with the new token');
    const later = api.requests.slice(mark).filter((x) => x.path.startsWith('/api/v1/nodes'));
    assert.ok(
      later.some((x) => x.method === 'PATCH' && x.status === 200 && x.credentialId === `JTI=${fresh.id}`),
      'the PATCH carried the new token',
    );
    assert.ok(
      later.every((x) => x.status !== 401),
      'the revoked token was never sent again',
    );
    const p = await c.show('wg-overlay', ['ActiveState', 'MainPID', 'NRestarts']);
    assert.deepEqual(p, { ActiveState: 'active', MainPID: mainPid, NRestarts: '0' });
  });

  it('a broken config on reload is logged at err and the service keeps running with the old config', async () => {
    const cursor = await c.cursor();
    await c.sh("printf 'this line is not INI\\n' >> /etc/wg-overlay/wg-overlay.conf && systemctl reload wg-overlay");
    const rejected = await c.waitForEntry(cursor, 'wg-overlay', (e) =>
      /reload of \/etc\/wg-overlay\/wg-overlay\.conf rejected/.test(e.MESSAGE),
    );
    assert.equal(rejected.PRIORITY, 3, 'rejected reload at err');
    const errs = (await since(cursor))
      .filter((e) => e.PRIORITY <= 3 && e.SYSLOG_IDENTIFIER === 'wg-overlay')
      .map((e) => e.MESSAGE);
    assert.ok(
      errs.some((m) => /malformed line "this line is not INI"/.test(m)),
      `the bad line is named at err:\n${errs.join('\n')}`,
    );
    const p = await c.show('wg-overlay', ['ActiveState', 'MainPID', 'NRestarts']);
    assert.deepEqual(p, { ActiveState: 'active', MainPID: mainPid, NRestarts: '0' });
    assert.equal(
      (await c.exec('wg', ['show', 'wg0', 'listen-port'])).stdout.trim(),
      '51821',
      'the previous settings keep running',
    );
    const check = await c.exec('wg-overlay', ['check-config'], { allowFailure: true });
    assert.equal(check.exitCode, 78);
    assert.match(check.stderr, /error: .*malformed line "this line is not INI"/);
    // Repair it again (the edit of listen_port stays).
    await c.sh("sed -i '/^this line is not INI$/d' /etc/wg-overlay/wg-overlay.conf && systemctl reload wg-overlay");
    assert.equal((await c.exec('wg-overlay', ['check-config'])).exitCode, 0);
  });

  it('upgrading to a higher version keeps the edited config and restarts the running daemon on the new version', async () => {
    assert.notEqual(upgrade.version, pkg.version);
    await c.writeFile(`/var/tmp/${basename(upgrade.deb)}`, await readFile(upgrade.deb));
    const cursor = await c.cursor();
    // Both versions are built from this checkout, so they ship the same wg-overlay.conf: dpkg
    // keeps the edited file without asking, and a plain `apt-get install` (no --force-conf*
    // options) must not stop at a prompt. A shipped file that changed: upgrade.test.ts.
    const r = await c.exec(
      'apt-get',
      ['install', '-y', '--no-install-recommends', `/var/tmp/${basename(upgrade.deb)}`],
      { env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 5 * 60_000 },
    );
    assert.match(
      r.stdout,
      new RegExp(
        `Unpacking wg-overlay \\(${upgrade.version.replace(/\./g, '\\.')}-1\\) over \\(${pkg.version.replace(/\./g, '\\.')}-1\\)`,
      ),
    );
    assert.match(
      await c.readFile('/etc/wg-overlay/wg-overlay.conf'),
      /^listen_port = 51821$/m,
      "the admin's edit survives the upgrade",
    );
    assert.equal(
      (await c.sh('ls /etc/wg-overlay/')).stdout.split('\n').filter((f) => /dpkg-(dist|old|new)/.test(f)).length,
      0,
    );
    assert.equal((await c.exec('wg-overlay', ['version'])).stdout.trim(), `wg-overlay ${upgrade.version}`);
    // postinst try-restarts without blocking dpkg: wait for the new process to be ready.
    const p = await c.waitForUnit(
      'wg-overlay',
      ['ActiveState', 'MainPID'],
      (x) => x.ActiveState === 'active' && x.MainPID !== mainPid && x.MainPID !== '0',
    );
    await c.waitForEntry(cursor, 'wg-overlay', (e) => e.MESSAGE.startsWith(`wg-overlay ${upgrade.version} starting:`));
    await c.waitForEntry(cursor, 'wg-overlay', (e) => e.MESSAGE.startsWith('mesh applied:'));
    mainPid = p.MainPID!;
    assert.equal((await c.exec('wg', ['show', 'wg0', 'listen-port'])).stdout.trim(), '51821');
    assert.equal((await c.exec('systemctl', ['is-enabled', 'wg-overlay'])).stdout.trim(), 'enabled');
  });

  it('fail closed: the sandboxed daemon keeps its nftables table and saves it; wg-overlay-fail-closed.service loads it as wg-overlay', async () => {
    const table = async (): Promise<string> =>
      (await c.exec('nft', ['list', 'table', 'inet', 'wg_overlay'], { allowFailure: true })).stdout;
    assert.match(await table(), /chain guard \{/);
    assert.match(await table(), /oifname \{ "lo", "wg0" \} return/);
    assert.equal(
      (await c.exec('stat', ['-c', '%a %U', '/var/lib/wg-overlay/fail-closed.nft'])).stdout.trim(),
      '600 wg-overlay',
    );
    assert.equal((await c.exec('systemctl', ['is-enabled', 'wg-overlay-fail-closed'])).stdout.trim(), 'enabled');
    const verify = await c.exec('systemd-analyze', ['verify', 'wg-overlay-fail-closed.service'], {
      allowFailure: true,
    });
    assert.equal(verify.stdout + verify.stderr, '', 'systemd-analyze verify of the boot unit');
    // What a boot does before the daemon runs: the daemon stopped, the table gone, the boot unit loads the saved one.
    await c.exec('systemctl', ['stop', 'wg-overlay']);
    const before = await table();
    await c.exec('nft', ['delete', 'table', 'inet', 'wg_overlay']);
    await c.exec('systemctl', ['restart', 'wg-overlay-fail-closed'], { timeoutMs: 60_000 });
    assert.equal((await c.show('wg-overlay-fail-closed', ['ActiveState'])).ActiveState, 'active');
    const sets = (t: string): string =>
      t
        .replace(/\s+/g, ' ')
        .replace(/counter packets \d+ bytes \d+/g, '')
        .replace(/packets \d+ bytes \d+/g, '');
    assert.equal(sets(await table()), sets(before));
    await c.exec('systemctl', ['start', 'wg-overlay'], { timeoutMs: 120_000 });
  });

  it('apt-get purge stops the service and removes its state, kubeconfig and wg-quick file', async () => {
    assert.ok((await c.exec('test', ['-f', '/var/lib/wg-overlay/private.key'], { allowFailure: true })).exitCode === 0);
    assert.match((await c.exec('nft', ['list', 'tables'])).stdout, /table inet wg_overlay/);
    await c.exec('apt-get', ['purge', '-y', 'wg-overlay'], {
      env: { DEBIAN_FRONTEND: 'noninteractive' },
      timeoutMs: 5 * 60_000,
    });
    for (const path of [
      '/var/lib/wg-overlay',
      '/etc/wg-overlay',
      '/etc/wireguard/wg0.conf',
      '/usr/lib/wg-overlay',
      '/usr/bin/wg-overlay',
      '/lib/systemd/system/wg-overlay.service',
      '/usr/share/man/man8/wg-overlay.8.gz',
      '/usr/share/bash-completion/completions/wg-overlay',
    ]) {
      const t = await c.exec('test', ['-e', path], { allowFailure: true });
      assert.equal(t.exitCode, 1, `${path} should be gone after purge`);
    }
    assert.equal((await c.show('wg-overlay', ['LoadState'])).LoadState, 'not-found');
    // The fail-closed rule set goes with the package.
    assert.doesNotMatch((await c.exec('nft', ['list', 'tables'])).stdout, /wg_overlay/);
    assert.equal(
      (await c.exec('pgrep', ['-f', '/usr/lib/wg-overlay/wg-overlay.mjs'], { allowFailure: true })).exitCode,
      1,
      'no daemon left running',
    );
    assert.equal(
      (await c.exec('dpkg-query', ['-W', '-f=${Status}', 'wg-overlay'], { allowFailure: true })).stdout.includes(
        'installed',
      ),
      false,
    );
    // Dependencies stay (apt does not remove them on purge of the package).
    assert.match((await c.exec('node', ['--version'])).stdout, /^v18\./);
  });
});
