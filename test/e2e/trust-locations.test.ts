/**
 * End-to-end trust in location mode, with real daemons in network namespaces and two locations:
 * a hostile east member that names the API server's address, the metadata address and a
 * neighbour's address as InternalIPs and the neighbour's PodCIDR in allowed-location-ips steers no
 * route on any node and cuts nothing off; a member of the leader's rank writing itself into the
 * leader's Lease does not take the lead; a leader that wrote a one-hour Lease and died is replaced
 * within 10 s. And in a full mesh, an endpoint one node publishes about another is not dialled.
 */
import assert from 'node:assert/strict';
import { leaseName } from '../../service/src/kube/location-leases.js';
import { ANNOTATION_DISCOVERED, KILO_ALLOWED_LOCATION_IPS, KILO_LOCATION } from '../../service/src/mesh/annotations.js';
import type { StatusSnapshot } from '../../service/src/status/snapshot.js';
import { Cluster, waitFor } from '../support/cluster/cluster.js';
import { LocationCluster, TWO_LOCATIONS } from '../support/cluster/locations.js';
import { pingAll } from '../support/namespaces/pods.js';
import { requireTools, sleep } from '../support/process.js';

const TOOLS = ['wg', 'wireguard-go', 'ip', 'nsenter', 'ping'];

/** The status file of a node's daemon. */
async function status(c: Cluster, name: string): Promise<StatusSnapshot> {
  return JSON.parse(await c.must(name).host.readFile('/run/wg-overlay/status.json')) as StatusSnapshot;
}

