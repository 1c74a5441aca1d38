/**
 * End-to-end fail closed (issue 18): real daemons on a dual-stack underlay where every node has a
 * default route (to a gateway namespace that takes packets and forwards nothing), a pod pinging
 * another node's pod and the host pinging that node's overlay addresses, both families, while the
 * tunnel goes away: wg0 deleted under the running daemon, the daemon stopped and wg0 deleted, the
 * peer's Node deleted. tcpdump on the node's port of the underlay bridge counts the packets that
 * carry pod or overlay addresses in clear: none, each time; afterwards pods reach each other again.
 * The figures are printed (README "Fail closed").
 */
import assert from 'node:assert/strict';
import { Cluster, CLI, waitFor, type ClusterNode } from '../support/cluster/cluster.js';
import { LocationCluster, TWO_LOCATIONS } from '../support/cluster/locations.js';
import { Capture, rootPort } from '../support/namespaces/capture.js';
import { TestNode } from '../support/namespaces/netns.js';
import { pingAll } from '../support/namespaces/pods.js';
import { requireTools, sleep } from '../support/process.js';
import { ANNOTATION_OVERLAY_ADDRESS6 } from '../../service/src/mesh/annotations.js';

const TOOLS = ['wg', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping', 'nft', 'tcpdump'];
const PINGS = 40;

/** Dual-stack PodCIDRs for the node numbered `i`. */
const podCIDRs = (i: number): string[] => [`10.244.${i}.0/24`, `fd10:244:${i}::/64`];

/** A tcpdump filter for packets carrying pod or overlay addresses (both families) in clear. */
function clearFilter(overlay6: string): string {
  return `net 10.244.0.0/16 or net 100.64.0.0/10 or net fd10:244::/32 or net ${overlay6}`;
}

/** The IPv6 overlay (a /48) of the cluster, from an address a node published. */
function overlay6Of(cluster: Cluster, name: string): string {
  const a = cluster.annotations(name)[ANNOTATION_OVERLAY_ADDRESS6]!;
  return `${a.split(':').slice(0, 3).join(':')}::/48`;
}

/**
 * Pings from `from` to `to` (pod to pod and host to overlay address, both families, `PINGS` each)
 * while `disrupt` runs, and counts what left `from` in clear on its underlay port.
 */
async function clearDuring(
  cluster: Cluster,
  from: ClusterNode,
  to: ClusterNode,
  disrupt: () => Promise<void>,
): Promise<{ sent: number; clear: number; lines: string[] }> {
  const capture = await Capture.start(await rootPort(from.host));
  const args = ['-q', '-c', String(PINGS), '-i', '0.05', '-W', '1'];
  const overlay = cluster.overlayAddress(to.name)!;
  const overlay6 = cluster.annotations(to.name)[ANNOTATION_OVERLAY_ADDRESS6]!;
  const filter = clearFilter(overlay6Of(cluster, to.name));
  const pings = [
    from.pod!.exec('ping', [...args, to.podIp], { allowFailure: true }),
    from.pod!.exec('ping', [...args, to.podIp6!], { allowFailure: true }),
    from.host.exec('ping', [...args, overlay], { allowFailure: true }),
    from.host.exec('ping', [...args, overlay6], { allowFailure: true }),
  ];
  await sleep(200);
  await disrupt();
  await Promise.all(pings);
  const { count, lines } = await capture.stopAndCount(filter);
  return { sent: 4 * PINGS, clear: count, lines };
}

/** Pods and hosts of `a` and `b` reach each other again over both families. */
async function reachAgain(cluster: Cluster, a: ClusterNode, b: ClusterNode): Promise<void> {
  await cluster.waitForMesh(undefined, 30_000);
  await waitFor(
    `${a.name}'s pod to reach ${b.name}'s pod again`,
    async () => (await a.pod!.exec('ping', ['-c', '1', '-W', '1', b.podIp], { allowFailure: true })).exitCode === 0,
    30_000,
    200,
  );
  await pingAll(a.pod!, b.podIp, { what: `pod ${a.name} → pod ${b.name}` });
  await pingAll(a.pod!, b.podIp6!, { what: `pod ${a.name} → pod ${b.name} (IPv6)` });
  await pingAll(a.host, cluster.overlayAddress(b.name)!, { what: `${a.name} → overlay address of ${b.name}` });
}

/** The daemon's own table on a node, as `nft list table` shows it. */
async function table(node: ClusterNode): Promise<string> {
  return (await node.host.exec('nft', ['list', 'table', 'inet', 'wg_overlay'], { allowFailure: true })).stdout;
}

const figures: string[] = [];
after(() => {
  if (figures.length) console.log(`fail-closed figures:\n${figures.map((f) => `  ${f}`).join('\n')}`);
});

describe('e2e: fail closed', function () {
  this.timeout(240_000);
  let cluster: Cluster;
  let gateway: TestNode;
  const names = ['node-a', 'node-b', 'node-c'];
  const node = (n: string): ClusterNode => cluster.must(n);

  before(async () => {
    await requireTools(TOOLS);
    cluster = await Cluster.create({ underlay: { ipv6: true } });
    // The underlay's gateway: it answers ARP and neighbour discovery and forwards nothing.
    gateway = await TestNode.create({ label: 'gateway' });
    await cluster.underlay.attach(gateway);
    const gw = [gateway.underlayAddress!, gateway.underlayAddress6!];
    await Promise.all(names.map((n, i) => cluster.addNode(n, { podCIDRs: podCIDRs(i + 1), gateways: gw })));
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
    await gateway?.destroy();
  });

  it("the rule set is in place: the other nodes' PodCIDRs and both overlays only through wg0; status shows it", async () => {
    const t = await table(node('node-a'));
    for (const range of [
      '10.244.2.0/24',
      '10.244.3.0/24',
      'fd10:244:2::/64',
      '100.64.0.0/10',
      overlay6Of(cluster, 'node-b'),
    ])
      assert.ok(t.includes(range), `${range} in\n${t}`);
    assert.match(t, /oifname \{ "lo", "wg0" \} return/);
    const status = await node('node-a').host.exec('node', [
      CLI,
      'status',
      '--config',
      '/etc/wg-overlay/wg-overlay.conf',
    ]);
    assert.match(status.stdout, /fail closed: on/i);
    assert.match(status.stdout, /10\.244\.2\.0\/24/);
  });

  it('wg0 deleted under the running daemon: nothing in clear on the underlay, then the pods reach each other again', async () => {
    const [a, b] = [node('node-a'), node('node-b')];
    const r = await clearDuring(cluster, a, b, async () => {
      await a.host.exec('ip', ['link', 'del', 'wg0']);
    });
    figures.push(`wg0 deleted under the running daemon: ${r.clear} of ${r.sent} packets in clear`);
    assert.equal(r.clear, 0, r.lines.join('\n'));
    await reachAgain(cluster, a, b);
  });

  it('the daemon stopped (SIGTERM) and wg0 deleted: nothing in clear; the rule set outlives both', async () => {
    const [a, b] = [node('node-a'), node('node-b')];
    await cluster.stopDaemon('node-a');
    const r = await clearDuring(cluster, a, b, async () => {
      await a.host.exec('ip', ['link', 'del', 'wg0']);
    });
    figures.push(`daemon stopped with SIGTERM, then wg0 deleted: ${r.clear} of ${r.sent} packets in clear`);
    assert.equal(r.clear, 0, r.lines.join('\n'));
    assert.match(await table(a), /10\.244\.2\.0\/24/);
    await cluster.startDaemon('node-a');
    await reachAgain(cluster, a, b);
  });

  it("a peer's Node deleted (its routes go): its ranges stay blocked; back, it is reached again", async () => {
    const [a, b] = [node('node-a'), node('node-b')];
    const r = await clearDuring(cluster, a, b, async () => {
      cluster.api.deleteNode('node-b');
      await waitFor(
        'node-a to drop its routes to node-b',
        async () => !(await cluster.routes('node-a')).includes('10.244.2.0/24'),
      );
    });
    figures.push(`another node's Node deleted: ${r.clear} of ${r.sent} packets in clear`);
    assert.equal(r.clear, 0, r.lines.join('\n'));
    assert.match(
      await table(a),
      /set kept4 \{[^}]*10\.244\.2\.0\/24 counter packets [1-9]\d* bytes \d+ comment "node-b"/,
    );
    // One journal line names the range when drops start (the counters are read every 10 s).
    await a.daemon!.waitForOutput(/fail closed: dropped \d+ packet\(s\) to [^\n]*10\.244\.2\.0\/24/, 15_000);
    cluster.registerNode(b);
    await reachAgain(cluster, a, b);
  });

  it('control: fail_closed = off removes the table, and the same stop and delete leaks in clear; on again, it is back', async () => {
    const [a, b] = [node('node-a'), node('node-b')];
    await cluster.writeConfig('node-a', '[wireguard]\nfail_closed = off');
    await waitFor('node-a to remove its table', async () => (await table(a)) === '', 20_000, 200);
    await cluster.stopDaemon('node-a');
    const r = await clearDuring(cluster, a, b, async () => {
      await a.host.exec('ip', ['link', 'del', 'wg0']);
    });
    figures.push(
      `without the rule set (fail_closed = off), daemon stopped, wg0 deleted: ${r.clear} of ${r.sent} packets in clear`,
    );
    assert.ok(r.clear > 0, 'the capture sees clear packets when nothing blocks them');
    await cluster.writeConfig('node-a', '[wireguard]\nfail_closed = on');
    await cluster.startDaemon('node-a');
    await waitFor('node-a to load its table again', async () => /10\.244\.2\.0\/24/.test(await table(a)), 20_000, 200);
    await reachAgain(cluster, a, b);
  });
});

describe('e2e: fail closed across locations', function () {
  this.timeout(240_000);
  let lc: LocationCluster;
  let gateway: TestNode;
  const node = (n: string): ClusterNode => lc.cluster.must(n);

  before(async () => {
    await requireTools(TOOLS);
    lc = await LocationCluster.create(TWO_LOCATIONS, { granularity: 'location' });
    await lc.waitForTopology('location', { east: 'east-1', west: 'west-1' }, { timeoutMs: 60_000 });
    // The public network's gateway (the shared underlay): the leaders' default route.
    gateway = await TestNode.create({ label: 'gateway' });
    await lc.cluster.underlay.attach(gateway);
    for (const leader of ['east-1', 'west-1'])
      await node(leader).host.exec('ip', ['route', 'add', 'default', 'via', gateway.underlayAddress!]);
  });

  after(async () => {
    await lc?.destroy();
    await gateway?.destroy();
  });

  /** Pings west-2's pod from east-3's pod (through east-1, the tunnel, west-1) while `disrupt` runs; counts clear packets on east-1's public port. */
  async function clearAcross(disrupt: () => Promise<void>): Promise<{ sent: number; clear: number; lines: string[] }> {
    const [from, to, leader] = [node('east-3'), node('west-2'), node('east-1')];
    const capture = await Capture.start(await rootPort(leader.host, 'eth1'));
    const args = ['-q', '-c', String(2 * PINGS), '-i', '0.05', '-W', '1'];
    const ping = from.pod!.exec('ping', [...args, to.podIp], { allowFailure: true });
    await sleep(200);
    await disrupt();
    await ping;
    const { count, lines } = await capture.stopAndCount('net 10.244.0.0/16 or net 100.64.0.0/10');
    return { sent: 2 * PINGS, clear: count, lines };
  }

  /** east-3's pod reaches west-2's pod again. */
  async function reachAcross(): Promise<void> {
    await lc.waitForTopology('location', { east: 'east-1', west: 'west-1' }, { timeoutMs: 60_000 });
    await waitFor(
      "east-3's pod to reach west-2's pod again",
      async () =>
        (await node('east-3').pod!.exec('ping', ['-c', '1', '-W', '1', node('west-2').podIp], { allowFailure: true }))
          .exitCode === 0,
      30_000,
      200,
    );
    await pingAll(node('east-3').pod!, node('west-2').podIp, { what: 'pod east-3 → pod west-2' });
  }

  it("the leader's wg0 deleted under its daemon: member traffic to the other location never crosses the public network in clear", async () => {
    await pingAll(node('east-3').pod!, node('west-2').podIp, { what: 'pod east-3 → pod west-2' });
    const r = await clearAcross(async () => {
      await node('east-1').host.exec('ip', ['link', 'del', 'wg0']);
    });
    figures.push(
      `locations, the leader's wg0 deleted under its daemon: ${r.clear} of ${r.sent} member packets in clear`,
    );
    assert.equal(r.clear, 0, r.lines.join('\n'));
    await reachAcross();
  });

  it("the leader's daemon stopped and its wg0 deleted: still nothing in clear on the public network", async () => {
    await lc.cluster.stopDaemon('east-1');
    const r = await clearAcross(async () => {
      await node('east-1').host.exec('ip', ['link', 'del', 'wg0']);
    });
    figures.push(
      `locations, the leader's daemon stopped and wg0 deleted: ${r.clear} of ${r.sent} member packets in clear`,
    );
    assert.equal(r.clear, 0, r.lines.join('\n'));
    // The leader lets its members' traffic through to its wg0 only: the hop over the private network is allowed.
    assert.match(await table(node('east-3')), /set hops4 \{[^}]*elements = \{[^}]*\}/);
    await lc.cluster.startDaemon('east-1');
    await reachAcross();
  });
});
