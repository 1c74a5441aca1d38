/**
 * End-to-end `wg-overlay connect` beyond a plain mesh: on a dual-stack underlay (pods of both
 * families, both overlay addresses, and endpoint failover to a node's IPv6 address when its IPv4
 * one goes dark, decided as the nodes decide it), in location mode (one peer per location leader,
 * members reached through their leader), and a second site's gateway that advertises its LAN, so
 * that hosts on the LAN and pods reach each other with no NAT and no route on the nodes by hand.
 */
import assert from 'node:assert/strict';
import { KILO_PEER_RESOURCE } from '../kube-api/server.js';
import { type Cluster, waitFor, type NodeSpec } from '../support/cluster/cluster.js';
import { LocationCluster, TWO_LOCATIONS } from '../support/cluster/locations.js';
import { meshWithWorkstation, tearDown, Workstation } from '../support/cluster/workstation.js';
import { TestNode } from '../support/namespaces/netns.js';
import { pingAll } from '../support/namespaces/pods.js';
import { Underlay } from '../support/namespaces/underlay.js';
import { requireTools, type TestProcess } from '../support/process.js';
import { ANNOTATION_OVERLAY_ADDRESS6 } from '../../service/src/mesh/annotations.js';

const TOOLS = ['wg', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping', 'nft'];

/** The public keys of the peers on the workstation's wgo0, by endpoint. */
async function wgo0(ws: Workstation): Promise<Array<{ key: string; endpoint: string | undefined }>> {
  const r = await ws.host.exec('wg', ['show', 'wgo0', 'dump']);
  return r.stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'))
    .map((f) => ({ key: f[0]!, endpoint: f[2] === '(none)' ? undefined : f[2] }));
}

describe('e2e: wg-overlay connect on a dual-stack underlay', function () {
  this.timeout(240_000);
  let cluster: Cluster;
  let ws: Workstation;
  let connect: TestProcess | undefined;

  before(async () => {
    await requireTools(TOOLS);
    const pods = (i: number): NodeSpec => ({ podCIDRs: [`10.244.${i}.0/24`, `fd10:244:${i}::/64`] });
    ({ cluster, ws } = await meshWithWorkstation(
      { underlay: { ipv6: true } },
      { 'node-a': pods(1), 'node-b': pods(2) },
    ));
  });

  after(() => tearDown(connect, ws, cluster));

  it('pods of both families and both overlay addresses answer; the nodes route its IPv6 address back', async () => {
    connect = ws.connect();
    await connect.waitForOutput(
      /connected as Peer workstation \(10\.255\.[\d.]+\/32, fd77:676f::[0-9a-f:]+\/128\)/,
      30_000,
    );
    for (const n of ['node-a', 'node-b']) {
      const node = cluster.must(n);
      await pingAll(ws.host, node.podIp, { what: `the IPv4 pod on ${n}` });
      await pingAll(ws.host, node.podIp6!, { what: `the IPv6 pod on ${n}` });
      await pingAll(ws.host, cluster.annotations(n)[ANNOTATION_OVERLAY_ADDRESS6]!, {
        what: `${n}'s IPv6 overlay address`,
      });
    }
    const v6 = ws.peerAllowedIPs().find((c) => c.includes(':'))!;
    for (const n of ['node-a', 'node-b'])
      assert.ok((await cluster.routes(n)).includes(v6.replace(/\/128$/, '')), `${n} routes ${v6} into wg0`);
  });

  it("failover as on the nodes: node-a's IPv4 address goes dark for the workstation → it dials node-a's IPv6 address", async () => {
    const a = cluster.must('node-a');
    const v4 = `${a.address}:51820`;
    const v6 = `[${a.address6!}]:51820`;
    const keyA = cluster.publicKey('node-a')!;
    assert.equal((await wgo0(ws)).find((p) => p.key === keyA)?.endpoint, v4, "node-a's IPv4 address first");
    const ping = ws.host.spawn('ping', ['-D', '-i', '0.2', '-W', '1', a.podIp]);
    await ping.waitForOutput(/bytes from/, 5_000);
    await ws.host.exec('nft', ['-f', '-'], {
      input: `table ip wgo_test {\n chain input {\n  type filter hook input priority filter;\n  ip saddr ${a.address} drop\n }\n}\n`,
    });
    const t0 = Date.now();
    await waitFor(
      "the workstation to dial node-a's IPv6 address",
      async () => (await wgo0(ws)).find((p) => p.key === keyA)?.endpoint === v6,
      45_000,
      200,
    );
    const mark = ping.output().length;
    await waitFor('replies again', () => /bytes from/.test(ping.output().slice(mark)), 10_000);
    console.log(
      `      (connect: failover to node-a's IPv6 address after ${((Date.now() - t0) / 1000).toFixed(1)} s; endpoint_failover = 15 s)`,
    );
    assert.match(connect!.output(), new RegExp(`endpoint of Node node-a: ${v4.replace(/\./g, '\\.')} → \\[`));
    await ping.stop('SIGINT', 5_000);
    await ws.host.exec('nft', ['delete', 'table', 'ip', 'wgo_test']);
    assert.equal(await connect!.stop('SIGTERM', 15_000).then((e) => e.exitCode), 0);
    connect = undefined;
  });
});

describe('e2e: wg-overlay connect in location mode (through the leaders)', function () {
  this.timeout(240_000);
  let lc: LocationCluster;
  let ws: Workstation;
  let connect: TestProcess | undefined;

  before(async () => {
    await requireTools(TOOLS);
    lc = await LocationCluster.create(TWO_LOCATIONS, { granularity: 'location', start: false });
    lc.cluster.api.registerResource(KILO_PEER_RESOURCE);
    await lc.start();
    await lc.waitForTopology('location', { east: 'east-1', west: 'west-1' });
    ws = await Workstation.create(lc.cluster, {
      config: `[mesh]\ngranularity = location\nreachable = ${lc.cluster.underlay.subnet!}`,
    });
  });

  after(() => tearDown(connect, ws, lc));

  it('one peer per location leader, at its ExternalIP; every member of both locations answers through it', async () => {
    const c = lc.cluster;
    connect = ws.connect();
    await connect.waitForOutput(/connected as Peer workstation .* 2 peers/, 30_000);
    const peers = await wgo0(ws);
    assert.deepEqual(
      peers.map((p) => p.key).sort(),
      [c.publicKey('east-1'), c.publicKey('west-1')].sort(),
      'a peer per leader, none for the other members',
    );
    assert.equal(peers.find((p) => p.key === c.publicKey('west-1'))?.endpoint, lc.endpointOf('west-1'));
    for (const n of ['east-1', 'east-3', 'west-2']) {
      await pingAll(ws.host, c.must(n).podIp, { what: `the pod on ${n}` });
      await pingAll(ws.host, c.overlayAddress(n)!, { what: `${n}'s overlay address` });
    }
    // Only the leaders hold the Peer; their members route to it through them.
    const key = await ws.publicKey();
    for (const n of c.nodes.keys()) {
      const has = (await c.device(n))!.peers.some((p) => p.publicKey === key);
      assert.equal(has, n === 'east-1' || n === 'west-1', n);
    }
    assert.match(connect.output(), /added peer west-1 \([\d.]+:51820, allowed-ips [^)]*10\.244\.\d+\.0\/24/);
    assert.equal(await connect.stop('SIGTERM', 15_000).then((e) => e.exitCode), 0);
    assert.equal(ws.peer(), undefined);
    connect = undefined;
  });
});

describe("e2e: wg-overlay connect links a second site: its gateway advertises the site's LAN", function () {
  this.timeout(240_000);
  const RANGES = '[peers]\nallowed_ranges = 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7, 192.0.2.0/24';
  let cluster: Cluster;
  let lan: Underlay;
  let gateway: Workstation;
  let host: TestNode;
  let connect: TestProcess | undefined;

  before(async () => {
    await requireTools(TOOLS);
    ({ cluster, ws: gateway } = await meshWithWorkstation(
      { baseConfig: RANGES },
      { 'node-a': {}, 'node-b': {} },
      { name: 'site-b', config: RANGES },
    ));
    // The site: a LAN (192.0.2.0/24) with a host on it, and its gateway on both the LAN and the underlay.
    lan = await Underlay.create({ subnet: '192.0.2.0/24' });
    await lan.attach(gateway.host, { ifname: 'eth1' });
    await gateway.host.sysctl('net.ipv4.ip_forward', '1');
    host = await TestNode.create({ label: 'site-b/host' });
    const gw = await lan.attach(host).then(() => gateway.host.exec('ip', ['-j', '-4', 'addr', 'show', 'dev', 'eth1']));
    const gwAddress = (JSON.parse(gw.stdout) as Array<{ addr_info: Array<{ local: string }> }>)[0]!.addr_info[0]!.local;
    // The site's router sends the cluster's ranges to the gateway (here: its default route).
    await host.exec('ip', ['route', 'add', 'default', 'via', gwAddress]);
  });

  after(() => tearDown(connect, host, gateway, lan, cluster));

  it('hosts on the LAN reach pods on every node, and pods reach them, with routes only from connect', async () => {
    connect = gateway.connect(['--advertise-routes', '192.0.2.0/24']);
    await connect.waitForOutput(/connected as Peer site-b/, 30_000);
    assert.deepEqual(
      gateway.peerAllowedIPs().filter((c) => !/^10\.255\.|^fd77:/.test(c)),
      ['192.0.2.0/24'],
      'the Peer carries the LAN',
    );
    for (const n of ['node-a', 'node-b']) {
      await waitFor(`${n} to route the LAN`, async () => (await cluster.routes(n)).includes('192.0.2.0/24'), 10_000);
      await pingAll(host, cluster.must(n).podIp, { what: `from the LAN to the pod on ${n}` });
      await pingAll(cluster.must(n).pod!, host.underlayAddress!, { what: `from the pod on ${n} to the LAN host` });
    }
    assert.equal(await connect.stop('SIGTERM', 15_000).then((e) => e.exitCode), 0);
    for (const n of ['node-a', 'node-b'])
      await waitFor(`${n} to drop the LAN`, async () => !(await cluster.routes(n)).includes('192.0.2.0/24'), 10_000);
    connect = undefined;
  });
});
