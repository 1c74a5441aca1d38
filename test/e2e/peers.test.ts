/**
 * End-to-end: external WireGuard peers through Kilo's Peer resource, with real daemons in
 * network namespaces and the real tools. A Peer created with kubectl appears on every node; an
 * external client in its own namespace on the underlay gets its configuration from
 * `wg-overlay showconf peer`, adds its private key, brings its interface up with wg-quick and
 * pings pods behind the nodes; `status`, `graph` and the metrics/health server on each node's
 * loopback show it. Kilo's own Peer manifest from the seeds applies unchanged and is skipped
 * with a clear reason in the log and in `status`. Deleting the Peer removes it everywhere.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, Cluster, httpGet, REPO_ROOT, waitFor } from '../support/cluster/cluster.js';
import { KILO_PEER_RESOURCE } from '../kube-api/server.js';
import { kubectlOk, type KubectlEnv } from '../kube-api/kubectl.js';
import { requireTools, run } from '../support/process.js';
import { TestNode } from '../support/namespaces/netns.js';
import type { StatusView } from '../../service/src/cli/status.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../service/src/wireguard/keys.js';

const CONF = '/etc/wg-overlay/wg-overlay.conf';
const NODES = ['node-a', 'node-b'];

describe('e2e: external Peers (Kilo-compatible), showconf, status, graph, metrics', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  let client: TestNode;
  let dir: string;
  let kenv: KubectlEnv;
  const priv = generatePrivateKey();
  const pub = publicKeyFromPrivate(priv);

  before(async () => {
    await requireTools(['wg', 'wg-quick', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping', 'kubectl', 'dot']);
    cluster = await Cluster.create();
    // The admin applied packaging/kubernetes/crd-peer.yaml.
    cluster.api.registerResource(KILO_PEER_RESOURCE);
    await Promise.all(NODES.map((n) => cluster.addNode(n)));
    await cluster.waitForMesh();
    // The external client: its own namespace on the underlay, no daemon, no Node object.
    client = await TestNode.create({ label: 'laptop' });
    await cluster.underlay.attach(client);
    dir = await mkdtemp(join(tmpdir(), 'wgo-peers-'));
    kenv = { kubeconfig: join(dir, 'kubeconfig'), cacheDir: join(dir, 'kubecache') };
    await writeFile(kenv.kubeconfig, cluster.kubeconfigText, { mode: 0o600 });
  });

  after(async () => {
    await client?.destroy();
    await cluster?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a valid Peer created with kubectl shows up as a peer, with a route for its allowedIPs, on every node', async () => {
    const out = await kubectlOk(kenv, ['apply', '--validate=false', '-f', '-'], {
      input: [
        'apiVersion: kilo.squat.ai/v1alpha1',
        'kind: Peer',
        'metadata:',
        '  name: laptop',
        'spec:',
        '  allowedIPs:',
        '  - 10.5.0.2/32',
        `  publicKey: ${pub}`,
        '  persistentKeepalive: 25',
        '',
      ].join('\n'),
    });
    assert.match(out, /peer\.kilo\.squat\.ai\/laptop created/);
    for (const n of NODES) {
      await waitFor(`Peer laptop on ${n}`, async () => {
        const peer = (await cluster.device(n))?.peers.find((p) => p.publicKey === pub);
        // (`ip -j route` prints a host route without its /32)
        return (
          peer &&
          peer.allowedIPs.join(',') === '10.5.0.2/32' &&
          peer.persistentKeepalive === 25 &&
          (await cluster.routes(n)).includes('10.5.0.2')
        );
      });
      assert.match(
        cluster.must(n).daemon!.output(),
        /added peer laptop \(no endpoint, allowed-ips 10\.5\.0\.2\/32\) \(why: new Peer laptop\)/,
      );
    }
  });

  it('the client gets its config from `wg-overlay showconf peer`, adds its private key, and pings pods through the mesh', async () => {
    const a = cluster.must('node-a');
    const conf = (await a.host.exec('node', [CLI, 'showconf', 'peer', 'laptop', '--wg-quick', '--config', CONF]))
      .stdout;
    assert.equal((conf.match(/^\[Peer\]$/gm) ?? []).length, 2, conf);
    assert.match(conf, /^Address = 10\.5\.0\.2\/32$/m);
    await client.exec('mkdir', ['-p', '/etc/wireguard']);
    await client.writeFile('/etc/wireguard/wg0.conf', conf.replace('REPLACE_WITH_THE_PRIVATE_KEY', priv), 0o600);
    await client.exec('wg-quick', ['up', 'wg0']);
    assert.equal((await client.exec('wg', ['show', 'wg0', 'public-key'])).stdout.trim(), pub);
    for (const n of NODES) {
      const target = cluster.must(n).podIp;
      const r = await client.exec('ping', ['-c', '3', '-i', '0.2', '-W', '3', target], { allowFailure: true });
      assert.match(r.stdout, /3 received/, `ping ${target} (pod on ${n}):\n${r.stdout}${r.stderr}`);
    }
    const overlay = cluster.overlayAddress('node-b')!;
    assert.match(
      (await client.exec('ping', ['-c', '2', '-i', '0.2', '-W', '3', overlay])).stdout,
      /2 received/,
      'the node itself over its overlay address',
    );
    // The nodes learned the roaming client's endpoint from its handshakes.
    for (const n of NODES) {
      const peer = (await cluster.device(n))!.peers.find((p) => p.publicKey === pub)!;
      assert.ok(
        peer.endpoint?.startsWith(`${client.underlayAddress}:`),
        `${n} sends to the client at ${peer.endpoint}`,
      );
      assert.ok(peer.latestHandshake > 0 && peer.rxBytes > 0, `${n} has a handshake with the client`);
    }
  });

  it('`wg-overlay status` on a node shows the Peer with its handshake, traffic and route', async () => {
    const b = cluster.must('node-b');
    const text = (await b.host.exec('node', [CLI, 'status', '--config', CONF])).stdout;
    assert.match(text, /^wg-overlay on node-b: daemon running \(pid \d+\); last run ok/);
    assert.match(
      text,
      /\ninterface wg0: up, address 100\.64\.\d+\.\d+\/10, fd[0-9a-f]{2}:[0-9a-f:]+\/48, listen port 51820\n/,
    );
    assert.match(
      text,
      /\n  laptop +peer +- +\d+\.\d+\.\d+\.\d+:\d+ +\d+s ago +\d+(\.\d)? K?i?B +\d+(\.\d)? K?i?B +ok \(1\)\n/,
      text,
    );
    assert.match(text, /\n  node-a +node +100\.64\.\d+\.\d+ +/);
    const view = JSON.parse(
      (await b.host.exec('node', [CLI, 'status', '--json', '--config', CONF])).stdout,
    ) as StatusView;
    const laptop = view.peers.find((p) => p.name === 'laptop')!;
    assert.equal(laptop.kind, 'peer');
    assert.equal(laptop.publicKey, pub);
    assert.ok(laptop.handshakeAgeSeconds !== null && laptop.handshakeAgeSeconds < 120);
    assert.ok(laptop.rxBytes > 0 && laptop.txBytes > 0);
    assert.deepEqual(laptop.routes, [{ dst: '10.5.0.2/32', present: true }]);
    assert.equal(view.daemon.running, true);
    assert.deepEqual(view.daemon.watch && [view.daemon.watch.nodes.state, view.daemon.watch.peers.state], ['up', 'up']);
  });

  it('`wg-overlay graph` on a node draws the Peer with a fresh handshake, and `dot -Tsvg` renders it', async () => {
    const dotText = (await cluster.must('node-a').host.exec('node', [CLI, 'graph', '--config', CONF])).stdout;
    assert.match(
      dotText,
      /"node\/node-a" -- "peer\/laptop" \[style=dashed, color=darkgreen, fontcolor=darkgreen, label="\d+s ago"\];/,
    );
    assert.match(dotText, /"node\/node-b" -- "peer\/laptop" \[style=dashed\];/);
    const svg = await run('dot', ['-Tsvg'], { input: dotText });
    assert.match(svg.stdout, /<svg [\s\S]*>laptop<[\s\S]*<\/svg>/);
  });

  it("metrics and health are served on each node's loopback", async () => {
    for (const n of NODES) {
      const host = cluster.must(n).host;
      const m = await httpGet(host, 'http://127.0.0.1:9586/metrics');
      assert.equal(m.status, 200);
      assert.match(m.body, /^wg_overlay_peers\{kind="peer"\} 1$/m);
      assert.match(m.body, /^wg_overlay_peers\{kind="node"\} 1$/m);
      assert.match(m.body, /^wg_overlay_peer_latest_handshake_age_seconds\{kind="peer",name="laptop"\} \d+$/m);
      assert.match(m.body, /^wg_overlay_watch_up\{resource="peers"\} 1$/m);
      assert.match(m.body, /^wg_overlay_last_successful_sync_timestamp_seconds \d{10}$/m);
      assert.deepEqual(await httpGet(host, 'http://127.0.0.1:9586/healthz'), { status: 200, body: 'ok\n' });
    }
  });

  it('Kilo\'s Peer manifest from the seeds applies unchanged, and is skipped with "invalid public key" in the log and in status', async () => {
    // test/fixtures/kilo/peer-my-device.yaml is the manifest of ../shared/seeds/004_*.txt, verbatim (a unit test checks).
    const manifest = await readFile(join(REPO_ROOT, 'test/fixtures/kilo/peer-my-device.yaml'), 'utf8');
    assert.match(manifest, /publicKey: "YOUR_PUBLIC_KEY_HERE"/);
    const marks = new Map(NODES.map((n) => [n, cluster.must(n).daemon!.output().length]));
    const out = await kubectlOk(kenv, ['apply', '--validate=false', '-f', '-'], { input: manifest });
    assert.match(out, /peer\.kilo\.squat\.ai\/my-device created/);
    assert.match(await kubectlOk(kenv, ['get', 'peers']), /my-device/);
    for (const n of NODES) {
      await waitFor(`${n} to log the skipped Peer`, () =>
        /Peer skipped: my-device: invalid public key "YOUR_PUBLIC_KEY_HERE": expected 44 characters of base64 encoding 32 bytes/.test(
          cluster.must(n).daemon!.output().slice(marks.get(n)),
        ),
      );
    }
    const a = cluster.must('node-a');
    await waitFor(
      'status to list the skipped Peer',
      async () =>
        /\nskipped: 1\n  Peer my-device: invalid public key "YOUR_PUBLIC_KEY_HERE"[^\n]*\[invalid-public-key\]\n/.test(
          (await a.host.exec('node', [CLI, 'status', '--config', CONF])).stdout,
        ),
      10_000,
    );
    const view = JSON.parse(
      (await a.host.exec('node', [CLI, 'status', '--json', '--config', CONF])).stdout,
    ) as StatusView;
    assert.deepEqual(
      view.skipped.map((s) => [s.kind, s.name, s.reason, s.whole]),
      [['peer', 'my-device', 'invalid-public-key', true]],
    );
    // Nothing else changed: the client still reaches the pods.
    assert.equal((await cluster.device('node-a'))!.peers.length, 2);
    assert.match(
      (await client.exec('ping', ['-c', '2', '-i', '0.2', '-W', '3', cluster.must('node-b').podIp])).stdout,
      /2 received/,
    );
    const metrics = await httpGet(a.host, 'http://127.0.0.1:9586/metrics');
    assert.match(metrics.body, /^wg_overlay_skipped\{kind="peer",reason="invalid-public-key"\} 1$/m);
    // showconf refuses it with the same reason.
    const r = await a.host.exec('node', [CLI, 'showconf', 'peer', 'my-device', '--config', CONF], {
      allowFailure: true,
    });
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /Peer my-device is skipped by every node: invalid public key "YOUR_PUBLIC_KEY_HERE"/);
  });

  it('deleting the Peer removes it and its route from every node', async () => {
    await kubectlOk(kenv, ['delete', 'peer', 'laptop']);
    for (const n of NODES) {
      await waitFor(
        `Peer laptop gone from ${n}`,
        async () =>
          !(await cluster.device(n))?.peers.some((p) => p.publicKey === pub) &&
          !(await cluster.routes(n)).includes('10.5.0.2'),
      );
      assert.match(cluster.must(n).daemon!.output(), /removed peer laptop \(why: laptop is gone or no longer valid\)/);
    }
    await cluster.waitForMesh();
  });
});
