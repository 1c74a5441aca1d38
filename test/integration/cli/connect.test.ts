/**
 * `wg-overlay connect` refusing as a real process, in a network namespace against the Kubernetes
 * API test server, before it touches the network: the Peer CRD not installed, a kubeconfig user
 * without the RBAC verbs (the verb and connect-rbac.yaml named), a name held by another key, no
 * route to any node, a missing kubeconfig and a bad option — each with its exit status, and with
 * no Peer and no interface left behind.
 */
import assert from 'node:assert/strict';
import { KILO_PEER_RESOURCE, KubeApiServer, type KubeObject } from '../../kube-api/server.js';
import { BUNDLE } from '../../support/cluster/workstation.js';
import { publishedNode } from '../../support/fakes/fixtures.js';
import { TestNode } from '../../support/namespaces/netns.js';
import { Underlay } from '../../support/namespaces/underlay.js';
import { requireTools } from '../../support/process.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';

/** Text as a literal part of a regular expression. */
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** A pattern of these texts, literally and one after the other; a RegExp among them stands for what varies. */
const texts = (...parts: Array<string | RegExp>): RegExp =>
  new RegExp(parts.map((x) => (typeof x === 'string' ? esc(x) : x.source)).join(''));

const KUBECONFIG = '/etc/wg-overlay-connect/kubeconfig';
const BASE = ['connect', '--kubeconfig', KUBECONFIG, '--private-key', '/etc/wg-overlay-connect/k', '--name', 'ws'];

/** A Node as a running daemon publishes it: a fresh key and its InternalIP. */
const node = (name: string, ip: string, pod: string, minute: number): KubeObject =>
  publishedNode(name, { ip, pods: [pod], key: publicKeyFromPrivate(generatePrivateKey()), minute });

