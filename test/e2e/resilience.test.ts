/**
 * End-to-end resilience: an API server that fails for a while (one warning, the mesh stays up,
 * then convergence), hostile annotations on another Node, a daemon that writes no other Node,
 * and `create_interface = false` configuring an interface someone else created.
 */
import assert from 'node:assert/strict';
import { Cluster, waitFor } from '../support/cluster/cluster.js';
import { requireTools } from '../support/process.js';

describe('e2e: resilience', function () {
  this.timeout(120_000);
  let cluster: Cluster;

  before(async () => {
    await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter', 'ping']);
    cluster = await Cluster.create();
    await Promise.all(['node-a', 'node-b'].map((n) => cluster.addNode(n)));
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
  });

  it('an API server failing with 503 and dropped watches: one warning, traffic keeps flowing, then convergence', async () => {
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    const mark = a.daemon!.output().length;
    cluster.api.failNext(6, 503);
    cluster.api.dropWatches();
    // the mesh stays up while discovery is down
    const r = await a.pod!.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', b.podIp]);
    assert.match(r.stdout, /3 received/);
    // a node joins meanwhile; once the API answers again everyone converges
    cluster.api.createNode({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'ghost' }, spec: {}, status: {} });
    await cluster.addNode('node-c');
    await cluster.waitForMesh(['node-a', 'node-b', 'node-c'], 60_000);
    await waitFor(
      'node-a to say it is connected again',
      () => /connected to the API server again/.test(a.daemon!.output().slice(mark)),
      30_000,
    );
    const since = a.daemon!.output().slice(mark);
    assert.equal(since.match(/API server unreachable or failing/g)?.length, 1, since);
    assert.doesNotMatch(since, /apply failed/);
    cluster.api.deleteNode('ghost');
  });

  it('hostile or broken annotations on another Node are skipped with a reason and never break the mesh', async () => {
    const a = cluster.must('node-a');
    const mark = a.daemon!.output().length;
    cluster.api.createNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: 'evil',
        annotations: {
          'wg-overlay.io/public-key': 'not-a-key',
          'wg-overlay.io/overlay-address': cluster.overlayAddress('node-a')!,
          'wg-overlay.io/endpoint': '999.1.1.1:99999',
        },
      },
      spec: { podCIDRs: [a.podCIDRs[0]!, 'garbage'] },
      status: { addresses: [{ type: 'InternalIP', address: '198.51.100.66' }] },
    });
    await waitFor("the skip reason in node-a's log", () =>
      /Node skipped: evil: published public key "not-a-key" is not a base64 WireGuard key/.test(
        a.daemon!.output().slice(mark),
      ),
    );
    // another node's key is copied: the older node keeps it
    cluster.api.patchNode('evil', {
      metadata: { annotations: { 'wg-overlay.io/public-key': cluster.publicKey('node-b')! } },
    });
    await waitFor('the duplicate-key reason', () =>
      /Node skipped: evil: publishes the same public key as older Node node-b/.test(a.daemon!.output().slice(mark)),
    );
    await cluster.waitForMesh(['node-a', 'node-b', 'node-c']);
    assert.equal(cluster.overlayAddress('node-a'), cluster.annotations('node-a')['wg-overlay.io/overlay-address']);
    const r = await a.pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', cluster.must('node-b').podIp]);
    assert.match(r.stdout, /2 received/);
    cluster.api.deleteNode('evil');
  });

  it('wg0.conf follows the mesh (header, Table = off, every peer) and wg-quick accepts it', async () => {
    const a = cluster.must('node-a');
    const want = ['node-b', 'node-c'].map((n) => cluster.publicKey(n)!);
    const conf = await waitFor('wg0.conf with every peer', async () => {
      const text = await a.host.readFile('/etc/wireguard/wg0.conf');
      return want.every((k) => text.includes(`PublicKey = ${k}`)) && text;
    });
    assert.match(conf, /^# managed by wg-overlay/);
    assert.match(conf, /^Table = off$/m);
    assert.match(
      conf,
      new RegExp(
        `^Address = ${cluster.overlayAddress('node-a')!.replace(/\./g, '\\.')}/10, ` +
          `${cluster.annotations('node-a')['wg-overlay.io/overlay-address6']!}/48$`,
        'm',
      ),
    );
    const stat = await a.host.exec('stat', ['-c', '%a', '/etc/wireguard/wg0.conf']);
    assert.equal(stat.stdout.trim(), '600');
    const strip = await a.host.exec('wg-quick', ['strip', 'wg0']);
    assert.match(strip.stdout, /PrivateKey = /);
  });

  it('each daemon patches only its own Node', () => {
    const patches = cluster.api.requests.filter((q) => q.method === 'PATCH' || q.method === 'PUT');
    assert.ok(patches.length >= 3);
    for (const p of patches) assert.match(p.path, /^\/api\/v1\/nodes\/node-[abc]$/);
    // and only with our annotations, as a merge patch
    assert.ok(patches.every((p) => p.contentType?.startsWith('application/merge-patch+json')));
  });

  it('create_interface = false: waits for an interface created by someone else, then configures it', async () => {
    const d = await cluster.addNode('node-d', { config: '[wireguard]\ncreate_interface = false' });
    await d.daemon!.waitForOutput(/waiting for interface wg0 to be created by someone else/, 15_000);
    assert.equal((await d.host.exec('ip', ['link', 'show', 'wg0'], { allowFailure: true })).exitCode, 1);
    await d.host.exec('wireguard-go', ['wg0']); // e.g. a userspace WireGuard service
    await cluster.waitForMesh(['node-a', 'node-b', 'node-c', 'node-d'], 30_000);
    assert.match(d.daemon!.output(), /reconfigured wg0 in place/);
    const r = await d.pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', cluster.must('node-a').podIp]);
    assert.match(r.stdout, /2 received/);
  });
});
