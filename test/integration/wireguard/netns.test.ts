/**
 * The test network helpers themselves (test/support/netns.ts, underlay.ts, pods.ts and
 * process.ts): nodes are isolated from the host and from each other (network, /run, /etc), the
 * underlay connects them, pods route through their node, processes inside nodes are managed,
 * and cleanup (including of a killed run's leftovers) removes every namespace, link and temp dir.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { requireTools, run, CommandError } from '../../support/process.js';
import { TestNode, cleanupStale, netnsPids } from '../../support/namespaces/netns.js';
import { TestNetwork, Underlay, findFreeSubnet } from '../../support/namespaces/underlay.js';
import { TestPod, addPodBridge } from '../../support/namespaces/pods.js';

/** Names of the network namespaces that exist now. */
async function netnsNames(): Promise<string[]> {
  return (await run('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/** Names of the links in the root namespace. */
async function rootLinks(): Promise<string[]> {
  return (await run('ip', ['-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter(Boolean);
}

describe('integration: test network helpers', function () {
  this.timeout(60_000);

  before(async () => {
    await requireTools(['ip', 'unshare', 'nsenter', 'mount', 'ping', 'sysctl']);
  });

  describe('two nodes on an underlay', () => {
    let net: TestNetwork;
    before(async () => {
      const t0 = Date.now();
      net = await TestNetwork.create({ nodes: 2 });
      console.log(`      (2 nodes + underlay set up in ${Date.now() - t0} ms)`);
    });
    after(async () => {
      await net?.destroy();
    });

    it('gives the nodes .11 and .12 on eth0 and they ping each other', async () => {
      const [a, b] = net.nodes as [TestNode, TestNode];
      assert.equal(a.underlayAddress, '192.0.2.11');
      assert.equal(b.underlayAddress, '192.0.2.12');
      const addr = await a.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      assert.match(addr.stdout, /inet 192\.0\.2\.11\/24/);
      const mtu = await a.exec('cat', ['/sys/class/net/eth0/mtu']);
      assert.equal(mtu.stdout.trim(), '1500');
      await a.exec('ping', ['-c', '1', '-W', '2', '192.0.2.12']);
      await b.exec('ping', ['-c', '1', '-W', '2', '192.0.2.11']);
      assert.equal(net.underlay.hostAddress, undefined, 'no host address by default');
      const hostAddrs = await run('ip', ['-o', 'addr', 'show', 'dev', net.underlay.bridge]);
      assert.doesNotMatch(hostAddrs.stdout, /inet /);
    });

    it('isolates the network: a node sees only lo and eth0', async () => {
      const links = await net.nodes[0]!.exec('ip', ['-o', 'link', 'show']);
      const names = links.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]);
      assert.deepEqual(names.sort(), ['eth0', 'lo']);
    });

    it('gives each node a private /run and its own /etc overlay', async () => {
      const [a, b] = net.nodes as [TestNode, TestNode];
      await a.exec('sh', [
        '-c',
        'mkdir -p /run/wireguard /etc/wireguard && echo a > /run/wireguard/mark && echo a > /etc/wireguard/mark',
      ]);
      await b.writeFile('/etc/wireguard/mark', 'b\n', 0o600);
      assert.equal((await a.exec('cat', ['/etc/wireguard/mark'])).stdout, 'a\n');
      assert.equal((await b.exec('cat', ['/etc/wireguard/mark'])).stdout, 'b\n');
      assert.equal(await a.readFile('/run/wireguard/mark'), 'a\n');
      await assert.rejects(b.exec('cat', ['/run/wireguard/mark']), CommandError);
      assert.equal(existsSync('/run/wireguard/mark'), false, 'host /run untouched');
      assert.equal(existsSync('/etc/wireguard/mark'), false, 'host /etc untouched');
      assert.equal((await stat(b.path('/etc/wireguard/mark'))).mode & 0o777, 0o600);
      // The rest of /etc is the host's.
      assert.equal(await a.readFile('/etc/hostname'), await readFile('/etc/hostname', 'utf8'));
    });

    it('runs long-lived processes inside a node and collects their output', async () => {
      const a = net.nodes[0]!;
      const p = a.spawn('sh', ['-c', 'echo started; ip -o -4 addr show dev eth0; echo to-stderr >&2; exec sleep 30']);
      await p.waitForOutput('to-stderr');
      assert.match(p.output(), /started[\s\S]*192\.0\.2\.11/);
      assert.equal(p.running, true);
      assert.ok((await netnsPids(a.netns)).includes(p.pid), 'the pid is the command itself, inside the netns');
      const exit = await p.stop();
      assert.equal(exit.signal, 'SIGTERM');
      assert.equal(p.running, false);
    });

    it('reports a failing command with its stderr', async () => {
      await assert.rejects(net.nodes[1]!.exec('ip', ['link', 'set', 'nosuchdev', 'up']), (err: Error) => {
        assert.ok(err instanceof CommandError);
        assert.match(
          err.message,
          /^\[node-b\] ip link set nosuchdev up: exited with code 1\n--- stderr ---\n.*nosuchdev/,
        );
        return true;
      });
    });

    it('connects pods (behind a cni0 bridge or a plain veth) through their node', async () => {
      const [a, b] = net.nodes as [TestNode, TestNode];
      await addPodBridge(a, { address: '10.244.1.1/24' });
      const pa1 = await TestPod.create(a, { address: '10.244.1.2/24', gateway: '10.244.1.1', bridge: 'cni0' });
      const pa2 = await TestPod.create(a, { address: '10.244.1.3/24', gateway: '10.244.1.1', bridge: 'cni0' });
      const pb = await TestPod.create(b, { address: '10.244.2.2/24', gateway: '10.244.2.1' });
      assert.equal((await a.exec('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1');
      await pa1.exec('ping', ['-c', '1', '-W', '2', '10.244.1.3']);
      await pa1.exec('ping', ['-c', '1', '-W', '2', '10.244.1.1']);
      await pb.exec('ping', ['-c', '1', '-W', '2', '10.244.2.1']);
      // Node-to-node routes for pod CIDRs over the underlay: pod to pod across nodes.
      await a.exec('ip', ['route', 'add', '10.244.2.0/24', 'via', '192.0.2.12']);
      await b.exec('ip', ['route', 'add', '10.244.1.0/24', 'via', '192.0.2.11']);
      await pa2.exec('ping', ['-c', '1', '-W', '2', '10.244.2.2']);
      await pb.destroy();
      assert.equal((await netnsNames()).includes(pb.netns), false);
      assert.equal(
        (await b.exec('ip', ['-o', 'link', 'show', 'dev', pb.hostVeth], { allowFailure: true })).failed,
        true,
        'veth gone with the pod',
      );
    });
  });

  it('gives the bridge a host address only on a subnet the root namespace does not use', async () => {
    const subnet = await findFreeSubnet();
    assert.match(subnet, /^198\.1[89]\.\d+\.0\/24$/);
    const net = await TestNetwork.create({ nodes: 1, subnet, hostAddress: true });
    try {
      const prefix = subnet.replace(/\.0\/24$/, '');
      assert.equal(net.underlay.hostAddress, `${prefix}.1`);
      await net.nodes[0]!.exec('ping', ['-c', '1', '-W', '2', `${prefix}.1`]);
      await run('ping', ['-c', '1', '-W', '2', `${prefix}.11`]);
      await assert.rejects(Underlay.create({ subnet, hostAddress: true }), (err: Error) => {
        assert.match(
          err.message,
          new RegExp(
            `underlay subnet ${subnet.replace(/\./g, '\\.')} cannot get a host address.*${net.underlay.bridge}`,
          ),
        );
        return true;
      });
      assert.notEqual(await findFreeSubnet(), subnet);
    } finally {
      await net.destroy();
    }
  });

  it('destroy removes namespaces, links, dirs and processes (also processes that daemonized)', async () => {
    const net = await TestNetwork.create({ nodes: 1, subnet: '198.51.100.0/24' });
    const node = net.nodes[0]!;
    assert.equal(node.underlayAddress, '198.51.100.11');
    const pod = await TestPod.create(node, { address: '10.244.7.2/24', gateway: '10.244.7.1' });
    // A daemonizing child (like wireguard-go) is no child of ours: destroy must still kill it.
    await node.exec('sh', ['-c', 'setsid sleep 300 >/dev/null 2>&1 < /dev/null &']);
    const pids = await netnsPids(node.netns);
    assert.ok(pids.length >= 2, `holder and daemon: ${pids.join(' ')}`);
    await net.destroy();
    const ns = await netnsNames();
    assert.equal(ns.includes(node.netns), false);
    assert.equal(ns.includes(pod.netns), false);
    assert.equal((await rootLinks()).includes(net.underlay.bridge), false);
    assert.equal(existsSync(node.dir), false);
    for (const pid of pids)
      assert.equal(
        existsSync(`/proc/${pid}`) && !(await readFile(`/proc/${pid}/stat`, 'utf8')).includes(') Z '),
        false,
        `pid ${pid} gone`,
      );
    await net.destroy(); // idempotent
  });

  it('cleanupStale removes the leftovers of a run that was killed, and nothing of live runs', async () => {
    // Simulate a killed run: a child process creates a node and an underlay, then is SIGKILLed.
    const script = `
      import { TestNetwork } from ${JSON.stringify(new URL('../../support/namespaces/underlay.js', import.meta.url).href)};
      const net = await TestNetwork.create({ nodes: 1, subnet: '203.0.113.0/24' });
      await net.nodes[0].exec('sh', ['-c', 'setsid sleep 300 >/dev/null 2>&1 < /dev/null &']);
      console.log(JSON.stringify({ ns: net.nodes[0].netns, bridge: net.underlay.bridge, dir: net.nodes[0].dir }));
      setInterval(() => {}, 1000);
    `;
    const { spawnProcess } = await import('../../support/process.js');
    const child = spawnProcess(process.execPath, ['--input-type=module', '-e', script]);
    const m = await child.waitForOutput(/\{"ns".*\}/, 20_000);
    const left = JSON.parse(m[0]) as { ns: string; bridge: string; dir: string };
    await child.stop('SIGKILL');
    assert.ok((await netnsNames()).includes(left.ns), 'leftover namespace exists before cleanup');
    assert.ok((await rootLinks()).includes(left.bridge), 'leftover bridge exists before cleanup');
    assert.ok(left.dir.startsWith(tmpdir()));

    const mine = await TestNode.create({ label: 'live' });
    try {
      const removed = await cleanupStale(true);
      // (A concurrent run may have cleaned them up first: then they are gone all the same.)
      assert.ok(
        removed.every((r) => /^(netns|link|dir) /.test(r)),
        removed.join(', '),
      );
      assert.equal((await netnsNames()).includes(left.ns), false);
      assert.equal((await rootLinks()).includes(left.bridge), false);
      assert.equal(existsSync(left.dir), false);
      assert.ok((await netnsNames()).includes(mine.netns), 'a live node of this process survives');
    } finally {
      await mine.destroy();
    }
  });
});
