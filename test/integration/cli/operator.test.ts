/**
 * The operator commands as real processes against the Kubernetes API test server (HTTPS, bearer
 * token, Kilo's Peer resource), checked with the real tools: `showconf peer` and `showconf node`
 * output is accepted by `wg setconf` on a wireguard-go interface in a test node (and the
 * `--wg-quick` form by `wg-quick strip`), `graph` output is rendered by Graphviz `dot -Tsvg`,
 * `status` says when the interface is missing, and errors exit with their status.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../../support/cluster/cluster.js';
import { publishedNode } from '../../support/fakes/fixtures.js';
import { KILO_PEER_RESOURCE, KubeApiServer, type KubeObject } from '../../kube-api/server.js';
import { requireTools, run } from '../../support/process.js';
import { TestNode } from '../../support/namespaces/netns.js';
import { Underlay } from '../../support/namespaces/underlay.js';
import { parseDump } from '../../../service/src/host/device.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';
import { parseWgQuick } from '../../../service/src/wireguard/wgquick.js';

/** Runs the CLI in this process's namespaces. */
function cli(args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('node', [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

const keyPair = (): { priv: string; pub: string } => {
  const priv = generatePrivateKey();
  return { priv, pub: publicKeyFromPrivate(priv) };
};

const node = (name: string, ip: string, pods: string[], key: string, minute: number): KubeObject =>
  publishedNode(name, { ip, pods, key, minute, endpoint: true });

describe('integration: operator commands (showconf, graph, status)', function () {
  this.timeout(60_000);
  let dir: string;
  let server: KubeApiServer;
  let bare: KubeApiServer;
  let conf: string;
  let bareConf: string;
  let wgnode: TestNode;
  let underlay: Underlay;
  const a = keyPair();
  const b = keyPair();
  const laptop = keyPair();
  const psk = generatePrivateKey();

  before(async () => {
    await requireTools(['wg', 'wg-quick', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'dot']);
    dir = await mkdtemp(join(tmpdir(), 'wgo-cli-'));
    // The API listens on an underlay bridge so that commands inside the test node reach it too.
    underlay = await Underlay.create({ hostAddress: true });
    wgnode = await TestNode.create({ label: 'wgclient' });
    await underlay.attach(wgnode);
    server = new KubeApiServer({ token: 'cli-token', host: underlay.hostAddress! });
    server.registerResource(KILO_PEER_RESOURCE);
    await server.start();
    await server.writeKubeconfig(join(dir, 'kubeconfig'));
    server.createNode(node('node-a', '198.51.100.11', ['10.244.1.0/24'], a.pub, 1));
    server.createNode(node('node-b', '198.51.100.12', ['10.244.2.0/24', 'fd00:10:244:2::/64'], b.pub, 2));
    const peers = server.resource('peers', 'kilo.squat.ai');
    peers.create({
      apiVersion: 'kilo.squat.ai/v1alpha1',
      kind: 'Peer',
      metadata: { name: 'laptop' },
      spec: { allowedIPs: ['10.5.0.2/32'], publicKey: laptop.pub, persistentKeepalive: 25, presharedKey: psk },
    });
    peers.create({
      apiVersion: 'kilo.squat.ai/v1alpha1',
      kind: 'Peer',
      metadata: { name: 'my-device' },
      spec: { allowedIPs: ['10.5.0.3/32'], publicKey: 'YOUR_PUBLIC_KEY_HERE', persistentKeepalive: 25 },
    });
    conf = join(dir, 'wg-overlay.conf');
    await writeFile(
      conf,
      `[kubernetes]\nkubeconfig = ${join(dir, 'kubeconfig')}\nnode_name = not-a-node\n` +
        '[overlay]\ncidr6 = fd00:64::/48\n[peers]\nallowed_ips_extra = 10.96.0.0/12\n',
    );
    // A cluster without the Peer CRD.
    bare = new KubeApiServer({ token: 'bare-token' });
    await bare.start();
    await bare.writeKubeconfig(join(dir, 'bare-kubeconfig'));
    bare.createNode(node('node-a', '198.51.100.11', ['10.244.1.0/24'], a.pub, 1));
    bareConf = join(dir, 'bare.conf');
    await writeFile(bareConf, `[kubernetes]\nkubeconfig = ${join(dir, 'bare-kubeconfig')}\nnode_name = not-a-node\n`);
  });

  after(async () => {
    await wgnode?.destroy();
    await underlay?.destroy();
    await server?.stop();
    await bare?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('showconf peer: `wg setconf` accepts it; every node is a peer with its ranges, keepalive and preshared key', async () => {
    const r = await cli(['showconf', 'peer', 'laptop', '--config', conf]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    // As the output says (and Kilo's docs do): setconf, then the private key.
    await wgnode.exec('wireguard-go', ['wgp0']);
    await wgnode.writeFile('/run/peer.conf', r.stdout, 0o600);
    await wgnode.exec('wg', ['setconf', 'wgp0', '/run/peer.conf']);
    await wgnode.writeFile('/run/laptop.key', `${laptop.priv}\n`, 0o600);
    await wgnode.exec('wg', ['set', 'wgp0', 'private-key', '/run/laptop.key']);
    const dev = parseDump('wgp0', (await wgnode.exec('wg', ['show', 'wgp0', 'dump'])).stdout);
    assert.equal(dev.publicKey, laptop.pub);
    assert.deepEqual(
      dev.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIPs, p.persistentKeepalive, p.hasPresharedKey]).sort(),
      [
        [
          a.pub,
          '198.51.100.11:51820',
          ['10.96.0.0/12', '10.244.1.0/24', '100.64.100.11/32', 'fd00:64::c633:640b/128'],
          25,
          true,
        ],
        [
          b.pub,
          '198.51.100.12:51820',
          ['10.244.2.0/24', '100.64.100.12/32', 'fd00:10:244:2::/64', 'fd00:64::c633:640c/128'],
          25,
          true,
        ],
      ].sort(),
    );
    const show = parseWgQuick((await wgnode.exec('wg', ['showconf', 'wgp0'])).stdout);
    assert.equal(show.peers[0]?.presharedKey, psk);
  });

  it('showconf node: `wg setconf` accepts it, and it holds no private key', async () => {
    const r = await cli(['showconf', 'node', 'node-b', '--config', conf]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /PrivateKey/);
    await wgnode.exec('wireguard-go', ['wgn0']);
    await wgnode.writeFile('/run/node.conf', r.stdout, 0o600);
    await wgnode.exec('wg', ['setconf', 'wgn0', '/run/node.conf']);
    const dev = parseDump('wgn0', (await wgnode.exec('wg', ['show', 'wgn0', 'dump'])).stdout);
    assert.equal(dev.listenPort, 51820);
    assert.deepEqual(
      dev.peers.map((p) => [p.publicKey, p.endpoint ?? null, p.allowedIPs]).sort(),
      [
        [a.pub, '198.51.100.11:51820', ['10.244.1.0/24', '100.64.100.11/32', 'fd00:64::c633:640b/128']],
        [laptop.pub, null, ['10.5.0.2/32']],
      ].sort(),
    );
  });

  it('showconf peer --wg-quick: with the private key filled in, `wg-quick strip` reads it', async () => {
    const r = await cli([
      'showconf',
      'peer',
      'laptop',
      '--wg-quick',
      '--allowed-ips',
      '10.97.0.0/16',
      '--via',
      'node-b',
      '--config',
      conf,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\[Interface\]\nAddress = 10\.5\.0\.2\/32\nPrivateKey = REPLACE_WITH_THE_PRIVATE_KEY\n/);
    await wgnode.writeFile(
      '/etc/wireguard/laptop.conf',
      r.stdout.replace('REPLACE_WITH_THE_PRIVATE_KEY', laptop.priv),
      0o600,
    );
    const strip = await wgnode.exec('wg-quick', ['strip', 'laptop']);
    const cfg = parseWgQuick(strip.stdout);
    assert.equal(cfg.iface.privateKey, laptop.priv);
    assert.deepEqual(
      cfg.peers.map((p) => p.allowedIPs),
      [
        ['10.244.1.0/24', '100.64.100.11/32', 'fd00:64::c633:640b/128'],
        [
          '10.244.2.0/24',
          '100.64.100.12/32',
          'fd00:10:244:2::/64',
          'fd00:64::c633:640c/128',
          '10.96.0.0/12',
          '10.97.0.0/16',
        ],
      ],
    );
    // Unfilled, wg-quick refuses it instead of bringing up an interface with a bogus key.
    await wgnode.writeFile('/etc/wireguard/unfilled.conf', r.stdout, 0o600);
    const bad = await wgnode.exec('wg-quick', ['strip', 'unfilled'], { allowFailure: true });
    const setconf = await wgnode.sh(
      'wg-quick strip unfilled > /run/unfilled.conf && wireguard-go wgu0 && wg setconf wgu0 /run/unfilled.conf',
      { allowFailure: true },
    );
    assert.ok(bad.exitCode !== 0 || setconf.exitCode !== 0, 'a placeholder key is rejected by the tools');
  });

  it('showconf peer of an invalid Peer fails with its reason; of a missing one, says so', async () => {
    const r = await cli(['showconf', 'peer', 'my-device', '--config', conf]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^wg-overlay showconf: Peer my-device is skipped by every node: invalid public key "YOUR_PUBLIC_KEY_HERE"/,
    );
    const missing = await cli(['showconf', 'peer', 'nobody', '--config', conf]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /Peer nobody does not exist/);
  });

  it('without the Peer CRD: showconf peer says how to install it; showconf node and graph still work', async () => {
    const r = await cli(['showconf', 'peer', 'laptop', '--config', bareConf]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /the Peer resource \(kilo\.squat\.ai\/v1alpha1\) is not installed in the cluster: kubectl apply -f \S+\/crd-peer\.yaml/,
    );
    assert.equal((await cli(['showconf', 'node', 'node-a', '--config', bareConf])).code, 0);
    assert.equal((await cli(['graph', '--config', bareConf])).code, 0);
  });

  it('usage and config errors exit 2 and 78', async () => {
    const usage = await cli(['showconf', 'pear', 'x', '--config', conf]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /expected "peer NAME" or "node NAME"/);
    assert.equal((await cli(['showconf', 'peer', 'laptop', '--bogus', '--config', conf])).code, 2);
    assert.equal((await cli(['graph', '--stale', 'soon', '--config', conf])).code, 2);
    const missing = await cli(['graph', '--config', join(dir, 'nope.conf')]);
    assert.equal(missing.code, 78);
    assert.match(missing.stderr, /nope\.conf: does not exist/);
  });

  it('graph: Graphviz `dot -Tsvg` renders it, with every node, the Peer and the skipped Peer', async () => {
    const r = await cli(['graph', '--config', conf]);
    assert.equal(r.code, 0, r.stderr);
    await writeFile(join(dir, 'mesh.dot'), r.stdout);
    const svg = await run('dot', ['-Tsvg', join(dir, 'mesh.dot')]);
    assert.equal(svg.stderr.trim(), '', 'dot reports no warnings');
    assert.match(svg.stdout, /^<\?xml[\s\S]*<svg [\s\S]*<\/svg>\s*$/);
    const shown = svg.stdout.replace(/&#45;/g, '-').replace(/&quot;/g, '"');
    for (const text of [
      'node-a',
      'node-b',
      'laptop',
      '10.244.2.0/24',
      '100.64.100.11',
      'my-device',
      'skipped: invalid public key',
    ]) {
      assert.ok(shown.includes(`>${text}`), `the SVG shows ${text}`);
    }
    assert.equal((svg.stdout.match(/class="edge"/g) ?? []).length, 3, 'one node link and two Peer links');
  });

  it('graph on a node marks its stale links (here: no handshake yet)', async () => {
    // Run the CLI inside the test node, as node-a, with an interface holding node-a's peers.
    await wgnode.exec('mkdir', ['-p', '/etc/wg-overlay']);
    await wgnode.writeFile('/etc/wg-overlay/kubeconfig', JSON.stringify(server.kubeconfig()), 0o600);
    await wgnode.writeFile(
      '/etc/wg-overlay/wg-overlay.conf',
      '[kubernetes]\nkubeconfig = /etc/wg-overlay/kubeconfig\nnode_name = node-a\n[wireguard]\ninterface = wga0\n',
    );
    await wgnode.exec('ip', ['link', 'del', 'wgn0']); // frees port 51820
    await wgnode.exec('wireguard-go', ['wga0']);
    await wgnode.sh(
      `node ${CLI} showconf node node-a --config /etc/wg-overlay/wg-overlay.conf > /run/a.conf && wg setconf wga0 /run/a.conf`,
    );
    const r = await wgnode.exec('node', [CLI, 'graph', '--config', '/etc/wg-overlay/wg-overlay.conf']);
    assert.match(
      r.stdout,
      /"node\/node-a" -- "node\/node-b" \[color=red, fontcolor=red, label="stale: no handshake"\];/,
    );
    assert.match(
      r.stdout,
      /"node\/node-a" -- "peer\/laptop" \[style=dashed, color=red, fontcolor=red, label="stale: no handshake"\];/,
    );
    const svg = await run('dot', ['-Tsvg'], { input: r.stdout });
    assert.match(svg.stdout, /stale: no handshake/);
  });

  it('status: says clearly when the interface is missing (exit 1), also with --json', async () => {
    await wgnode.writeFile(
      '/etc/wg-overlay/wg-overlay.conf',
      '[kubernetes]\nkubeconfig = /etc/wg-overlay/kubeconfig\nnode_name = node-a\n[wireguard]\ninterface = wg9\n',
    );
    const r = await wgnode.exec('node', [CLI, 'status', '--config', '/etc/wg-overlay/wg-overlay.conf'], {
      allowFailure: true,
    });
    assert.equal(r.exitCode, 1);
    assert.match(r.stdout, /^wg-overlay on node-a: no status from the daemon in \/run\/wg-overlay\/status\.json/);
    assert.match(r.stdout, /\ninterface wg9: MISSING - it does not exist on this node/);
    const j = await wgnode.exec('node', [CLI, 'status', '--json', '--config', '/etc/wg-overlay/wg-overlay.conf'], {
      allowFailure: true,
    });
    assert.equal(j.exitCode, 1);
    const view = JSON.parse(j.stdout) as { interface: { name: string; exists: boolean }; daemon: { found: boolean } };
    assert.deepEqual([view.interface.name, view.interface.exists, view.daemon.found], ['wg9', false, false]);
  });
});
