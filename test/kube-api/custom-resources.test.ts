/*
 * Integration tests of custom resources on the test Kubernetes API server, using Kilo's Peer
 * (kilo.squat.ai/v1alpha1, cluster-scoped) registered with one call: discovery, CRUD and
 * watch through client-node's CustomObjectsApi and informer, and kubectl apply/get/patch/delete.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { KILO_PEER_RESOURCE, KubeApiServer, type KubeObject } from './server.js';
import { kubectl, kubectlOk, type KubectlEnv } from './kubectl.js';

const PEERS = { group: 'kilo.squat.ai', version: 'v1alpha1', plural: 'peers' };

const MANIFEST = `apiVersion: kilo.squat.ai/v1alpha1
kind: Peer
metadata:
  name: squat
spec:
  allowedIPs:
  - 10.5.0.1/32
  publicKey: GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=
  persistentKeepalive: 10
`;

function peer(name: string, ip: string, extra: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: 'kilo.squat.ai/v1alpha1',
    kind: 'Peer',
    metadata: { name, ...extra },
    spec: {
      allowedIPs: [`${ip}/32`],
      publicKey: 'GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=',
      persistentKeepalive: 10,
    },
  };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function apiCode(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    if (err instanceof k8s.ApiException) return err.code as number;
    throw err;
  }
}

describe('kube-api: custom resources (Kilo Peer)', function () {
  this.timeout(30000);
  let server: KubeApiServer;
  let dir: string;
  let env: KubectlEnv;
  let custom: k8s.CustomObjectsApi;
  let kc: k8s.KubeConfig;
  let inf:
    | (k8s.Informer<KubeObject & { metadata: k8s.V1ObjectMeta }> &
        k8s.ObjectCache<KubeObject & { metadata: k8s.V1ObjectMeta }>)
    | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kube-api-crd-'));
    server = new KubeApiServer({ token: 'crd-test-token' });
    server.registerResource(KILO_PEER_RESOURCE);
    await server.start();
    env = { kubeconfig: join(dir, 'kubeconfig'), cacheDir: join(dir, 'cache') };
    await server.writeKubeconfig(env.kubeconfig);
    kc = new k8s.KubeConfig();
    kc.loadFromFile(env.kubeconfig);
    custom = kc.makeApiClient(k8s.CustomObjectsApi);
  });

  afterEach(async () => {
    await inf?.stop();
    inf = undefined;
    for (const p of server.resource('peers', 'kilo.squat.ai').list())
      server.resource('peers', 'kilo.squat.ai').delete(p.metadata?.name as string);
  });

  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves discovery for the group', async () => {
    const apis = await kc.makeApiClient(k8s.ApisApi).getAPIVersions();
    const g = apis.groups.find((x) => x.name === 'kilo.squat.ai');
    assert.equal(g?.preferredVersion?.groupVersion, 'kilo.squat.ai/v1alpha1');
    const out = await kubectlOk(env, ['api-resources', '--api-group=kilo.squat.ai', '--no-headers']);
    assert.match(out, /^peers\s+kilo\.squat\.ai\/v1alpha1\s+false\s+Peer\s*$/m);
  });

  it('CRUD through CustomObjectsApi', async () => {
    const created = (await custom.createClusterCustomObject({ ...PEERS, body: peer('p1', '10.5.0.1') })) as KubeObject;
    assert.equal(created.metadata?.generation, 1);
    assert.ok(created.metadata?.uid);
    assert.equal(await apiCode(custom.createClusterCustomObject({ ...PEERS, body: peer('p1', '10.5.0.1') })), 409);
    const got = (await custom.getClusterCustomObject({ ...PEERS, name: 'p1' })) as KubeObject;
    assert.deepEqual(got.spec, peer('p1', '10.5.0.1').spec);
    await custom.createClusterCustomObject({ ...PEERS, body: peer('p2', '10.5.0.2', { labels: { site: 'b' } }) });
    const list = (await custom.listClusterCustomObject({ ...PEERS })) as {
      kind: string;
      items: KubeObject[];
      metadata: { resourceVersion: string };
    };
    assert.equal(list.kind, 'PeerList');
    assert.deepEqual(
      list.items.map((p) => p.metadata?.name),
      ['p1', 'p2'],
    );
    assert.equal(list.items[0]?.kind, 'Peer', 'custom resource list items carry kind');
    const selected = (await custom.listClusterCustomObject({ ...PEERS, labelSelector: 'site=b' })) as {
      items: KubeObject[];
    };
    assert.deepEqual(
      selected.items.map((p) => p.metadata?.name),
      ['p2'],
    );
    const patched = (await custom.patchClusterCustomObject(
      { ...PEERS, name: 'p1', body: { spec: { persistentKeepalive: 25 } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    )) as KubeObject;
    assert.equal((patched.spec as { persistentKeepalive: number }).persistentKeepalive, 25);
    assert.equal(patched.metadata?.generation, 2, 'spec changes bump generation');
    // Custom resources need metadata.resourceVersion on PUT, and it must be current.
    assert.equal(await apiCode(custom.replaceClusterCustomObject({ ...PEERS, name: 'p1', body: got })), 409);
    const noRv = { ...got, metadata: { ...got.metadata, resourceVersion: undefined } };
    assert.equal(await apiCode(custom.replaceClusterCustomObject({ ...PEERS, name: 'p1', body: noRv })), 422);
    const replaced = (await custom.replaceClusterCustomObject({
      ...PEERS,
      name: 'p1',
      body: { ...got, metadata: patched.metadata },
    })) as KubeObject;
    assert.equal((replaced.spec as { persistentKeepalive: number }).persistentKeepalive, 10);
    assert.equal(
      await apiCode(
        custom.patchClusterCustomObject(
          { ...PEERS, name: 'p1', body: { spec: {} } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
        ),
      ),
      415,
      'strategic merge patch is not supported for custom resources',
    );
    await custom.deleteClusterCustomObject({ ...PEERS, name: 'p1' });
    assert.equal(await apiCode(custom.getClusterCustomObject({ ...PEERS, name: 'p1' })), 404);
  });

  it('informer on /apis/kilo.squat.ai/v1alpha1/peers', async () => {
    server.resource('peers', 'kilo.squat.ai').create(peer('existing', '10.5.0.9'));
    inf = k8s.makeInformer(kc, '/apis/kilo.squat.ai/v1alpha1/peers', () =>
      custom.listClusterCustomObject({ ...PEERS }),
    );
    const events: string[] = [];
    inf.on('add', (p) => events.push(`add ${p.metadata.name}`));
    inf.on('update', (p) => events.push(`update ${p.metadata.name}`));
    inf.on('delete', (p) => events.push(`delete ${p.metadata.name}`));
    await inf.start();
    await until(() => server.watchCount === 1, 'the informer watch');
    await custom.createClusterCustomObject({ ...PEERS, body: peer('fresh', '10.5.0.3') });
    await custom.patchClusterCustomObject(
      { ...PEERS, name: 'fresh', body: { metadata: { annotations: { note: 'x' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await custom.deleteClusterCustomObject({ ...PEERS, name: 'existing' });
    await until(() => events.length === 4, 'four events');
    assert.deepEqual(events, ['add existing', 'add fresh', 'update fresh', 'delete existing']);
  });

  it('kubectl apply (create, then a changed apply), get peers, patch and delete', async () => {
    const file = join(dir, 'peer.yaml');
    await writeFile(file, MANIFEST);
    assert.equal(
      (await kubectlOk(env, ['apply', '-f', file, '--validate=false'])).trim(),
      'peer.kilo.squat.ai/squat created',
    );
    assert.ok(server.requests.some((r) => r.method === 'POST' && r.path === '/apis/kilo.squat.ai/v1alpha1/peers'));
    const stored = (await custom.getClusterCustomObject({ ...PEERS, name: 'squat' })) as KubeObject;
    assert.match(
      stored.metadata?.annotations?.['kubectl.kubernetes.io/last-applied-configuration'] ?? '',
      /"persistentKeepalive":10/,
    );

    assert.equal(
      (await kubectlOk(env, ['apply', '-f', file, '--validate=false'])).trim(),
      'peer.kilo.squat.ai/squat unchanged',
    );
    await writeFile(
      file,
      MANIFEST.replace('persistentKeepalive: 10', 'persistentKeepalive: 25').replace(
        '- 10.5.0.1/32',
        '- 10.5.0.1/32\n  - 10.5.1.0/24',
      ),
    );
    assert.equal(
      (await kubectlOk(env, ['apply', '-f', file, '--validate=false'])).trim(),
      'peer.kilo.squat.ai/squat configured',
    );
    const applyPatch = server.requests
      .filter((r) => r.method === 'PATCH' && r.path === '/apis/kilo.squat.ai/v1alpha1/peers/squat')
      .pop();
    assert.equal(
      applyPatch?.contentType,
      'application/merge-patch+json',
      'client-side apply of a custom resource sends a merge patch',
    );
    const updated = (await custom.getClusterCustomObject({ ...PEERS, name: 'squat' })) as {
      spec: { persistentKeepalive: number; allowedIPs: string[] };
    };
    assert.equal(updated.spec.persistentKeepalive, 25);
    assert.deepEqual(updated.spec.allowedIPs, ['10.5.0.1/32', '10.5.1.0/24']);

    const table = await kubectlOk(env, ['get', 'peers']);
    assert.match(table, /^NAME\s+AGE\n/);
    assert.match(table, /^squat\s+\d+s$/m);
    assert.equal(
      await kubectlOk(env, ['get', 'peer', 'squat', '-o', 'jsonpath={.spec.publicKey}']),
      'GY5aT1N9dTR/nJnT1N2f4ClZWVj0jOAld0r8ysWLyjg=',
    );

    await kubectlOk(env, ['patch', 'peer', 'squat', '--type=merge', '-p', '{"spec":{"persistentKeepalive":5}}']);
    const strategic = await kubectl(env, ['patch', 'peer', 'squat', '-p', '{"spec":{"persistentKeepalive":6}}']);
    assert.notEqual(strategic.code, 0);
    assert.match(strategic.stderr, /application\/strategic-merge-patch\+json is not supported/);
    const after = (await custom.getClusterCustomObject({ ...PEERS, name: 'squat' })) as {
      spec: { persistentKeepalive: number };
    };
    assert.equal(after.spec.persistentKeepalive, 5);

    assert.equal((await kubectlOk(env, ['delete', '-f', file])).trim(), 'peer.kilo.squat.ai "squat" deleted');
    assert.equal(await apiCode(custom.getClusterCustomObject({ ...PEERS, name: 'squat' })), 404);
  });
});
