/**
 * End-to-end: real `wg-overlay run` daemons in network namespaces, talking to the Kubernetes
 * API test server over HTTPS, forming a WireGuard (wireguard-go) mesh that carries pod traffic.
 */
import assert from 'node:assert/strict';
import { Cluster, waitFor } from '../support/cluster/cluster.js';
import { requireTools } from '../support/process.js';

describe('e2e: mesh of real daemons', function () {
  this.timeout(120_000);
  let cluster: Cluster;

  before(async () => {
    await requireTools(['wg', 'wg-quick', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping']);
    cluster = await Cluster.create();
    await Promise.all(['node-a', 'node-b', 'node-c'].map((n) => cluster.addNode(n)));
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
  });

  it('3 nodes publish key, overlay address and endpoint, and form a full mesh', async () => {
    for (const n of ['node-a', 'node-b', 'node-c']) {
      const node = cluster.must(n);
      const ann = cluster.annotations(n);
      assert.match(ann['wg-overlay.io/public-key'] ?? '', /^[A-Za-z0-9+/]{43}=$/);
      assert.equal(ann['wg-overlay.io/endpoint'], `${node.address}:51820`);
      // the seed rule: overlay prefix + the low two octets of the InternalIP
      assert.equal(ann['wg-overlay.io/overlay-address'], `100.64.${cluster.subnetOctet}.${node.address.split('.')[3]}`);
      const dev = await cluster.device(n);
      assert.equal(dev?.peers.length, 2);
      assert.deepEqual(
        await cluster.routes(n),
        ['node-a', 'node-b', 'node-c']
          .filter((o) => o !== n)
          .flatMap((o) => cluster.must(o).podCIDRs)
          .sort(),
      );
    }
  });

  it('pod-to-pod ping crosses wg0 (transfer counters rise)', async () => {
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    const before = (await cluster.device('node-a'))!.peers.find((p) => p.publicKey === cluster.publicKey('node-b'))!;
    const r = await a.pod!.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', b.podIp]);
    assert.match(r.stdout, /3 received/);
    const after = (await cluster.device('node-a'))!.peers.find((p) => p.publicKey === cluster.publicKey('node-b'))!;
    assert.ok(after.txBytes > before.txBytes, `tx ${before.txBytes} → ${after.txBytes}`);
    assert.ok(after.rxBytes > before.rxBytes, `rx ${before.rxBytes} → ${after.rxBytes}`);
    assert.ok(after.latestHandshake > 0);
  });

  it('node-to-node over the overlay addresses', async () => {
    const r = await cluster
      .must('node-c')
      .host.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', cluster.overlayAddress('node-a')!]);
    assert.match(r.stdout, /2 received/);
  });

  it('a 1 MiB TCP transfer between pods on different nodes arrives intact (MTU handled)', async () => {
    const a = cluster.must('node-a');
    const c = cluster.must('node-c');
    const server = c.pod!.spawn('node', [
      '-e',
      `
      const net = require('net'); const crypto = require('crypto');
      const srv = net.createServer((s) => { const h = crypto.createHash('sha256'); let n = 0;
        s.on('data', (d) => { h.update(d); n += d.length; });
        s.on('end', () => { console.log('received', n, h.digest('hex')); s.end(); srv.close(); }); });
      srv.listen(5001, () => console.log('listening'));`,
    ]);
    await server.waitForOutput('listening');
    const client = await a.pod!.exec(
      'node',
      [
        '-e',
        `
      const net = require('net'); const crypto = require('crypto');
      const buf = crypto.randomBytes(1048576);
      const s = net.connect(5001, '${c.podIp}', () => { s.end(buf); });
      s.on('error', (e) => { console.error(e.message); process.exit(1); });
      s.on('close', () => console.log('sent', buf.length, crypto.createHash('sha256').update(buf).digest('hex')));`,
      ],
      { timeoutMs: 30_000 },
    );
    const got = await server.waitForOutput(/received (\d+) ([0-9a-f]{64})/, 30_000);
    const sent = /sent (\d+) ([0-9a-f]{64})/.exec(client.stdout);
    assert.ok(sent, client.stdout);
    assert.equal(got[1], '1048576');
    assert.equal(got[2], sent[2]);
  });

  it('the daemons log why they applied each change, one line each, and never the private key', async () => {
    // The daemons start together: the last to bring up wg0 may load every peer at creation, but
    // whoever came first added the others one by one as they published their keys.
    const names = ['node-a', 'node-b', 'node-c'];
    const outs = names.map((n) => cluster.must(n).daemon!.output());
    const all = outs.join('\n');
    assert.match(
      all,
      /added peer node-[abc] \(198\.\d+\.\d+\.\d+:51820, allowed-ips .*\) \(why: new Node node-[abc]\)/,
    );
    assert.match(all, /route 10\.244\.\d+\.0\/24 dev wg0 proto 77 \(why: PodCIDR 10\.244\.\d+\.0\/24 of node-[abc]\)/);
    for (const [i, n] of names.entries()) {
      assert.match(
        outs[i]!,
        /(created wg0 directly \(userspace wireguard-go, no systemd\) with \d+ peers \(why: interface is missing\))/,
      );
      const key = await cluster.must(n).host.readFile('/etc/wg-overlay/state/private.key');
      assert.ok(!outs[i]!.includes(key.trim()), `${n} logged its private key`);
    }
  });

  it('a repeated identical Node update runs no command', async () => {
    const a = cluster.must('node-a');
    const mark = a.daemon!.output().length;
    // A heartbeat-like change that does not matter to the mesh (a label).
    cluster.api.patchNode('node-b', { metadata: { labels: { heartbeat: String(Date.now()) } } });
    await new Promise((r) => setTimeout(r, 500));
    const since = a.daemon!.output().slice(mark);
    assert.doesNotMatch(since, /exec: /, since);
  });

  it('a PodCIDR added to a Node (dual-stack list) → peers and routes follow on every node', async () => {
    const b = cluster.must('node-b');
    b.podCIDRs = [...b.podCIDRs, '10.245.2.0/24', 'fd00:10:244:2::/64'];
    cluster.api.patchNode('node-b', { spec: { podCIDRs: b.podCIDRs } });
    await cluster.waitForMesh();
    for (const n of ['node-a', 'node-c']) {
      const routes = await cluster.routes(n);
      assert.ok(routes.includes('10.245.2.0/24') && routes.includes('fd00:10:244:2::/64'), `${n}: ${routes.join(' ')}`);
      const peer = (await cluster.device(n))!.peers.find((p) => p.publicKey === cluster.publicKey('node-b'))!;
      assert.ok(peer.allowedIPs.includes('fd00:10:244:2::/64'));
    }
    // the new range is routed through the tunnel: an address of it on node-b answers node-a
    await b.host.exec('ip', ['addr', 'add', '10.245.2.1/24', 'dev', 'cni0']);
    const r = await cluster.must('node-a').pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', '10.245.2.1']);
    assert.match(r.stdout, /2 received/);
  });

  it('a 4th Node joins: peers and routes appear on all nodes; deleted: they disappear everywhere', async () => {
    const d = await cluster.addNode('node-d');
    await cluster.waitForMesh();
    const r = await cluster.must('node-a').pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', d.podIp]);
    assert.match(r.stdout, /2 received/);
    const key = cluster.publicKey('node-d')!;
    await cluster.removeNode('node-d');
    await waitFor('node-d gone from every node', async () => {
      for (const n of ['node-a', 'node-b', 'node-c']) {
        const dev = await cluster.device(n);
        if (!dev || dev.peers.some((p) => p.publicKey === key)) return false;
        if ((await cluster.routes(n)).includes(d.podCIDRs[0]!)) return false;
      }
      return true;
    });
    await cluster.waitForMesh();
  });

  it('two nodes whose InternalIPs share their low two octets get different overlay addresses and both are reachable', async () => {
    const a = cluster.must('node-a');
    const [, second, third, fourth] = a.address.split('.');
    const twinIp = `198.${second === '18' ? 19 : 18}.${third}.${fourth}`; // same low two octets as node-a, other /16
    const twin = await cluster.addNode('node-twin', {
      register: false,
      start: false,
      config: '[wireguard]\nendpoint = internal',
    });
    await twin.host.exec('ip', ['addr', 'add', `${twinIp}/32`, 'dev', 'eth0']);
    twin.address = twinIp;
    // every node reaches the twin's second address through the underlay
    for (const n of ['node-a', 'node-b', 'node-c'])
      await cluster.must(n).host.exec('ip', ['route', 'replace', `${twinIp}/32`, 'dev', 'eth0']);
    cluster.registerNode(twin);
    await cluster.startDaemon('node-twin');
    await cluster.waitForMesh();
    const addrA = cluster.overlayAddress('node-a')!;
    const addrTwin = cluster.overlayAddress('node-twin')!;
    assert.equal(addrA, `100.64.${third}.${fourth}`, 'the older node keeps the seed address');
    assert.notEqual(addrTwin, addrA);
    assert.match(addrTwin, /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./);
    for (const target of [addrA, addrTwin]) {
      const r = await cluster.must('node-c').host.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', target]);
      assert.match(r.stdout, /2 received/, target);
    }
    await cluster.removeNode('node-twin');
    await cluster.waitForMesh();
  });

  it('key rotation: state dir wiped, daemon restarted → new key published, every peer updates', async () => {
    const oldKey = cluster.publicKey('node-b')!;
    await cluster.stopDaemon('node-b');
    await cluster.must('node-b').host.exec('rm', ['-rf', '/etc/wg-overlay/state']);
    await cluster.startDaemon('node-b');
    const newKey = await waitFor('a new key on node-b', () => {
      const k = cluster.publicKey('node-b');
      return k !== oldKey && k;
    });
    // node-b publishes its new key before it recreates wg0 with it: until then its old wg0 (old
    // key, same peers) satisfies waitForMesh, and a handshake to it fails for REKEY_TIMEOUT (5 s).
    await waitFor(
      "node-b's wg0 to carry the new key",
      async () => (await cluster.device('node-b'))?.publicKey === newKey,
    );
    await cluster.waitForMesh();
    for (const n of ['node-a', 'node-c']) {
      const keys = (await cluster.device(n))!.peers.map((p) => p.publicKey);
      assert.ok(keys.includes(newKey) && !keys.includes(oldKey), n);
    }
    const r = await cluster
      .must('node-a')
      .pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '3', cluster.must('node-b').podIp]);
    assert.match(r.stdout, /2 received/);
  });

  it('a daemon restart and a 4th node joining, while two other pods ping: 0 packets lost', async () => {
    const a = cluster.must('node-a');
    const b = cluster.must('node-b');
    const ping = a.pod!.spawn('ping', ['-i', '0.01', '-c', '700', '-W', '1', b.podIp]);
    await ping.waitForOutput(/bytes from/, 5_000);
    // restart node-a's daemon (SIGTERM leaves the mesh up; the new one adopts it)
    const out = await cluster.stopDaemon('node-a');
    assert.match(out, /SIGTERM: stopping; wg0, its peers and routes stay up/);
    await cluster.startDaemon('node-a');
    await cluster.must('node-a').daemon!.waitForOutput(/mesh applied/, 15_000);
    // a 4th node joins while the ping runs
    await cluster.addNode('node-e');
    await cluster.waitForMesh();
    const done = await ping.exited;
    void done;
    const summary = ping.output();
    assert.match(
      summary,
      /700 packets transmitted, 700 received, 0% packet loss/,
      summary.split('\n').slice(-4).join('\n'),
    );
    const restarted = cluster.must('node-a').daemon!.output();
    assert.doesNotMatch(
      restarted,
      /ip link del|wireguard-go wg0|recreated|created wg0/,
      'the restarted daemon adopted wg0 without recreating it',
    );
  });
});