describe('e2e: trust in location mode — a hostile member, Lease writes, a dead leader', function () {
  this.timeout(240_000);
  let lc: LocationCluster;
  const node = (name: string) => lc.cluster.must(name);

  before(async () => {
    await requireTools(TOOLS);
    lc = await LocationCluster.create(TWO_LOCATIONS, { granularity: 'location' });
    await lc.waitForTopology('location', { east: 'east-1', west: 'west-1' }, { timeoutMs: 40_000 });
  });

  after(async () => {
    await lc?.destroy();
  });

  it('a hostile east member naming the API server, the metadata address and a neighbour as its own steers nothing', async () => {
    const c = lc.cluster;
    const apiServer = c.underlay.hostAddress!;
    const east3 = node('east-3');
    const east2 = node('east-2');
    await c.addNode('east-9', {
      network: lc.networks.get('east')!,
      annotations: { [KILO_LOCATION]: 'east' },
      config: `[mesh]\ngranularity = location\nreachable = ${c.underlay.subnet}`,
    });
    // What its kubelet may write about its own Node: addresses and Kilo's annotations.
    const evil = c.api.getNode('east-9')!;
    const own = node('east-9').address;
    const lies = [own, apiServer, '169.254.169.254', east3.address].map((address) => ({ type: 'InternalIP', address }));
    c.api.updateNode({
      ...evil,
      metadata: {
        ...evil.metadata,
        annotations: { ...evil.metadata?.annotations, [KILO_ALLOWED_LOCATION_IPS]: east2.podCIDRs[0]! },
      },
      status: { ...(evil.status as object), addresses: lies },
    } as typeof evil);
    const refused = await waitFor(
      "west-1 refusing east-9's claims",
      async () => {
        const s = await status(c, 'west-1');
        const mine = s.skipped.filter((x) => x.name === 'east-9').map((x) => x.message);
        return mine.length >= 3 ? mine : undefined;
      },
      20_000,
      200,
    );
    assert.match(refused.join('\n'), /InternalIP 169\.254\.169\.254\/32 overlaps link-local/);
    assert.match(refused.join('\n'), new RegExp(`InternalIP ${east3.address.replace(/\./g, '\\.')}/32 contains`));
    assert.match(refused.join('\n'), /allowed-location-ips entry \S+ overlaps \S+ of Node east-2, claimed first/);
    // No node routes any of it towards east-9's location in a way that takes it from its owner.
    for (const n of ['west-1', 'west-2', 'east-1', 'east-2', 'east-3']) {
      const routes = await c.ownRoutes(n);
      for (const dst of ['169.254.169.254/32', `${apiServer}/32`])
        assert.ok(!routes.some((r) => r.dst === dst || r.dst === dst.replace('/32', '')), `${n} routes ${dst}`);
    }
    const peerOfEast = await c.peer('west-1', 'east-1');
    assert.ok(!peerOfEast?.allowedIPs.includes('169.254.169.254/32'));
    assert.ok(!peerOfEast?.allowedIPs.includes(`${apiServer}/32`));
    // Nothing is cut off: west still reaches east-2's pod and east-3's address through east's leader.
    await pingAll(node('west-2').pod!, east2.podIp, { what: 'west-2 → east-2 (pod)' });
    await pingAll(node('west-2').host, east3.address, { what: 'west-2 → east-3 (its InternalIP)' });
    await c.removeNode('east-9', { deleteObject: true });
  });

  it("a member of the leader's rank writing itself into the leader's Lease does not take the lead", async () => {
    const leases = lc.cluster.api.resource('leases', 'coordination.k8s.io');
    const name = leaseName('location:east');
    const before = lc.lease('east')!;
    assert.equal(before.holder, 'east-1');
    const current = leases.get(name, 'wg-overlay')!;
    const renewTime = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    leases.update({
      ...current,
      spec: { ...(current.spec as object), holderIdentity: 'east-2', leaseDurationSeconds: 3600, renewTime },
    });
    await waitFor('east-1 to write itself back', () => lc.lease('east')?.holder === 'east-1', 5_000, 100);
    const until = Date.now() + 6_000;
    while (Date.now() < until) {
      assert.deepEqual(await lc.differences('location', { east: 'east-1', west: 'west-1' }), []);
      await sleep(500);
    }
  });

  it('a leader that wrote a one-hour Lease and died is replaced within 10 s', async () => {
    const leases = lc.cluster.api.resource('leases', 'coordination.k8s.io');
    const name = leaseName('location:east');
    await lc.cluster.stopDaemon('east-1', 'SIGKILL');
    await node('east-1').host.exec('ip', ['link', 'del', 'wg0']);
    const died = Date.now();
    const current = leases.get(name, 'wg-overlay')!;
    const renewTime = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    leases.update({
      ...current,
      spec: { ...(current.spec as object), holderIdentity: 'east-1', leaseDurationSeconds: 3600, renewTime },
    });
    await lc.waitForTopology('location', { east: 'east-2', west: 'west-1' }, { timeoutMs: 15_000, skip: ['east-1'] });
    const took = Date.now() - died;
    console.log(
      `      (a dead leader's one-hour Lease: east-2 led after ${(took / 1000).toFixed(1)} s, [mesh] leader_lease = 5 s)`,
    );
    assert.ok(took < 10_000, `replaced after ${took} ms`);
    await pingAll(node('west-2').pod!, node('east-3').podIp, { what: 'west-2 → east-3 through the new leader' });
  });
});

describe('e2e: trust — an endpoint one node publishes about another is not dialled', function () {
  this.timeout(180_000);
  let cluster: Cluster;

  before(async () => {
    await requireTools(TOOLS);
    cluster = await Cluster.create();
    for (const n of ['node-a', 'node-b', 'node-c']) await cluster.addNode(n);
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
  });

  it('node-c claims node-b is at an address of its choosing: node-a shows the report and never dials it', async () => {
    const decoy = '198.51.100.66:51820';
    // A hostile node-c writes the annotation itself (its daemon, which owns it, would take it back).
    await cluster.stopDaemon('node-c');
    cluster.api.patchNode('node-c', {
      metadata: { annotations: { [ANNOTATION_DISCOVERED]: JSON.stringify({ 'node-b': decoy }) } },
    });
    const seen = await waitFor(
      "node-a's status to show the report",
      async () => {
        const s = await status(cluster, 'node-a');
        return s.peers.find((p) => p.name === 'node-b')?.reported;
      },
      20_000,
      200,
    );
    assert.deepEqual(seen, [{ endpoint: decoy, reporters: ['node-c'], accepted: false }]);
    const s = await status(cluster, 'node-a');
    const b = s.peers.find((p) => p.name === 'node-b')!;
    assert.ok(!(b.failover?.candidates ?? []).includes(decoy), JSON.stringify(b));
    assert.equal((await cluster.peer('node-a', 'node-b'))?.endpoint, `${cluster.must('node-b').address}:51820`);
  });
});
