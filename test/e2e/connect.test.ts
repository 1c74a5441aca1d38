/**
 * End-to-end `wg-overlay connect` (issue 19): a workstation on the underlay with an admin
 * kubeconfig joins a mesh of real daemons in one command — its Peer appears with its key, every
 * node adds it, it pings pods on two nodes and a node's overlay address, a node that joins later is
 * reachable without a restart, `--status` and SIGUSR1 show it, SIGTERM takes everything away, and a
 * second start with `--keep` in between resumes the same Peer — printing the figures the README
 * quotes.
 */
import assert from 'node:assert/strict';
import { KILO_PEER_RESOURCE } from '../kube-api/server.js';
import { CLI, type Cluster, waitFor } from '../support/cluster/cluster.js';
import { meshWithWorkstation, tearDown, type Workstation } from '../support/cluster/workstation.js';
import { pingAll } from '../support/namespaces/pods.js';
import { requireTools, type TestProcess } from '../support/process.js';
import { ANNOTATION_PUBLIC_KEY } from '../../service/src/mesh/annotations.js';

const TOOLS = ['wg', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping'];

/** Whether every node of the cluster holds a WireGuard peer with `key` (or none does). */
async function onEveryNode(cluster: Cluster, key: string, present = true): Promise<boolean> {
  for (const n of cluster.nodes.keys()) {
    const has = (await cluster.device(n))?.peers.some((p) => p.publicKey === key) ?? false;
    if (has !== present) return false;
  }
  return true;
}

/** The workstation's own routes (proto 77) and its interfaces. */
async function hostState(ws: Workstation): Promise<{ routes: string[]; links: string[] }> {
  const routes: string[] = [];
  for (const fam of ['-4', '-6']) {
    const r = await ws.host.exec('ip', ['-j', fam, 'route', 'show', 'proto', '77']);
    routes.push(...(JSON.parse(r.stdout || '[]') as Array<{ dst: string }>).map((x) => x.dst));
  }
  const links = (
    JSON.parse((await ws.host.exec('ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>
  ).map((l) => l.ifname);
  return { routes, links };
}

/** Stops a connect with a signal and returns its exit code. */
async function stop(p: TestProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | undefined> {
  await p.stop(signal, 15_000);
  return (await p.exited).exitCode;
}

describe('e2e: wg-overlay connect, a workstation joins a full mesh', function () {
  this.timeout(240_000);
  let cluster: Cluster;
  let ws: Workstation;
  let connect: TestProcess | undefined;

  before(async () => {
    await requireTools(TOOLS);
    ({ cluster, ws } = await meshWithWorkstation({}, { 'node-a': {}, 'node-b': {} }));
  });

  after(() => tearDown(connect, ws, cluster));

  it('one command: its Peer appears with its key, every node adds it, and it pings pods on two nodes and an overlay address', async () => {
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    const t0 = Date.now();
    connect = ws.connect();
    const firstAt = await ws.firstReply(a.podIp);
    const key = await ws.publicKey();
    assert.equal((ws.peer()?.spec as { publicKey?: string }).publicKey, key);
    const [v4, v6] = ws.peerAllowedIPs();
    assert.match(v4 ?? '', /^10\.255\.\d+\.\d+\/32$/, 'an address from the pool');
    assert.match(v6 ?? '', /^fd77:676f::[0-9a-f:]+\/128$/, 'and one of the IPv6 pool (the overlay is dual-stack)');
    await waitFor('every node to have the workstation as a peer', () => onEveryNode(cluster, key), 10_000);
    await pingAll(ws.host, a.podIp, { what: 'a pod on node-a' });
    await pingAll(ws.host, b.podIp, { what: 'a pod on node-b' });
    await pingAll(ws.host, cluster.overlayAddress('node-b')!, { what: "node-b's overlay address" });
    const out = connect.output();
    assert.match(out, /created Peer workstation: allowedIPs 10\.255\./);
    assert.match(out, /added peer node-a \([\d.]+:51820, allowed-ips [^)]*10\.244\.1\.0\/24/);
    assert.match(
      out,
      /connected as Peer workstation \(10\.255\.[\d.]+\/32, fd77:676f::[0-9a-f:]+\/128\) on wgo0: 2 peers/,
    );
    for (const n of ['node-a', 'node-b'])
      assert.match(cluster.must(n).daemon!.output(), /added peer workstation \(no endpoint, allowed-ips 10\.255\./);
    const own = /connected as Peer workstation .* ([\d.]+ m?s) after the start/.exec(out)?.[1];
    console.log(
      `      (connect: first reply from a pod ${((firstAt - t0) / 1000).toFixed(1)} s after the command started; ` +
        `connect itself: connected ${own ?? '?'} after its start)`,
    );
  });

  it('`connect --status` and SIGUSR1 show the connection: interface, address, a peer per node with its handshake and routes', async () => {
    const r = await ws.host.exec('node', [CLI, 'connect', '--status', '--name', 'workstation']);
    assert.match(r.stdout, /^wg-overlay connect as Peer workstation: connect running \(pid \d+\); last run ok/);
    assert.match(
      r.stdout,
      /\ninterface wgo0: up, address 10\.255\.[\d.]+\/32, fd77:676f::[0-9a-f:]+\/128, listen port \d+\n/,
    );
    assert.match(r.stdout, /\n {2}node-a +node +100\.64\.\d+\.\d+ +[\d.]+:51820 +\d+s ago +.* ok \(3\)\n/);
    assert.match(r.stdout, /\n {2}node-b +node /);
    const json = JSON.parse((await ws.host.exec('node', [CLI, 'connect', '--status', '--json'])).stdout) as {
      peers: Array<{ name: string; routesPresent: boolean; handshakeAgeSeconds: number | null }>;
    };
    assert.deepEqual(
      json.peers.map((p) => [p.name, p.routesPresent, p.handshakeAgeSeconds !== null]),
      [
        ['node-a', true, true],
        ['node-b', true, true],
      ],
    );
    const mark = connect!.output().length;
    await ws.host.exec('kill', ['-USR1', String(connect!.pid)]);
    await waitFor('the SIGUSR1 summary', () => /interface wgo0: up/.test(connect!.output().slice(mark)), 5_000);
  });

  it('a node that joins afterwards is reachable without restarting connect', async () => {
    const c = await cluster.addNode('node-c', { start: false });
    assert.equal(c.podIp, '10.244.3.10');
    const started = Date.now();
    await cluster.startDaemon('node-c');
    await waitFor('node-c to publish its key', () => cluster.annotations('node-c')[ANNOTATION_PUBLIC_KEY], 15_000, 20);
    const published = Date.now();
    const at = await ws.firstReply(c.podIp);
    assert.match(connect!.output(), /added peer node-c \(/);
    assert.match(connect!.output(), /route 10\.244\.3\.0\/24 dev wgo0 proto 77/);
    console.log(
      `      (connect: a new node's pod answered ${((at - started) / 1000).toFixed(1)} s after its daemon started, ` +
        `${((at - published) / 1000).toFixed(1)} s after it published its key)`,
    );
    await pingAll(ws.host, cluster.overlayAddress('node-c')!, { what: "node-c's overlay address" });
  });

  it('SIGTERM: exit 0, and the Peer, the interface, its routes and the peer on every node are gone', async () => {
    const key = await ws.publicKey();
    assert.equal(await stop(connect!), 0, connect!.output());
    assert.match(connect!.output(), /deleted Peer workstation/);
    assert.equal(ws.peer(), undefined);
    const state = await hostState(ws);
    assert.ok(!state.links.includes('wgo0'), `no wgo0: ${state.links.join(' ')}`);
    assert.deepEqual(state.routes, []);
    await waitFor('the nodes to drop the workstation', () => onEveryNode(cluster, key, false), 10_000);
    await cluster.waitForMesh();
    connect = undefined;
  });

  it('--keep leaves everything up; a second start resumes the same Peer and address, without duplicates', async () => {
    const key = await ws.publicKey();
    connect = ws.connect(['--keep']);
    await ws.firstReply(cluster.must('node-b').podIp);
    const uid = ws.peer()?.metadata?.uid;
    const allowed = ws.peerAllowedIPs();
    assert.equal(await stop(connect, 'SIGINT'), 0);
    assert.match(connect.output(), /Peer workstation, wgo0 and its routes are kept \(--keep\)/);
    assert.equal(ws.peer()?.metadata?.uid, uid, 'the Peer stays');
    assert.ok((await hostState(ws)).links.includes('wgo0'));
    await pingAll(ws.host, cluster.must('node-a').podIp, { what: 'the mesh without connect running' });
    connect = ws.connect();
    await connect.waitForOutput(/connected as Peer workstation/, 20_000);
    assert.match(connect.output(), /took over Peer workstation \(same public key\)/);
    assert.doesNotMatch(connect.output(), /created Peer|created wgo0|recreated/);
    assert.equal(ws.peer()?.metadata?.uid, uid, 'the same Peer object');
    assert.deepEqual(ws.peerAllowedIPs(), allowed, 'the same addresses');
    const peers = cluster.api.resource('peers', KILO_PEER_RESOURCE.group).list();
    assert.equal(peers.length, 1);
    for (const n of cluster.nodes.keys())
      assert.equal((await cluster.device(n))!.peers.filter((p) => p.publicKey === key).length, 1, n);
    await pingAll(ws.host, cluster.must('node-c').podIp);
    assert.equal(await stop(connect), 0);
    assert.equal(ws.peer(), undefined);
    connect = undefined;
  });
});