describe('integration: wg-overlay connect refuses with what to do', function () {
  this.timeout(120_000);
  let underlay: Underlay;
  let api: KubeApiServer;
  let ws: TestNode;

  /** Runs connect in the workstation; asserts it left no Peer and no interface behind. */
  const connect = async (args: string[] = []): Promise<{ code: number | undefined; stderr: string }> => {
    const r = await ws.exec('node', [BUNDLE, ...BASE, ...args], { allowFailure: true, timeoutMs: 30_000 });
    const links = await ws.exec('ip', ['-o', 'link', 'show']);
    assert.doesNotMatch(links.stdout, /wgo0/, 'no interface left behind');
    assert.equal(peerNamed('ws'), undefined, 'no Peer left behind');
    return { code: r.exitCode, stderr: r.stderr };
  };
  const peerNamed = (name: string): { spec?: { publicKey?: string } } | undefined => {
    try {
      return api.resource('peers', KILO_PEER_RESOURCE.group).get(name) as { spec?: { publicKey?: string } } | undefined;
    } catch {
      return undefined;
    }
  };

  before(async () => {
    await requireTools(['ip', 'nsenter', 'unshare']);
    underlay = await Underlay.create({ hostAddress: true });
    api = new KubeApiServer({ tls: true, token: 'admin', host: underlay.hostAddress!, port: 0 });
    await api.start();
    ws = await TestNode.create({ label: 'workstation' });
    await underlay.attach(ws);
    await ws.exec('mkdir', ['-p', '/etc/wg-overlay-connect']);
    await ws.writeFile(KUBECONFIG, JSON.stringify(api.kubeconfig({ user: 'alice' })), 0o600);
    const net = underlay.subnet!.replace(/\.0\/24$/, '');
    api.createNode(node('node-a', `${net}.21`, '10.244.1.0/24', 1));
    api.createNode(node('node-b', `${net}.22`, '10.244.2.0/24', 2));
  });

  after(async () => {
    await ws?.destroy();
    await api?.stop();
    await underlay?.destroy();
  });

  it('the Peer CRD is not installed: exit 1, and how to install it', async () => {
    const r = await connect();
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      texts(
        'wg-overlay connect: the Peer resource (kilo.squat.ai/v1alpha1) is not installed in the cluster, so nodes cannot ',
        'add this host: kubectl apply -f /usr/share/wg-overlay/kubernetes/crd-peer.yaml',
      ),
    );
    api.registerResource(KILO_PEER_RESOURCE);
  });

  it('no RBAC verb to create Peers (or to list Nodes): exit 1, the verb and connect-rbac.yaml named', async () => {
    api.failNext(1, 403, {
      match: (q) => q.method === 'POST' && q.path.endsWith('/peers'),
      message:
        'peers.kilo.squat.ai is forbidden: User "alice" cannot create resource "peers" in API group "kilo.squat.ai" at the cluster scope',
    });
    let r = await connect();
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      texts(
        'wg-overlay connect: creating Peer ws: forbidden (HTTP 403: peers.kilo.squat.ai is forbidden: User "alice" cannot ',
        'create resource "peers" in API group "kilo.squat.ai" at the cluster scope): the kubeconfig\'s user lacks the RBAC ',
        'verb "create" on peers.kilo.squat.ai; grant what connect needs with /usr/share/wg-overlay/kubernetes/connect-rbac.yaml',
      ),
    );
    api.failNext(1, 403, {
      match: (q) => q.method === 'GET' && q.path === '/api/v1/nodes',
      message: 'nodes is forbidden',
    });
    r = await connect();
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      texts(
        'listing Nodes from https://',
        /[^:]+:\d+/,
        ': HTTP 403: nodes is forbidden: the kubeconfig\'s user lacks the RBAC verb "list" on nodes; grant what connect ',
        'needs with /usr/share/wg-overlay/kubernetes/connect-rbac.yaml',
      ),
    );
  });

  it('the name is held by another key: exit 1, and what to do', async () => {
    const other = publicKeyFromPrivate(generatePrivateKey());
    api.resource('peers', KILO_PEER_RESOURCE.group).create({
      apiVersion: 'kilo.squat.ai/v1alpha1',
      kind: 'Peer',
      metadata: { name: 'ws' },
      spec: { allowedIPs: ['10.5.0.9/32'], publicKey: other },
    });
    const r = await ws.exec('node', [BUNDLE, ...BASE], { allowFailure: true, timeoutMs: 30_000 });
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(
      r.stderr,
      texts(
        `the name ws is taken: Peer ws exists with another public key (${other}, created `,
        /[^)]+/,
        '); choose another name with --name',
      ),
    );
    assert.equal(peerNamed('ws')?.spec?.publicKey, other, 'left as it was');
    api.resource('peers', KILO_PEER_RESOURCE.group).delete('ws');
  });

  it('no route to any node: exit 1, every address tried', async () => {
    for (const [n, ip] of [
      ['node-a', '203.0.113.21'],
      ['node-b', '203.0.113.22'],
    ] as const)
      api.patchNode(n, { status: { addresses: [{ type: 'InternalIP', address: ip }] } });
    const r = await connect();
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      texts(
        "wg-overlay connect: no route to any node: this host has no route to any of the 2 nodes' endpoints: ",
        '203.0.113.21 (Network is unreachable), 203.0.113.22 (Network is unreachable); connect from a host that reaches the nodes',
      ),
    );
  });

  it('no kubeconfig: exit 78; a bad option: exit 2 with the usage', async () => {
    let r = await ws.exec('node', [BUNDLE, 'connect', '--kubeconfig', '/nowhere', '--name', 'ws'], {
      allowFailure: true,
    });
    assert.equal(r.exitCode, 78);
    assert.match(
      r.stderr,
      /^wg-overlay connect: kubeconfig \/nowhere does not exist: name one with --kubeconfig FILE/m,
    );
    r = await ws.exec('node', [BUNDLE, ...BASE, '--address', '10.255.0.0/24'], { allowFailure: true });
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /--address 10\.255\.0\.0\/24: give this host's one address/);
    assert.match(r.stderr, /Usage: wg-overlay connect/);
  });
});
