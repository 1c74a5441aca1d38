/*
 * Integration tests of the test Kubernetes API server with the real kubectl (an independent
 * Go client) over HTTPS with a bearer token: discovery, server-side Tables, get -o json,
 * annotate, the three patch types, watch, create, delete and Status error messages.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { KubeApiServer } from './server.js';
import { kubectl, kubectlOk, spawnKubectl, type KubectlEnv, type KubectlProcess } from './kubectl.js';

describe('kube-api: kubectl', function () {
  this.timeout(30000);
  let server: KubeApiServer;
  let dir: string;
  let env: KubectlEnv;
  let core: k8s.CoreV1Api;
  const children: KubectlProcess[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kube-api-kubectl-'));
    server = new KubeApiServer({ token: 'kubectl-test-token' });
    await server.start();
    env = { kubeconfig: join(dir, 'kubeconfig'), cacheDir: join(dir, 'cache') };
    await server.writeKubeconfig(env.kubeconfig);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(env.kubeconfig);
    core = kc.makeApiClient(k8s.CoreV1Api);
    server.createNode({
      metadata: { name: 'alpha', labels: { 'node-role.kubernetes.io/control-plane': '', zone: 'a' } },
      status: {
        addresses: [{ type: 'InternalIP', address: '192.0.2.10' }],
        conditions: [{ type: 'Ready', status: 'True' }],
        nodeInfo: { kubeletVersion: 'v1.32.0' },
      },
    });
    server.createNode({ metadata: { name: 'beta', labels: { zone: 'b' } } });
  });

  afterEach(async () => {
    for (const c of children.splice(0)) await c.stop();
  });

  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function lastRequest(method: string, path: string) {
    const rs = server.requests.filter((r) => r.method === method && r.path === path);
    return rs[rs.length - 1];
  }

  it('kubectl get nodes prints the node names from a server-side Table', async () => {
    const out = await kubectlOk(env, ['get', 'nodes']);
    const lines = out.trim().split('\n');
    assert.match(lines[0] as string, /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION$/);
    assert.match(lines[1] as string, /^alpha\s+Ready\s+control-plane\s+\d+s\s+v1\.32\.0$/);
    assert.match(lines[2] as string, /^beta\s+Unknown\s+<none>\s+\d+s\s*$/);
    assert.match(lastRequest('GET', '/api/v1/nodes')?.accept ?? '', /as=Table/);
    const wide = await kubectlOk(env, ['get', 'nodes', '-o', 'wide']);
    assert.match(wide, /alpha\s+Ready.*192\.0\.2\.10/);
    assert.equal(await kubectlOk(env, ['get', 'no', '-o', 'name']), 'node/alpha\nnode/beta\n');
  });

  it('kubectl get nodes prints the names from plain JSON when the server sends no Table', async () => {
    const plain = new KubeApiServer({ token: 'plain-token', tables: false });
    try {
      await plain.start();
      plain.createNode({ metadata: { name: 'no-table' } });
      const penv = { kubeconfig: join(dir, 'plain-kubeconfig'), cacheDir: join(dir, 'plain-cache') };
      await plain.writeKubeconfig(penv.kubeconfig);
      const out = await kubectlOk(penv, ['get', 'nodes']);
      assert.match(out, /^NAME\s+AGE\nno-table\s+\d+s\n$/);
    } finally {
      await plain.stop();
    }
  });

  it('kubectl get nodes with label and field selectors', async () => {
    assert.equal(await kubectlOk(env, ['get', 'nodes', '-l', 'zone=b', '-o', 'name']), 'node/beta\n');
    assert.equal(
      await kubectlOk(env, ['get', 'nodes', '--field-selector', 'metadata.name!=beta', '-o', 'name']),
      'node/alpha\n',
    );
  });

  it('kubectl get node X -o json prints the stored object', async () => {
    const obj = JSON.parse(await kubectlOk(env, ['get', 'node', 'alpha', '-o', 'json'])) as k8s.V1Node;
    assert.equal(obj.kind, 'Node');
    assert.equal(obj.apiVersion, 'v1');
    assert.equal(obj.metadata?.name, 'alpha');
    assert.equal(obj.metadata?.uid, server.getNode('alpha')?.metadata?.uid);
    assert.equal(obj.metadata?.resourceVersion, server.getNode('alpha')?.metadata?.resourceVersion);
    assert.deepEqual(obj.status?.addresses, [{ type: 'InternalIP', address: '192.0.2.10' }]);
  });

  it('kubectl annotate node sends a merge patch that client-node reads back', async () => {
    await kubectlOk(env, ['annotate', 'node', 'alpha', 'foo=bar']);
    assert.equal(lastRequest('PATCH', '/api/v1/nodes/alpha')?.contentType, 'application/merge-patch+json');
    const n = await core.readNode({ name: 'alpha' });
    assert.equal(n.metadata?.annotations?.foo, 'bar');
    const again = await kubectl(env, ['annotate', 'node', 'alpha', 'foo=baz']);
    assert.notEqual(again.code, 0, 'changing an annotation needs --overwrite');
    await kubectlOk(env, ['annotate', 'node', 'alpha', 'foo=baz', '--overwrite']);
    assert.equal((await core.readNode({ name: 'alpha' })).metadata?.annotations?.foo, 'baz');
    await kubectlOk(env, ['annotate', 'node', 'alpha', 'foo-']);
    assert.equal((await core.readNode({ name: 'alpha' })).metadata?.annotations?.foo, undefined);
  });

  it('kubectl patch node: strategic (default), merge and json', async () => {
    /** Runs `kubectl patch node beta` with these options and checks the Content-Type it sent. */
    const patchBeta = async (options: string[], contentType: string) => {
      await kubectlOk(env, ['patch', 'node', 'beta', ...options]);
      assert.equal(lastRequest('PATCH', '/api/v1/nodes/beta')?.contentType, contentType);
    };
    await patchBeta(
      ['-p', '{"metadata":{"labels":{"strategic":"yes"}},"spec":{"podCIDRs":["10.1.0.0/24"]}}'],
      'application/strategic-merge-patch+json',
    );
    await patchBeta(
      ['--type=merge', '-p', '{"metadata":{"labels":{"merge":"yes","zone":null}}}'],
      'application/merge-patch+json',
    );
    await patchBeta(
      [
        '--type=json',
        '-p',
        '[{"op":"add","path":"/metadata/labels/json","value":"yes"},{"op":"remove","path":"/metadata/labels/strategic"}]',
      ],
      'application/json-patch+json',
    );
    const n = await core.readNode({ name: 'beta' });
    assert.deepEqual(n.metadata?.labels, { merge: 'yes', json: 'yes' });
    assert.deepEqual(n.spec?.podCIDRs, ['10.1.0.0/24']);
    const failed = await kubectl(env, [
      'patch',
      'node',
      'beta',
      '--type=json',
      '-p',
      '[{"op":"test","path":"/metadata/labels/json","value":"no"}]',
    ]);
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /testing value \/metadata\/labels\/json failed/);
    const unchanged = await kubectlOk(env, [
      'patch',
      'node',
      'beta',
      '--type=merge',
      '-p',
      '{"metadata":{"labels":{"json":"yes"}}}',
    ]);
    assert.match(unchanged, /patched \(no change\)/);
  });

  it('kubectl get nodes -w sees a change made by another client', async () => {
    const w = spawnKubectl(env, ['get', 'nodes', '-w']);
    children.push(w);
    await w.waitForLine(/^beta\s/);
    await core.createNode({ body: { metadata: { name: 'gamma' } } });
    await w.waitForLine(/^gamma\s+Unknown/);
    const header = w.lines.filter((l) => l.startsWith('NAME'));
    assert.equal(header.length, 1, 'the header is printed once');
    await core.deleteNode({ name: 'gamma' });
  });

  it('kubectl get nodes -w -o json --output-watch-events prints events', async () => {
    const w = spawnKubectl(env, [
      'get',
      'nodes',
      '-w',
      '--output-watch-events',
      '-o',
      'jsonpath={.type} {.object.metadata.name}{"\\n"}',
    ]);
    children.push(w);
    await w.waitForLine('ADDED beta');
    server.patchNode('beta', { metadata: { labels: { watched: 'yes' } } });
    await w.waitForLine('MODIFIED beta');
  });

  it('kubectl create -f --validate=false and kubectl delete node', async () => {
    const manifest = 'apiVersion: v1\nkind: Node\nmetadata:\n  name: delta\n  labels:\n    created-by: kubectl\n';
    const out = await kubectlOk(env, ['create', '-f', '-', '--validate=false'], { input: manifest });
    assert.equal(out.trim(), 'node/delta created');
    assert.equal(server.getNode('delta')?.metadata?.labels?.['created-by'], 'kubectl');
    const dup = await kubectl(env, ['create', '-f', '-', '--validate=false'], { input: manifest });
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /Error from server \(AlreadyExists\).*nodes "delta" already exists/);
    assert.equal((await kubectlOk(env, ['delete', 'node', 'delta'])).trim(), 'node "delta" deleted');
    assert.equal(server.getNode('delta'), undefined);
  });

  it('kubectl prints the Status of errors: NotFound, Unauthorized', async () => {
    const nf = await kubectl(env, ['get', 'node', 'missing']);
    assert.notEqual(nf.code, 0);
    assert.match(nf.stderr, /Error from server \(NotFound\): nodes "missing" not found/);
    const badKubeconfig = join(dir, 'bad-kubeconfig');
    await server.writeKubeconfig(badKubeconfig, { token: 'wrong' });
    const unauth = await kubectl({ kubeconfig: badKubeconfig, cacheDir: join(dir, 'cache-bad') }, ['get', 'nodes']);
    assert.notEqual(unauth.code, 0);
    assert.match(unauth.stderr, /You must be logged in to the server/);
  });
});
