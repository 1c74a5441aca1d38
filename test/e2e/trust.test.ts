/**
 * End-to-end trust: real daemons in network namespaces facing a hostile Node that publishes every
 * steering PodCIDR (half the internet in both families, the API server's /32, another node's
 * InternalIP, the metadata address, a whole /8) and a name as its endpoint: no route or peer
 * changes on any other node, each refusal is logged once, and both nodes — each with its own
 * key, PodCIDR and address — report the same verdicts. A Peer whose endpoint name does not resolve is left out
 * while every other peer keeps working and a new Node still joins.
 */
import assert from 'node:assert/strict';
import { KILO_PEER_RESOURCE } from '../kube-api/server.js';
import { Cluster, waitFor } from '../support/cluster/cluster.js';
import { requireTools } from '../support/process.js';
import type { StatusSnapshot } from '../../service/src/status/snapshot.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../service/src/wireguard/keys.js';

describe('e2e: trust — a hostile Node and an unresolvable Peer change nothing for the others', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  const evilKey = publicKeyFromPrivate(generatePrivateKey());

  before(async () => {
    await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter', 'ping']);
    cluster = await Cluster.create();
    cluster.api.registerResource(KILO_PEER_RESOURCE);
    await cluster.addNode('node-a');
    await cluster.addNode('node-b');
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
  });

  const status = async (name: string): Promise<StatusSnapshot> =>
    JSON.parse(await cluster.must(name).host.readFile('/run/wg-overlay/status.json')) as StatusSnapshot;

  it("a hostile Node's steering PodCIDRs and name endpoint are refused: no route or peer changes elsewhere, one log line each", async () => {
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    const routesBefore = { a: await cluster.routes('node-a'), b: await cluster.routes('node-b') };
    const marks = { a: a.daemon!.output().length, b: b.daemon!.output().length };
    const steering = [
      '128.0.0.0/1',
      '::/1',
      `${cluster.underlay.hostAddress!}/32`,
      `${b.address}/32`,
      '169.254.169.254/32',
      '10.0.0.0/8',
    ];
    cluster.api.createNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: 'evil',
        annotations: {
          'wg-overlay.io/public-key': evilKey,
          'wg-overlay.io/endpoint': 'does-not-resolve.invalid:51820',
        },
      },
      spec: { podCIDRs: steering },
      status: { addresses: [{ type: 'InternalIP', address: '198.51.100.66' }] },
    });
    for (const n of [a, b]) {
      await waitFor(`${n.name} to add evil as a peer without its ranges`, async () => {
        const dev = await cluster.device(n.name);
        const p = dev?.peers.find((x) => x.publicKey === evilKey);
        // Only its overlay addresses (IPv4 and IPv6): none of its PodCIDRs.
        return (
          p &&
          p.allowedIPs.length === 2 &&
          p.allowedIPs.every((c) => /\/(32|128)$/.test(c)) &&
          p.endpoint === '198.51.100.66:51820'
        );
      });
    }
    assert.deepEqual(await cluster.routes('node-a'), routesBefore.a);
    assert.deepEqual(await cluster.routes('node-b'), routesBefore.b);
    for (const n of [a, b]) {
      const log = n.daemon!.output().slice(n.name === 'node-a' ? marks.a : marks.b);
      for (const cidr of steering) {
        const lines = log.split('\n').filter((l) => l.includes(`Node partly ignored: evil: PodCIDR ${cidr} `));
        assert.equal(lines.length, 1, `${n.name}: ${cidr} refused once:\n${log}`);
      }
      assert.equal(
        log
          .split('\n')
          .filter((l) =>
            /Node partly ignored: evil: published endpoint "does-not-resolve\.invalid:51820" is a name, not an address/.test(
              l,
            ),
          ).length,
        1,
      );
      assert.doesNotMatch(log, /apply failed/);
    }
    const pa = await cluster.must('node-a').pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', b.podIp]);
    assert.match(pa.stdout, /2 received/);
  });

  it('both nodes, with different own state, report the same verdicts', async () => {
    const verdicts = async (name: string): Promise<string> => {
      const s = await status(name);
      return JSON.stringify(s.skipped.filter((x) => x.name !== 'node-a' && x.name !== 'node-b'));
    };
    await waitFor(
      'both status files to list evil',
      async () => (await verdicts('node-a')).includes('evil') && (await verdicts('node-b')).includes('evil'),
    );
    assert.equal(await verdicts('node-a'), await verdicts('node-b'));
    cluster.api.deleteNode('evil');
    await cluster.waitForMesh();
  });

  it('a Peer whose endpoint name does not resolve is left out; every other peer keeps working and a new Node joins', async () => {
    const a = cluster.must('node-a');
    const mark = a.daemon!.output().length;
    cluster.api.resource('peers', 'kilo.squat.ai').create({
      apiVersion: 'kilo.squat.ai/v1alpha1',
      kind: 'Peer',
      metadata: { name: 'site' },
      spec: {
        allowedIPs: ['10.5.0.0/24'],
        publicKey: publicKeyFromPrivate(generatePrivateKey()),
        endpoint: { dnsOrIP: { dns: 'does-not-resolve.invalid' }, port: 51820 },
      },
    });
    await waitFor(
      'the Peer to be left out with its reason',
      () =>
        /Peer skipped: site: endpoint name "does-not-resolve\.invalid" does not resolve \(yet\)/.test(
          a.daemon!.output().slice(mark),
        ),
      30_000,
    );
    await cluster.addNode('node-c');
    await cluster.waitForMesh(['node-a', 'node-b', 'node-c'], 30_000);
    const r = await a.pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', cluster.must('node-c').podIp]);
    assert.match(r.stdout, /2 received/);
    assert.doesNotMatch(a.daemon!.output().slice(mark), /apply failed/);
    const conf = await a.host.readFile('/etc/wireguard/wg0.conf');
    assert.doesNotMatch(conf, /does-not-resolve/);
  });
});
