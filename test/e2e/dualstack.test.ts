/**
 * End-to-end IPv6 (issue 13): real daemons on a dual-stack underlay carry pod traffic of both
 * families and answer on both overlay addresses, then fail over to a peer's other address family
 * when its first endpoint goes dark; an IPv6-only cluster (underlay and API server) still runs a
 * dual-stack overlay; and a node behind a NAT router is reached at the endpoint other nodes saw it
 * arrive from.
 */
import assert from 'node:assert/strict';
import { Cluster, type ClusterNode } from '../support/cluster.js';
import { requireTools } from '../support/process.js';
import { ANNOTATION_OVERLAY_ADDRESS, ANNOTATION_OVERLAY_ADDRESS6 } from '../../service/src/mesh/annotations.js';

const TOOLS = ['wg', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping'];

/** Dual-stack PodCIDRs for the node numbered `i`. */
const podCIDRs = (i: number): string[] => [`10.244.${i}.0/24`, `fd10:244:${i}::/64`];

/** Pings `target` from a pod or node `count` times (0.2 s apart) and asserts every reply came back. */
async function pingAll(from: { exec: ClusterNode['host']['exec'] }, target: string, count = 3): Promise<void> {
  const r = await from.exec('ping', ['-c', String(count), '-i', '0.2', '-W', '2', target], { allowFailure: true });
  assert.match(r.stdout, new RegExp(`${count} received`), `ping ${target}:\n${r.stdout}${r.stderr}`);
}

/** The addresses (without prefix length) on a node's wg0. */
async function wg0Addresses(node: ClusterNode): Promise<string[]> {
  const r = await node.host.exec('ip', ['-j', 'addr', 'show', 'dev', 'wg0']);
  return (JSON.parse(r.stdout) as Array<{ addr_info: Array<{ local: string; scope: string }> }>)[0]!.addr_info.filter((a) => a.scope === 'global').map((a) => a.local);
}

describe('e2e: dual-stack mesh', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  const names = ['node-a', 'node-b', 'node-c'];

  before(async () => {
    await requireTools(TOOLS);
    cluster = await Cluster.create({ underlay: { ipv6: true } });
    await Promise.all(names.map((n, i) => cluster.addNode(n, { podCIDRs: podCIDRs(i + 1) })));
    await cluster.waitForMesh();
  });

  after(async () => { await cluster?.destroy(); });

  it('pods ping each other over IPv4 and IPv6 through wg0; both overlay addresses are on wg0 and answer', async () => {
    for (const [from, to] of [['node-a', 'node-b'], ['node-b', 'node-c'], ['node-c', 'node-a']] as const) {
      const src = cluster.must(from);
      const dst = cluster.must(to);
      for (const target of [dst.podIp, dst.podIp6!]) {
        const route = await src.host.exec('ip', ['route', 'get', target]);
        assert.match(route.stdout, / dev wg0 /, `${from} routes ${target} into the tunnel`);
        const before = (await cluster.peer(from, to))!;
        await pingAll(src.pod!, target);
        const after = (await cluster.peer(from, to))!;
        assert.ok(after.txBytes > before.txBytes && after.rxBytes > before.rxBytes, `${from} → ${target}: wg0 counters rise (tx ${before.txBytes} → ${after.txBytes}, rx ${before.rxBytes} → ${after.rxBytes})`);
      }
    }
    for (const n of names) {
      const ann = cluster.annotations(n);
      const v4 = ann[ANNOTATION_OVERLAY_ADDRESS]!;
      const v6 = ann[ANNOTATION_OVERLAY_ADDRESS6]!;
      assert.match(v6 ?? '', /^fd[0-9a-f]{2}:/, `${n} publishes a ULA overlay address`);
      assert.deepEqual((await wg0Addresses(cluster.must(n))).sort(), [v4, v6].sort(), `${n}: wg0 holds both overlay addresses`);
      const other = cluster.must(names[(names.indexOf(n) + 1) % names.length]!);
      await pingAll(other.host, v4, 2);
      await pingAll(other.host, v6, 2);
    }
  });
});

describe('e2e: IPv6-only mesh', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  const names = ['node-a', 'node-b'];

  before(async () => {
    await requireTools(TOOLS);
    cluster = await Cluster.create({ underlay: { ipv4: false, ipv6: true } });
    await Promise.all(names.map((n, i) => cluster.addNode(n, { podCIDRs: podCIDRs(i + 1) })));
    await cluster.waitForMesh();
  });

  after(async () => { await cluster?.destroy(); });

  it('nodes with only IPv6 InternalIPs and an API server on IPv6 form the mesh at [v6]:port; pods ping over IPv6 and IPv4 inside the tunnel', async () => {
    assert.match(cluster.api.url ?? '', /^https:\/\/\[2001:db8:[0-9a-f:]+\]:\d+$/, 'the API server listens on the IPv6 underlay');
    for (const n of names) {
      const node = cluster.must(n);
      assert.equal((await node.host.exec('ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).stdout.trim(), '', `${n} has no IPv4 underlay address`);
      assert.match(node.address, /^2001:db8:/);
      assert.equal(cluster.annotations(n)['wg-overlay.io/endpoint'], `[${node.address}]:51820`);
      const other = names.find((o) => o !== n)!;
      assert.equal((await cluster.peer(n, other))?.endpoint, `[${cluster.must(other).address}]:51820`);
    }
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    for (const target of [b.podIp6!, b.podIp]) {
      const before = (await cluster.peer('node-a', 'node-b'))!;
      await pingAll(a.pod!, target);
      const after = (await cluster.peer('node-a', 'node-b'))!;
      assert.ok(after.txBytes > before.txBytes && after.rxBytes > before.rxBytes, `${target} went through wg0`);
    }
    await pingAll(b.host, cluster.annotations('node-a')[ANNOTATION_OVERLAY_ADDRESS6]!, 2);
    await pingAll(b.host, cluster.annotations('node-a')[ANNOTATION_OVERLAY_ADDRESS]!, 2);
  });
});
