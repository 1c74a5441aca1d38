/**
 * The upgrade an admin of a 0.1 cluster makes: two booted Debian 12 containers run the package of
 * the last commit whose daemon ran as root (built from git with that commit's own build), form a
 * wireguard-go mesh, and are upgraded one after the other to this checkout's package with
 * `apt-get install`, while a ping crosses the mesh all along. Afterwards each daemon runs as the
 * user wg-overlay with the same private key, config, kubeconfig and peers, its wireguard-go runs
 * as its own user wg-overlay-wg (the postinst restarts wg-quick@wg0 once for that: a root
 * wireguard-go's control socket cannot be handed over), and a Node that joins later becomes a
 * peer on both.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { KILO_PEER_RESOURCE, KubeApiServer } from '../kube-api/server.js';
import { KEYS } from '../support/fakes/fixtures.js';
import { warningLines } from '../support/machines/booted.js';
import { requireTools, sleep, type TestProcess } from '../support/process.js';
import { TestNetwork } from '../support/namespaces/underlay.js';
import {
  buildPackages,
  buildPackagesAtCommit,
  debDependencies,
  debianRoot,
  installedLayer,
  NspawnContainer,
  ROOT_RUNNING_COMMIT,
  type BuiltPackages,
} from '../support/machines/nspawn.js';

const TOKEN = 'wg-overlay-upgrade-token';
const NAMES = ['wgs-upg-a', 'wgs-upg-b'] as const;
const ANN = 'wg-overlay.io/';
/** A third Node that joins after the upgrade (no machine behind it: a peer entry is enough). */
const LATE = { name: 'wgs-upg-late', key: KEYS[5]!, ip: '198.51.100.77', pods: '10.244.9.0/24' };

/**
 * What unattended upgrades pass to dpkg: a config file the admin changed is kept when the
 * package ships a new version of it (which dpkg writes beside it as FILE.dpkg-dist), instead of
 * a question on the terminal.
 */
const KEEP_CONFIG = ['-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold'];

