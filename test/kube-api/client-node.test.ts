/*
 * Integration tests of the test Kubernetes API server with the real @kubernetes/client-node
 * 1.4 client over HTTPS: selectors, informers (including relist after 410 Expired), patches,
 * optimistic concurrency, the status subresource, authentication and fault injection.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { KubeApiServer, type KubeObject } from './server.js';
import { statusOf, until, type StatusReply } from './testing.js';

const TOKEN = 'client-node-test-token';

function node(name: string, labels: Record<string, string> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels } };
}

/** The JSON form of a client-node model object (its classes are not plain objects). */
function plain<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function statusCode(err: unknown): number | undefined {
  if (err instanceof k8s.ApiException) return err.code as number;
  return undefined;
}

async function rejectsWith(p: Promise<unknown>, code: number): Promise<StatusReply> {
  try {
    await p;
  } catch (err) {
    assert.equal(statusCode(err), code, `expected ApiException ${code}, got ${String(err)}`);
    return err instanceof k8s.ApiException ? statusOf(err.body) : {};
  }
  assert.fail(`expected ApiException ${code}, but the call succeeded`);
}

describe('kube-api: client-node', function () {
  this.timeout(20000);
  let server: KubeApiServer;
  let dir: string;
  let kc: k8s.KubeConfig;
  let core: k8s.CoreV1Api;
  const informers: Array<k8s.Informer<k8s.V1Node>> = [];
  let restartAllowed = true;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kube-api-cn-'));
    server = new KubeApiServer({ token: TOKEN });
    await server.start();
    await server.writeKubeconfig(join(dir, 'kubeconfig'));
    kc = new k8s.KubeConfig();
    kc.loadFromFile(join(dir, 'kubeconfig'));
    core = kc.makeApiClient(k8s.CoreV1Api);
  });

  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    restartAllowed = true;
    for (const n of server.listNodes()) server.deleteNode(n.metadata?.name as string);
  });

  afterEach(async () => {
    restartAllowed = false;
    for (const inf of informers.splice(0)) await inf.stop();
    server.setWatchEnabled(true);
  });

  function informer(labelSelector?: string): k8s.Informer<k8s.V1Node> & k8s.ObjectCache<k8s.V1Node> {
    const inf = k8s.makeInformer(
      kc,
      '/api/v1/nodes',
      () => core.listNode(labelSelector ? { labelSelector } : {}),
      labelSelector,
    );
    informers.push(inf);
    return inf;
  }

  /** Logs an informer's add and delete events, as `add <name>` and `delete <name>`. */
  function logAddsAndDeletes(inf: k8s.Informer<k8s.V1Node>): string[] {
    const events: string[] = [];
    inf.on('add', (n) => events.push(`add ${n.metadata?.name}`));
    inf.on('delete', (n) => events.push(`delete ${n.metadata?.name}`));
    return events;
  }

  it('serves over HTTPS with the generated CA, and only with it', async () => {
    assert.match(server.url ?? '', /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(server.caPem ?? '', /BEGIN CERTIFICATE/);
    const nodes = await core.listNode();
    assert.equal(nodes.kind, 'NodeList');
    const noCa = new k8s.KubeConfig();
    noCa.loadFromOptions({
      clusters: [{ name: 'c', server: server.url as string, skipTLSVerify: false }],
      users: [{ name: 'u', token: TOKEN }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await assert.rejects(noCa.makeApiClient(k8s.CoreV1Api).listNode(), /self[- ]signed|certificate/i);
  });

  it('answers 401 Unauthorized with a Status for a wrong or missing bearer token', async () => {
    for (const token of ['wrong-token', undefined]) {
      const bad = new k8s.KubeConfig();
      bad.loadFromOptions({
        clusters: [
          { name: 'c', server: server.url as string, caData: Buffer.from(server.caPem as string).toString('base64') },
        ],
        users: [token ? { name: 'u', token } : { name: 'u' }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      await rejectsWith(bad.makeApiClient(k8s.CoreV1Api).listNode(), 401);
    }
  });

  it('lists nodes with label and field selectors and a resourceVersion', async () => {
    server.createNode(node('n1', { role: 'gw', zone: 'a' }));
    server.createNode(node('n2', { role: 'edge', zone: 'b' }));
    server.createNode(node('n3', { zone: 'a' }));
    const names = async (opts: { labelSelector?: string; fieldSelector?: string }) =>
      (await core.listNode(opts)).items.map((n) => n.metadata?.name);
    assert.deepEqual(await names({}), ['n1', 'n2', 'n3']);
    assert.deepEqual(await names({ labelSelector: 'role=gw' }), ['n1']);
    assert.deepEqual(await names({ labelSelector: 'role==edge' }), ['n2']);
    assert.deepEqual(await names({ labelSelector: 'role!=gw' }), ['n2', 'n3']);
    assert.deepEqual(await names({ labelSelector: 'role in (gw,edge)' }), ['n1', 'n2']);
    assert.deepEqual(await names({ labelSelector: 'role notin (gw)' }), ['n2', 'n3']);
    assert.deepEqual(await names({ labelSelector: 'role' }), ['n1', 'n2']);
    assert.deepEqual(await names({ labelSelector: '!role' }), ['n3']);
    assert.deepEqual(await names({ labelSelector: 'zone=a,role' }), ['n1']);
    assert.deepEqual(await names({ fieldSelector: 'metadata.name=n2' }), ['n2']);
    assert.deepEqual(await names({ fieldSelector: 'metadata.name!=n2' }), ['n1', 'n3']);
    assert.deepEqual(await names({ labelSelector: 'zone=a', fieldSelector: 'metadata.name!=n1' }), ['n3']);
    const list = await core.listNode();
    assert.equal(list.metadata?.resourceVersion, server.resourceVersion);
    assert.ok(Number(list.metadata?.resourceVersion) > 1);
    const first = list.items[0] as k8s.V1Node;
    assert.match(first.metadata?.uid ?? '', /^[0-9a-f-]{36}$/);
    assert.ok(first.metadata?.creationTimestamp instanceof Date);
    const bad = await rejectsWith(core.listNode({ fieldSelector: 'spec.nope=1' }), 400);
    assert.equal(bad.reason, 'BadRequest');
  });

  it('pages a list with limit and continue', async () => {
    for (const n of ['p1', 'p2', 'p3', 'p4', 'p5']) server.createNode(node(n));
    const page1 = await core.listNode({ limit: 2 });
    assert.deepEqual(
      page1.items.map((n) => n.metadata?.name),
      ['p1', 'p2'],
    );
    assert.equal(page1.metadata?.remainingItemCount, 3);
    server.createNode(node('p0'));
    const page2 = await core.listNode({ limit: 2, _continue: page1.metadata?._continue as string });
    assert.deepEqual(
      page2.items.map((n) => n.metadata?.name),
      ['p3', 'p4'],
      'continuation is a consistent snapshot',
    );
    const page3 = await core.listNode({ limit: 2, _continue: page2.metadata?._continue as string });
    assert.deepEqual(
      page3.items.map((n) => n.metadata?.name),
      ['p5'],
    );
    assert.equal(page3.metadata?._continue, undefined);
    server.expireHistory();
    await rejectsWith(core.listNode({ limit: 2, _continue: page1.metadata?._continue as string }), 410);
  });

  it('informer reports add, update and delete', async () => {
    server.createNode(node('before'));
    const inf = informer();
    const events: string[] = [];
    inf.on('add', (n) => events.push(`add ${n.metadata?.name}`));
    inf.on('update', (n) => events.push(`update ${n.metadata?.name} ${n.metadata?.annotations?.a ?? ''}`));
    inf.on('delete', (n) => events.push(`delete ${n.metadata?.name}`));
    inf.on('error', (e) => events.push(`error ${String(e)}`));
    await inf.start();
    await until(() => server.watchCount === 1, 'the informer watch');
    assert.deepEqual(events, ['add before']);
    server.createNode(node('after'));
    server.patchNode('after', { metadata: { annotations: { a: 'x' } } });
    server.deleteNode('before');
    await until(() => events.length === 4, 'four events');
    assert.deepEqual(events, ['add before', 'add after', 'update after x', 'delete before']);
    assert.deepEqual(
      inf.list().map((n) => n.metadata?.name),
      ['after'],
    );
    assert.equal(inf.get('after')?.metadata?.annotations?.a, 'x');
  });

  it('informer with a label selector sees nodes enter and leave the selection', async () => {
    server.createNode(node('sel-1', { wg: 'yes' }));
    server.createNode(node('sel-2'));
    const inf = informer('wg=yes');
    const events = logAddsAndDeletes(inf);
    await inf.start();
    await until(() => server.watchCount === 1, 'the informer watch');
    server.patchNode('sel-2', { metadata: { labels: { wg: 'yes' } } });
    server.patchNode('sel-1', { metadata: { labels: { wg: null } } });
    await until(() => events.length === 3, 'three events');
    assert.deepEqual(events, ['add sel-1', 'add sel-2', 'delete sel-1']);
  });

  it('merge-patches annotations on a Node', async () => {
    server.createNode({ metadata: { name: 'm1', annotations: { keep: 'me', drop: 'me' } } });
    const patched = await core.patchNode(
      { name: 'm1', body: { metadata: { annotations: { 'wg-overlay/public-key': 'abc=', drop: null } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    assert.deepEqual(patched.metadata?.annotations, { keep: 'me', 'wg-overlay/public-key': 'abc=' });
    assert.deepEqual(server.getNode('m1')?.metadata?.annotations, { keep: 'me', 'wg-overlay/public-key': 'abc=' });
    const rv = server.getNode('m1')?.metadata?.resourceVersion;
    const again = await core.patchNode(
      { name: 'm1', body: { metadata: { annotations: { keep: 'me' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    assert.equal(again.metadata?.resourceVersion, rv, 'a no-op patch does not bump the resourceVersion');
    assert.equal(server.resourceVersion, rv);
  });

  it('applies JSON patches (the client default) and rejects a failing test op with 422', async () => {
    server.createNode(node('j1', { a: '1' }));
    const out = await core.patchNode({
      name: 'j1',
      body: [
        { op: 'test', path: '/metadata/labels/a', value: '1' },
        { op: 'add', path: '/metadata/labels/b', value: '2' },
        { op: 'remove', path: '/metadata/labels/a' },
      ],
    });
    assert.deepEqual(out.metadata?.labels, { b: '2' });
    const st = await rejectsWith(
      core.patchNode({ name: 'j1', body: [{ op: 'test', path: '/metadata/labels/b', value: 'nope' }] }),
      422,
    );
    assert.equal(st.kind, 'Status');
    assert.equal(server.getNode('j1')?.metadata?.labels?.b, '2');
  });

  it('rejects an update with a stale resourceVersion with 409 Conflict', async () => {
    server.createNode(node('c1'));
    const read = await core.readNode({ name: 'c1' });
    server.patchNode('c1', { metadata: { labels: { changed: 'yes' } } });
    read.metadata = { ...read.metadata, labels: { mine: 'yes' } };
    const st = await rejectsWith(core.replaceNode({ name: 'c1', body: read }), 409);
    assert.equal(st.reason, 'Conflict');
    assert.match(String(st.message), /the object has been modified/);
    const fresh = await core.readNode({ name: 'c1' });
    fresh.metadata = { ...fresh.metadata, labels: { mine: 'yes' } };
    const ok = await core.replaceNode({ name: 'c1', body: fresh });
    assert.deepEqual(ok.metadata?.labels, { mine: 'yes' });
    assert.ok(Number(ok.metadata?.resourceVersion) > Number(fresh.metadata?.resourceVersion));
  });

  it('answers create of an existing node with 409 AlreadyExists and get of a missing one with 404', async () => {
    await core.createNode({ body: { metadata: { name: 'dup' } } });
    const st = await rejectsWith(core.createNode({ body: { metadata: { name: 'dup' } } }), 409);
    assert.equal(st.reason, 'AlreadyExists');
    const nf = await rejectsWith(core.readNode({ name: 'missing' }), 404);
    assert.equal(nf.reason, 'NotFound');
    assert.deepEqual(nf.details, { name: 'missing', kind: 'nodes' });
    await core.deleteNode({ name: 'dup' });
    await rejectsWith(core.deleteNode({ name: 'dup' }), 404);
  });

  it('keeps status behind the status subresource', async () => {
    server.createNode(node('s1'));
    const addresses = [{ type: 'InternalIP', address: '192.0.2.11' }];
    const withStatus = await core.patchNodeStatus(
      { name: 's1', body: { status: { addresses }, metadata: { labels: { ignored: 'yes' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    assert.deepEqual(plain(withStatus.status?.addresses), addresses);
    assert.equal(withStatus.metadata?.labels?.ignored, undefined, 'the status subresource ignores metadata');
    const main = await core.patchNode(
      { name: 's1', body: { status: { addresses: [] }, spec: { podCIDR: '10.1.0.0/24' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    assert.deepEqual(plain(main.status?.addresses), addresses, 'the main resource ignores status');
    assert.equal(main.spec?.podCIDR, '10.1.0.0/24');
    const strategic = await core.patchNodeStatus(
      { name: 's1', body: { status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.5' }] } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
    );
    assert.deepEqual(
      plain(strategic.status?.addresses),
      [...addresses, { type: 'ExternalIP', address: '203.0.113.5' }],
      'addresses merge by type',
    );
    const read = await core.readNodeStatus({ name: 's1' });
    assert.equal(read.status?.addresses?.length, 2);
  });

  it('informer relists after the history expired and the watch ended (ERROR 410 event)', async () => {
    server.createNode(node('old'));
    const inf = informer();
    const events = logAddsAndDeletes(inf);
    const errors: unknown[] = [];
    inf.on('error', (e) => errors.push(e));
    await inf.start();
    await until(() => server.watchCount === 1, 'the informer watch');
    const rvBefore = server.resourceVersion;
    const listsBefore = server.requests.filter((r) => r.path === '/api/v1/nodes' && !r.query.includes('watch')).length;
    // All in one tick: the informer cannot see these changes on its (ended) watch.
    assert.equal(server.dropWatches({ graceful: true }), 1);
    server.createNode(node('new'));
    server.deleteNode('old');
    server.expireHistory();
    await until(() => events.includes('add new') && events.includes('delete old'), 'the relist');
    assert.deepEqual(errors, []);
    assert.deepEqual(
      inf.list().map((n) => n.metadata?.name),
      ['new'],
    );
    const listsAfter = server.requests.filter((r) => r.path === '/api/v1/nodes' && !r.query.includes('watch')).length;
    assert.equal(listsAfter, listsBefore + 1, 'exactly one relist');
    const oldRvWatches = server.requests.filter((r) => {
      const q = new URLSearchParams(r.query);
      return q.get('watch') === 'true' && q.get('resourceVersion') === rvBefore;
    });
    assert.equal(oldRvWatches.length, 2, 'the informer re-watched from its old resourceVersion');
    await until(() => server.watchCount === 1, 'the informer to watch again');
    server.createNode(node('newer'));
    await until(() => events.includes('add newer'), 'a live event after the relist');
  });

  it('informer stopped by an abrupt connection drop recovers through 410 and a relist once restarted', async () => {
    server.createNode(node('x1'));
    const inf = informer();
    const events = logAddsAndDeletes(inf);
    const errors: unknown[] = [];
    inf.on('error', (e) => {
      errors.push(e);
      setTimeout(() => {
        if (restartAllowed) void inf.start();
      }, 20);
    });
    await inf.start();
    await until(() => server.watchCount === 1, 'the informer watch');
    server.dropWatches();
    server.createNode(node('x2'));
    server.expireHistory();
    await until(() => events.includes('add x2'), 'the relist after restart');
    assert.ok(errors.length <= 1, `at most the drop itself is an error: ${errors.map(String).join('; ')}`);
    await until(() => server.watchCount === 1, 'the informer to watch again');
  });

  it('watches from a resourceVersion (history replay) and gets ERROR 410 when it expired', async () => {
    server.createNode(node('w1'));
    const rv = server.resourceVersion;
    server.patchNode('w1', { metadata: { labels: { v: '2' } } });
    server.createNode(node('w2'));
    const watch = new k8s.Watch(kc);
    const seen: string[] = [];
    let done: (err: unknown) => void = () => undefined;
    const finished = new Promise((r) => (done = r));
    const ctl = await watch.watch(
      '/api/v1/nodes',
      { resourceVersion: rv },
      (type, obj: k8s.V1Node) => seen.push(`${type} ${obj.metadata?.name}`),
      (e) => done(e),
    );
    await until(() => seen.length === 2, 'two replayed events');
    assert.deepEqual(seen, ['MODIFIED w1', 'ADDED w2']);
    ctl.abort();
    await finished;

    server.expireHistory();
    const statuses: Array<{ type: string; obj: { code?: number; reason?: string } }> = [];
    let done2: (err: unknown) => void = () => undefined;
    const finished2 = new Promise((r) => (done2 = r));
    await watch.watch(
      '/api/v1/nodes',
      { resourceVersion: rv },
      (type, obj: { code?: number; reason?: string }) => statuses.push({ type, obj }),
      (e) => done2(e),
    );
    assert.equal(await finished2, null, 'the server ends the stream after the ERROR event');
    assert.deepEqual(
      statuses.map((s) => [s.type, s.obj.code, s.obj.reason]),
      [['ERROR', 410, 'Expired']],
    );
  });

  it('honours timeoutSeconds on a watch', async () => {
    const watch = new k8s.Watch(kc);
    const t0 = Date.now();
    let done: (err: unknown) => void = () => undefined;
    const finished = new Promise((r) => (done = r));
    await watch.watch(
      '/api/v1/nodes',
      { timeoutSeconds: 1 },
      () => undefined,
      (e) => done(e),
    );
    assert.equal(await finished, null);
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 3000, `closed after ${took} ms`);
  });

  it('fails on demand: failNext with a Status, and 405 for watches while disabled', async () => {
    server.failNext(2, 503, { match: (r) => r.method === 'GET' });
    const st = await rejectsWith(core.listNode(), 503);
    assert.deepEqual([st.kind, st.status, st.reason, st.code], ['Status', 'Failure', 'ServiceUnavailable', 503]);
    await rejectsWith(core.readNode({ name: 'anything' }), 503);
    assert.equal((await core.listNode()).kind, 'NodeList', 'only two requests failed');

    server.setWatchEnabled(false);
    const inf = informer();
    const errors: Array<{ statusCode?: number }> = [];
    inf.on('error', (e: { statusCode?: number }) => errors.push(e));
    await inf.start();
    await until(() => errors.length === 1, 'the informer error');
    assert.equal(errors[0]?.statusCode, 405);
  });
});
