/**
 * Three booted Debian 12 containers on one test network, each with the .deb installed by apt,
 * wireguard-go for WireGuard (this kernel has no module), and `apply = restart`: the daemons, run
 * as the unprivileged user wg-overlay, publish their keys, find each other through the test API
 * server, restart wg-quick@wg0 through the real systemd's D-Bus API (polkit allows exactly that)
 * whenever their peers change, and the overlay addresses ping. With a default route to a gateway
 * on the underlay, a `systemctl restart wg-quick@wg0` under the running daemon lets no packet to
 * the overlay or a PodCIDR out in clear (the fail-closed rule set; tcpdump on the underlay port).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { KILO_PEER_RESOURCE, KubeApiServer } from '../kube-api/server.js';
import { requireTools, sleep } from '../support/process.js';
import { Capture, rootPort } from '../support/namespaces/capture.js';
import { TestNode } from '../support/namespaces/netns.js';
import { TestNetwork } from '../support/namespaces/underlay.js';
import {
  buildPackages,
  debDependencies,
  debianRoot,
  installedLayer,
  NspawnContainer,
  type BuiltPackages,
} from '../support/machines/nspawn.js';

const TOKEN = 'wg-overlay-mesh-token';
const NAMES = ['wgs-mesh-a', 'wgs-mesh-b', 'wgs-mesh-c'] as const;
const ANN = 'wg-overlay.io/';

describe('system: a three-node mesh of booted Debian 12 containers (wireguard-go, apply = restart)', function () {
  this.timeout(20 * 60_000);

  let work: string;
  let pkg: BuiltPackages;
  let net: TestNetwork;
  let api: KubeApiServer;
  const cs: NspawnContainer[] = [];

  const overlay = (name: string): string => {
    const a = (api.getNode(name)?.metadata?.annotations ?? {}) as Record<string, string>;
    const addr = a[`${ANN}overlay-address`];
    assert.ok(addr, `Node ${name} has no overlay address annotation`);
    return addr;
  };

  before(async function () {
    const t0 = Date.now();
    await requireTools(['debootstrap', 'systemd-nspawn', 'dpkg-deb', 'nsenter', 'mount', 'ping']);
    work = await mkdtemp(join(tmpdir(), 'wgs-mesh-'));
    pkg = await buildPackages(join(work, 'pk'));
    const deps = await debDependencies(pkg.deb);
    const root = await debianRoot({ prefetch: [...deps, 'wireguard-go'] });
    // The dependencies pre-installed once: each container still installs the .deb with apt.
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
      `      (package, Debian root and dependency layer ready in ${Math.round((t1 - t0) / 1000)} s, ` +
        `${NAMES.length} containers booted in ${Math.round((Date.now() - t1) / 1000)} s)`,
    );
  });

  after(async () => {
    for (const c of cs) await c.stop();
    await api?.stop();
    await net?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('each container installs the .deb with apt, gets a kubeconfig, sets apply = restart and starts wg-overlay', async () => {
    for (const c of cs) {
      await c.writeFile(`/var/tmp/${basename(pkg.deb)}`, await readFile(pkg.deb));
      const r = await c.exec('apt-get', ['install', '-y', '--no-install-recommends', `/var/tmp/${basename(pkg.deb)}`], {
        env: { DEBIAN_FRONTEND: 'noninteractive' },
        timeoutMs: 5 * 60_000,
      });
      assert.match(r.stdout, /Setting up wg-overlay \(/);
      // postinst's start attempt (without a kubeconfig) must be over before the kubeconfig
      // appears, or that attempt could come up with the config as shipped (apply = set).
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
      await c.sh(
        "sed -i 's/^# apply = set$/apply = restart/' /etc/wg-overlay/wg-overlay.conf && grep -q '^apply = restart$' /etc/wg-overlay/wg-overlay.conf",
      );
      await c.exec('systemctl', ['enable', '--now', 'wg-overlay'], { timeoutMs: 120_000 });
      assert.equal((await c.exec('systemctl', ['is-active', 'wg-overlay'])).stdout.trim(), 'active');
      const pid = (await c.show('wg-overlay', ['MainPID'])).MainPID!;
      const uid = (await c.exec('id', ['-u', 'wg-overlay'])).stdout.trim();
      assert.match(
        await c.readFile(`/proc/${pid}/status`),
        new RegExp(`^Uid:\\s+${uid}\\s`, 'm'),
        `${c.name}: the daemon runs as wg-overlay`,
      );
    }
  });

  it('every node ends up with the other two as WireGuard peers', async () => {
    const deadline = Date.now() + 60_000;
    for (const c of cs) {
      let peers: string[] = [];
      while (Date.now() < deadline) {
        // While wg-quick@wg0 restarts (apply = restart) wg0 and its socket are briefly gone: try again.
        const r = await c.exec('wg', ['show', 'wg0', 'peers'], { allowFailure: true });
        peers = r.exitCode === 0 ? r.stdout.split('\n').filter(Boolean) : [];
        if (peers.length === NAMES.length - 1) break;
        await sleep(250);
      }
      const others = NAMES.filter((n) => n !== c.name).map(
        (n) => ((api.getNode(n)?.metadata?.annotations ?? {}) as Record<string, string>)[`${ANN}public-key`],
      );
      assert.deepEqual([...peers].sort(), [...others].sort(), `${c.name}: peers of wg0`);
    }
  });

  it('peer changes restarted wg-quick@wg0 through the real systemd D-Bus API', async () => {
    // The first node saw both others arrive after it was up: two restarts of its wg-quick@wg0.
    const a = cs[0]!;
    const daemon = await a.journal(['-u', 'wg-overlay']);
    const restarts = daemon.filter(
      (e) =>
        e.SYSLOG_IDENTIFIER === 'wg-overlay' &&
        /^restarted wg-quick@wg0\.service through systemd D-Bus \(why: apply = restart and \d+ peer change/.test(
          e.MESSAGE,
        ),
    );
    assert.ok(
      restarts.length >= 1,
      'expected "restarted wg-quick@wg0.service through systemd D-Bus (why: apply = restart and N peer change(s)…)" ' +
        `in ${a.name}'s log:\n${daemon.map((e) => `<${e.PRIORITY}> ${e.MESSAGE}`).join('\n')}`,
    );
    assert.ok(restarts.every((e) => e.PRIORITY === 6));
    // systemd's own account of those jobs.
    const unit = (await a.journal(['-u', 'wg-quick@wg0']))
      .filter((e) => e.SYSLOG_IDENTIFIER === 'systemd')
      .map((e) => e.MESSAGE);
    const stopped = unit.filter((m) => /^Stopped wg-quick@wg0\.service/.test(m)).length;
    const finished = unit.filter((m) => /^Finished wg-quick@wg0\.service/.test(m)).length;
    assert.ok(
      stopped >= restarts.length,
      `systemd stopped wg-quick@wg0 ${stopped} times for ${restarts.length} restarts:\n${unit.join('\n')}`,
    );
    assert.equal(finished, stopped + 1, `one start plus one per restart:\n${unit.join('\n')}`);
    // And the daemon kept running all along.
    assert.equal((await a.show('wg-overlay', ['NRestarts'])).NRestarts, '0');
    // Those restarts were asked for by user wg-overlay, not root: polkit said yes (it is asked
    // only for callers that are not root), and each restart brought up a wireguard-go of its own
    // user, wg-overlay-wg, whose socket the daemon reaches.
    assert.equal((await a.exec('ps', ['-o', 'user=', '-C', 'wireguard-go'])).stdout.trim(), 'wg-overlay-wg');
    // With apply = restart no node changes peers live: every change went through a restart.
    for (const c of cs) {
      const log = (await c.journal(['-u', 'wg-overlay']))
        .filter((e) => e.SYSLOG_IDENTIFIER === 'wg-overlay')
        .map((e) => e.MESSAGE);
      const live = log.filter((m) => /^(added|removed|updated) peer /.test(m));
      assert.deepEqual(live, [], `${c.name} changed peers with wg set despite apply = restart:\n${log.join('\n')}`);
    }
  });

  it('the overlay addresses ping each other across the mesh after the restarts', async () => {
    for (const [i, c] of cs.entries()) {
      for (const other of NAMES.filter((n) => n !== c.name)) {
        const r = await net.nodes[i]!.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', overlay(other)], {
          allowFailure: true,
          timeoutMs: 30_000,
        });
        assert.equal(r.exitCode, 0, `${c.name} → ${other} (${overlay(other)}):\n${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /3 received/);
      }
      // Handshakes happened with both peers.
      const hs = (await c.exec('wg', ['show', 'wg0', 'latest-handshakes'])).stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => Number(l.split('\t')[1]));
      assert.equal(hs.filter((t) => t > 0).length, NAMES.length - 1, `${c.name}: handshakes ${hs.join(', ')}`);
    }
  });

  it('wg-quick@wg0 restarted under the running daemon: nothing to the overlay or a PodCIDR leaves in clear; pings resume', async () => {
    const [a, c] = [net.nodes[0]!, cs[0]!];
    // The underlay's gateway: it answers ARP and forwards nothing. Node a's default route points at it.
    const gateway = await TestNode.create({ label: 'gateway' });
    try {
      await net.underlay.attach(gateway);
      await a.exec('ip', ['route', 'add', 'default', 'via', gateway.underlayAddress!]);
      assert.match((await c.exec('nft', ['list', 'table', 'inet', 'wg_overlay'])).stdout, /10\.244\.2\.0\/24/);
      const capture = await Capture.start(await rootPort(a));
      const args = ['-q', '-c', '60', '-i', '0.05', '-W', '1'];
      const pings = [overlay(NAMES[1]), '10.244.2.10', overlay(NAMES[2])].map((dst) =>
        a.exec('ping', [...args, dst], { allowFailure: true, timeoutMs: 60_000 }),
      );
      await sleep(300);
      await c.exec('systemctl', ['restart', 'wg-quick@wg0'], { timeoutMs: 60_000 });
      await Promise.all(pings);
      const { count, lines } = await capture.stopAndCount('net 10.244.0.0/16 or net 100.64.0.0/10');
      console.log(`      (fail closed: wg-quick@wg0 restarted: ${count} of 180 packets in clear)`);
      assert.equal(count, 0, lines.join('\n'));
      const deadline = Date.now() + 30_000;
      let r = await a.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', overlay(NAMES[1])], { allowFailure: true });
      while (!/3 received/.test(r.stdout) && Date.now() < deadline)
        r = await a.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', overlay(NAMES[1])], { allowFailure: true });
      assert.match(r.stdout, /3 received/, `pings after the restart:\n${r.stdout}`);
    } finally {
      await a.exec('ip', ['route', 'del', 'default'], { allowFailure: true });
      await gateway.destroy();
    }
  });
});