/** ping's summary: packets sent and received. */
function pingSummary(out: string): { sent: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  assert.ok(m, `no ping summary in:\n${out}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}

/** What a node had under 0.1: its public key, its peers and its wg0.conf. */
interface Earlier {
  pub: string;
  peers: string[];
  conf: string;
}

describe('system: upgrade from the root-running 0.1 package, in a two-node wireguard-go mesh', function () {
  this.timeout(20 * 60_000);

  let work: string;
  let prev: BuiltPackages;
  let cur: BuiltPackages;
  let net: TestNetwork;
  let api: KubeApiServer;
  const cs: NspawnContainer[] = [];
  /** Before the upgrade: each node's public key and the peers of its wg0. */
  const earlier = new Map<string, Earlier>();

  const annotations = (name: string): Record<string, string> =>
    (api.getNode(name)?.metadata?.annotations ?? {}) as Record<string, string>;
  const overlay = (name: string): string =>
    annotations(name)[`${ANN}overlay-address`] ?? assert.fail(`${name} has no overlay address`);
  const peersOf = async (c: NspawnContainer): Promise<string[]> =>
    (await c.exec('wg', ['show', 'wg0', 'peers'])).stdout.split('\n').filter(Boolean).sort();
  const waitPeers = async (c: NspawnContainer, n: number): Promise<string[]> => {
    const deadline = Date.now() + 60_000;
    let peers: string[] = [];
    while (Date.now() < deadline) {
      peers = await peersOf(c);
      if (peers.length === n) return peers;
      await sleep(250);
    }
    assert.fail(`${c.name}: expected ${n} peers, have ${peers.length}`);
  };
  /** The daemon's main PID and the uid it runs as (from /proc/<pid>/status). */
  const daemonUid = async (c: NspawnContainer): Promise<{ pid: string; uid: string }> => {
    const { MainPID: pid } = await c.show('wg-overlay', ['MainPID']);
    const status = await c.readFile(`/proc/${pid}/status`);
    return { pid: pid!, uid: /^Uid:\s+(\d+)/m.exec(status)?.[1] ?? '' };
  };

  before(async function () {
    const t0 = Date.now();
    await requireTools(['debootstrap', 'systemd-nspawn', 'dpkg-deb', 'nsenter', 'mount', 'ping', 'git']);
    work = await mkdtemp(join(tmpdir(), 'wgs-upg-'));
    cur = await buildPackages(join(work, 'cur'));
    // The previous release sorts below this one: 0.1.0~prev-1 < 0.1.0-1.
    prev = await buildPackagesAtCommit(ROOT_RUNNING_COMMIT, join(work, 'prev'), `${cur.version}-prev`);
    const deps = [...new Set([...(await debDependencies(cur.deb)), ...(await debDependencies(prev.deb))])];
    const root = await debianRoot({ prefetch: [...deps, 'wireguard-go'] });
    const layers = await installedLayer(root, [...deps, 'wireguard-go']);
    const t1 = Date.now();
    net = await TestNetwork.create({ nodes: NAMES.length, hostAddress: true, labels: [...NAMES] });
    api = new KubeApiServer({ host: net.underlay.hostAddress!, token: TOKEN });
    api.registerResource(KILO_PEER_RESOURCE);
    await api.start();
    for (const [i, name] of NAMES.entries()) {
      const n = net.nodes[i]!;
      await n.sysctl('net.ipv4.ip_forward', '1');
      api.createNode({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name },
        spec: { podCIDR: `10.244.${i + 1}.0/24`, podCIDRs: [`10.244.${i + 1}.0/24`] },
        status: {
          addresses: [
            { type: 'InternalIP', address: n.underlayAddress! },
            { type: 'Hostname', address: name },
          ],
        },
      });
      cs.push(await NspawnContainer.boot({ name, layers, netns: n.netns }));
    }
    console.log(
      `      (packages of ${ROOT_RUNNING_COMMIT.slice(0, 7)} and of this checkout, Debian root and layer ready ` +
        `in ${Math.round((t1 - t0) / 1000)} s, ${NAMES.length} containers booted in ${Math.round((Date.now() - t1) / 1000)} s)`,
    );
  });

  after(async () => {
    for (const c of cs) await c.stop();
    await api?.stop();
    await net?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('the previous package runs the daemon as root, and the two nodes form a mesh', async () => {
    for (const c of cs) {
      await c.writeFile(`/var/tmp/${basename(prev.deb)}`, await readFile(prev.deb));
      await c.exec('apt-get', ['install', '-y', '--no-install-recommends', `/var/tmp/${basename(prev.deb)}`], {
        env: { DEBIAN_FRONTEND: 'noninteractive' },
        timeoutMs: 5 * 60_000,
      });
      await c.waitForUnit(
        'wg-overlay',
        ['ActiveState', 'ExecMainStatus'],
        (p) => p.ActiveState === 'failed' && p.ExecMainStatus === '78',
      );
      await c.writeFile('/var/tmp/ca.crt', api.caPem!);
      await c.writeFile('/var/tmp/token', TOKEN, 0o600);
      await c.exec('wg-overlay', [
        'kubeconfig',
        '--server',
        api.url!,
        '--ca',
        '/var/tmp/ca.crt',
        '--token-file',
        '/var/tmp/token',
      ]);
      // An admin's edit, to be kept by the upgrade.
      await c.sh(
        "sed -i 's/^# persistent_keepalive = 0$/persistent_keepalive = 5/' /etc/wg-overlay/wg-overlay.conf && " +
          "grep -q '^persistent_keepalive = 5$' /etc/wg-overlay/wg-overlay.conf",
      );
      await c.exec('systemctl', ['enable', '--now', 'wg-overlay'], { timeoutMs: 120_000 });
      assert.equal((await daemonUid(c)).uid, '0', 'the 0.1 daemon runs as root');
      assert.equal((await c.exec('id', ['wg-overlay'], { allowFailure: true })).exitCode, 1, 'no user wg-overlay yet');
    }
    for (const c of cs) {
      const peers = await waitPeers(c, 1);
      // wg0.conf follows the live peers a moment later.
      const deadline = Date.now() + 10_000;
      while (!(await c.readFile('/etc/wireguard/wg0.conf')).includes('[Peer]') && Date.now() < deadline)
        await sleep(100);
      const conf = await c.readFile('/etc/wireguard/wg0.conf');
      assert.match(conf, /\[Peer\]/);
      earlier.set(c.name, { pub: (await c.exec('wg', ['show', 'wg0', 'public-key'])).stdout.trim(), peers, conf });
      assert.match(
        (await c.exec('stat', ['-c', '%U', '/run/wireguard/wg0.sock'])).stdout,
        /^root$/m,
        'wireguard-go runs as root under 0.1',
      );
    }
    const r = await net.nodes[0]!.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', overlay(NAMES[1])], {
      allowFailure: true,
      timeoutMs: 30_000,
    });
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
  });

  for (const [i, name] of NAMES.entries()) {
    it(`upgrading ${name}: the daemon now runs as wg-overlay with the same key, config, kubeconfig and peers, and the mesh stays up`, async () => {
      const c = cs[i]!;
      const other = NAMES[1 - i]!;
      const was = earlier.get(name)!;
      const oldPid = (await daemonUid(c)).pid;
      // Traffic across the mesh during the whole upgrade, from this node to the other.
      const ping: TestProcess = net.nodes[i]!.spawn('ping', ['-i', '0.1', '-W', '1', overlay(other)]);
      await sleep(1_000);
      await c.writeFile(`/var/tmp/${basename(cur.deb)}`, await readFile(cur.deb));
      const cursor = await c.cursor();
      const t0 = Date.now();
      // The shipped wg-overlay.conf gained commented keys since 0.1 and the admin edited theirs,
      // so dpkg would ask what to do with it (and fail, with no terminal); unattended upgrades
      // answer as the install guide says: keep the admin's file (the new one is left beside it).
      const r = await c.exec(
        'apt-get',
        ['install', '-y', '--no-install-recommends', ...KEEP_CONFIG, `/var/tmp/${basename(cur.deb)}`],
        { env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 5 * 60_000 },
      );
      assert.match(
        r.stdout,
        new RegExp(
          `Unpacking wg-overlay \\(${cur.version.replace(/\./g, '\\.')}-1\\) over \\(${cur.version.replace(/\./g, '\\.')}~prev-1\\)`,
        ),
      );
      assert.match(r.stdout + r.stderr, /restarting wg-quick@wg0 so that its wireguard-go runs as user wg-overlay-wg/);
      const p = await c.waitForUnit(
        'wg-overlay',
        ['ActiveState', 'MainPID'],
        (x) => x.ActiveState === 'active' && x.MainPID !== oldPid && x.MainPID !== '0',
      );
      await c.waitForEntry(cursor, 'wg-overlay', (e) => e.MESSAGE.startsWith('mesh applied:'));
      const upgradeMs = Date.now() - t0;
      await sleep(2_000);
      await ping.stop('SIGINT');
      const { sent, received } = pingSummary(ping.output());
      console.log(
        `      (${name}: apt-get install and restart took ${(upgradeMs / 1000).toFixed(1)} s; ` +
          `ping every 100 ms across it: ${sent - received} of ${sent} lost)`,
      );
      // wireguard-go had to be restarted once (its socket belonged to root): allow for that
      // break and the handshake after it, no more.
      assert.ok(
        received >= sent - 15,
        `${sent - received} of ${sent} pings lost across the upgrade:\n${ping.output().slice(-1500)}`,
      );

      await assertKeptAndOwned(c, name, was, p.MainPID!);
      await assertSameMeshAfter(c, i, was, cursor);
    });
  }

  /** After the upgrade: the daemon runs as its own user with the same key, peers and config, and owns its files. */
  async function assertKeptAndOwned(c: NspawnContainer, name: string, was: Earlier, pid: string): Promise<void> {
    // The daemon: its own user, only CAP_NET_ADMIN, same key and peers.
    const uid = (await c.exec('id', ['-u', 'wg-overlay'])).stdout.trim();
    const d = await daemonUid(c);
    assert.equal(d.pid, pid);
    assert.equal(d.uid, uid, 'the daemon runs as wg-overlay');
    assert.notEqual(uid, '0');
    assert.equal((await c.exec('wg', ['show', 'wg0', 'public-key'])).stdout.trim(), was.pub, 'the private key is kept');
    assert.equal(annotations(name)[`${ANN}public-key`], was.pub);
    assert.deepEqual(await peersOf(c), was.peers, 'the peers are kept');
    assert.match(
      await c.readFile('/etc/wg-overlay/wg-overlay.conf'),
      /^persistent_keepalive = 5$/m,
      "the admin's config edit is kept",
    );
    // The new version's file is beside it, for the admin to compare; every key it adds has a
    // default, so the kept 0.1 file is valid as it is.
    assert.equal(
      await c.readFile('/etc/wg-overlay/wg-overlay.conf.dpkg-dist'),
      await readFile('packaging/wg-overlay.conf', 'utf8'),
    );
    assert.match((await c.exec('wg-overlay', ['check-config'])).stdout, /: OK$/m);
    // State handed to the user by systemd; the kubeconfig readable to its group; wireguard-go as
    // wg-overlay-wg, its socket in the daemon's group.
    assert.equal(
      (
        await c.sh('stat -c "%U %a" /var/lib/wg-overlay /var/lib/wg-overlay/private.key /etc/wg-overlay/kubeconfig')
      ).stdout
        .trim()
        .split('\n')
        .join(' | '),
      'wg-overlay 700 | wg-overlay 600 | root 640',
    );
    assert.equal((await c.exec('stat', ['-c', '%G', '/etc/wg-overlay/kubeconfig'])).stdout.trim(), 'wg-overlay');
    assert.equal(
      (await c.exec('stat', ['-L', '-c', '%U:%G', '/run/wireguard/wg0.sock'])).stdout.trim(),
      'wg-overlay-wg:wg-overlay',
    );
    assert.equal((await c.exec('ps', ['-o', 'user=', '-C', 'wireguard-go'])).stdout.trim(), 'wg-overlay-wg');
  }

  /** After the upgrade: wg0.conf describes the same mesh, traffic flows both ways, no permission problem. */
  async function assertSameMeshAfter(c: NspawnContainer, i: number, was: Earlier, cursor: string): Promise<void> {
    // wg0.conf: the same mesh, now installed by wg-quick@wg0 from the daemon's own copy.
    // Plus, since `[overlay] cidr6 = auto` is the default now, an IPv6 overlay address (a ULA
    // from the cluster's CA) for the node and for each peer; with those taken out, it is 0.1's
    // file. The daemon's copy has them at once; /etc/wireguard/wg0.conf is installed from it by
    // the next wg-quick@wg0 start, which the upgrade's restart may have preceded.
    const noV6 = (text: string): string => text.replace(/, fd[0-9a-f:]+\/(?:48|128)$/gm, '');
    const copy = await c.readFile('/var/lib/wg-overlay/wireguard/wg0.conf');
    assert.match(
      copy,
      /^Address = 100\.64\.\S+\/10, fd[0-9a-f:]+\/48$/m,
      `the node gained an IPv6 overlay address:\n${copy}`,
    );
    assert.equal(noV6(copy), was.conf, 'wg0.conf describes the same interface and peers');
    assert.equal(noV6(await c.readFile('/etc/wireguard/wg0.conf')), was.conf);
    // And traffic flows both ways.
    for (const [from, to] of [
      [i, 1 - i],
      [1 - i, i],
    ] as const) {
      const pr = await net.nodes[from]!.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', overlay(NAMES[to]!)], {
        allowFailure: true,
        timeoutMs: 30_000,
      });
      assert.equal(pr.exitCode, 0, `${NAMES[from]} → ${NAMES[to]}:\n${pr.stdout}${pr.stderr}`);
    }
    // Filtered here: systemd 252's journalctl skips the first entry when --after-cursor meets -u or -p.
    const problems = warningLines(await c.entriesAfter(cursor, 'wg-overlay'));
    assert.doesNotMatch(
      problems,
      /permission denied|EACCES|EPERM/i,
      `no permission problems after the upgrade:\n${problems}`,
    );
  }

  it('after the upgrade a Node that joins becomes a peer on both nodes (wg set by the unprivileged daemons)', async () => {
    api.createNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: LATE.name, annotations: { [`${ANN}public-key`]: LATE.key } },
      spec: { podCIDR: LATE.pods, podCIDRs: [LATE.pods] },
      status: {
        addresses: [
          { type: 'InternalIP', address: LATE.ip },
          { type: 'Hostname', address: LATE.name },
        ],
      },
    });
    for (const c of cs) {
      const peers = await waitPeers(c, 2);
      assert.ok(peers.includes(LATE.key), `${c.name}: ${peers.join(', ')}`);
      const log = (await c.journal(['-u', 'wg-overlay'])).map((e) => e.MESSAGE);
      assert.ok(
        log.some((m) => m.startsWith(`added peer ${LATE.name} `)),
        `${c.name}:\n${log.join('\n')}`,
      );
      assert.match((await c.exec('ip', ['route', 'show', LATE.pods])).stdout, /dev wg0 proto 77/);
    }
  });
});
