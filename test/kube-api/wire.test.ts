/*
 * Wire-level integration tests of the test Kubernetes API server with raw HTTP(S) requests:
 * discovery documents, Status bodies, Tables, watch stream semantics (synthetic ADDED,
 * selection changes, bookmarks, no-op writes, history limit), strategic-merge directives,
 * finalizers, dry runs, listen address and plain HTTP, prompt shutdown, and the standalone CLI.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { KubeApiServer, type KubeObject } from './server.js';
import { jsonPatch, mergePatch, strategicMergePatch, NODE_SCHEMA } from './patch.js';
import { failureStatus, until } from './testing.js';

const TOKEN = 'wire-test-token';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown>;
}

function send(
  server: KubeApiServer,
  method: string,
  path: string,
  opts: { body?: unknown; contentType?: string; accept?: string; token?: string | null } = {},
): Promise<Reply> {
  const url = new URL(path, server.url);
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.accept) headers.accept = opts.accept;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] = opts.contentType ?? 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, headers, ca: server.caPem, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface WatchEvent {
  type: string;
  object: KubeObject & { code?: number; reason?: string; rows?: Array<{ cells: unknown[] }> };
}

/** An open raw watch stream collecting its events. */
class RawWatch {
  events: WatchEvent[] = [];
  ended = false;
  status = 0;
  private req?: http.ClientRequest;

  static open(server: KubeApiServer, path: string, accept?: string): Promise<RawWatch> {
    const w = new RawWatch();
    const url = new URL(path, server.url);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
      if (accept) headers.accept = accept;
      w.req = mod.request(url, { headers, ca: server.caPem, agent: false }, (res) => {
        w.status = res.statusCode ?? 0;
        let buf = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          buf += d;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            w.events.push(JSON.parse(buf.slice(0, i)) as WatchEvent);
            buf = buf.slice(i + 1);
          }
        });
        res.on('end', () => (w.ended = true));
        res.on('error', () => (w.ended = true));
        resolve(w);
      });
      w.req.on('error', reject);
      w.req.end();
    });
  }

  summary(): string[] {
    return this.events.map((e) => `${e.type} ${e.object.metadata?.name ?? e.object.code ?? ''}`);
  }

  close(): void {
    this.req?.destroy();
  }
}

describe('kube-api: wire protocol', function () {
  this.timeout(20000);
  let server: KubeApiServer;
  const watches: RawWatch[] = [];
  const extraServers: KubeApiServer[] = [];

  before(async () => {
    server = new KubeApiServer({ token: TOKEN, bookmarkIntervalMs: 100 });
    await server.start();
  });

  beforeEach(() => {
    for (const n of server.listNodes()) server.deleteNode(n.metadata?.name as string);
  });

  afterEach(async () => {
    for (const w of watches.splice(0)) w.close();
    for (const s of extraServers.splice(0)) await s.stop();
  });

  after(async () => {
    await server?.stop();
  });

  async function watch(path: string, accept?: string): Promise<RawWatch> {
    const w = await RawWatch.open(server, path, accept);
    watches.push(w);
    return w;
  }

  it('serves discovery: /version, /api, /api/v1, /apis', async () => {
    const version = await send(server, 'GET', '/version', { token: null });
    assert.equal(version.status, 200, 'version is public');
    assert.equal(version.json.major, '1');
    const api = await send(server, 'GET', '/api');
    assert.deepEqual([api.json.kind, api.json.versions], ['APIVersions', ['v1']]);
    const v1 = await send(server, 'GET', '/api/v1');
    const resources = v1.json.resources as Array<Record<string, unknown>>;
    const nodes = resources.find((r) => r.name === 'nodes');
    assert.deepEqual(nodes?.shortNames, ['no']);
    assert.equal(nodes?.namespaced, false);
    assert.equal(nodes?.kind, 'Node');
    assert.deepEqual(nodes?.verbs, ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']);
    assert.ok(resources.some((r) => r.name === 'nodes/status'));
    const aggregated = [
      'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList',
      'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList',
      'application/json',
    ].join(',');
    const apis = await send(server, 'GET', '/apis', { accept: aggregated });
    assert.equal(apis.headers['content-type'], 'application/json');
    assert.deepEqual(
      [apis.json.kind, (apis.json.groups as Array<{ name: string }>).map((g) => g.name)],
      ['APIGroupList', ['coordination.k8s.io']],
    );
    const anon = await send(server, 'GET', '/api/v1/nodes', { token: null });
    assert.equal(anon.status, 401);
    assert.deepEqual(anon.json, failureStatus(401, 'Unauthorized', 'Unauthorized'));
  });

  it('answers errors with Status objects', async () => {
    const unknown = await send(server, 'GET', '/api/v1/pods');
    assert.equal(unknown.status, 404);
    assert.deepEqual(
      unknown.json,
      failureStatus(404, 'NotFound', 'the server could not find the requested resource', {}),
    );
    const badJson = await send(server, 'POST', '/api/v1/nodes', { body: '{nope' });
    assert.deepEqual([badJson.status, badJson.json.reason], [400, 'BadRequest']);
    const badSelector = await send(server, 'GET', '/api/v1/nodes?labelSelector=' + encodeURIComponent('a in (b'));
    assert.deepEqual([badSelector.status, badSelector.json.reason], [400, 'BadRequest']);
    const withRv = await send(server, 'POST', '/api/v1/nodes', {
      body: { metadata: { name: 'rv', resourceVersion: '5' } },
    });
    assert.deepEqual(
      [withRv.status, withRv.json.message],
      [500, 'resourceVersion should not be set on objects to be created'],
    );
    const badName = await send(server, 'POST', '/api/v1/nodes', { body: { metadata: { name: 'Bad_Name' } } });
    assert.deepEqual([badName.status, badName.json.reason], [422, 'Invalid']);
    const wrongKind = await send(server, 'POST', '/api/v1/nodes', { body: { kind: 'Pod', metadata: { name: 'x' } } });
    assert.equal(wrongKind.status, 400);
    const applyPatch = await send(server, 'PATCH', '/api/v1/nodes/x', {
      body: '{}',
      contentType: 'application/apply-patch+yaml',
    });
    assert.equal(applyPatch.status, 415);
    server.failNext(1, 500, { message: 'etcd is on fire' });
    const injected = await send(server, 'GET', '/api/v1/nodes');
    assert.deepEqual(injected.json, failureStatus(500, 'InternalError', 'etcd is on fire'));
    server.setWatchEnabled(false);
    try {
      const w = await send(server, 'GET', '/api/v1/nodes?watch=1');
      assert.deepEqual([w.status, w.json.reason], [405, 'MethodNotAllowed']);
    } finally {
      server.setWatchEnabled(true);
    }
  });

  it('renders Tables (includeObject) and PartialObjectMetadata lists', async () => {
    server.createNode({ metadata: { name: 't1', labels: { a: 'b' } } });
    const table = await send(server, 'GET', '/api/v1/nodes?includeObject=Object', {
      accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json',
    });
    assert.equal(table.json.kind, 'Table');
    assert.equal(table.json.apiVersion, 'meta.k8s.io/v1');
    const cols = (table.json.columnDefinitions as Array<{ name: string }>).map((c) => c.name);
    assert.deepEqual(cols.slice(0, 5), ['Name', 'Status', 'Roles', 'Age', 'Version']);
    const rows = table.json.rows as Array<{ cells: unknown[]; object: KubeObject }>;
    assert.equal(rows[0]?.cells[0], 't1');
    assert.equal(rows[0]?.object.kind, 'Node');
    const meta = await send(server, 'GET', '/api/v1/nodes/t1', {
      accept: 'application/json;as=Table;v=v1beta1;g=meta.k8s.io',
    });
    const mrows = meta.json.rows as Array<{ object: KubeObject }>;
    assert.equal(mrows[0]?.object.kind, 'PartialObjectMetadata');
    const pom = await send(server, 'GET', '/api/v1/nodes', {
      accept: 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io',
    });
    assert.equal(pom.json.kind, 'PartialObjectMetadataList');
    const list = await send(server, 'GET', '/api/v1/nodes');
    const items = list.json.items as KubeObject[];
    assert.equal(items[0]?.kind, undefined, 'built-in list items carry no kind, like a real apiserver');
  });

  it('watch without resourceVersion starts with synthetic ADDED events, then live ones', async () => {
    server.createNode({ metadata: { name: 'w1' } });
    server.createNode({ metadata: { name: 'w2' } });
    const w = await watch('/api/v1/nodes?watch=true');
    assert.equal(w.status, 200);
    await until(() => w.events.length === 2, 'synthetic events');
    server.patchNode('w1', { metadata: { labels: { x: 'y' } } });
    server.deleteNode('w2');
    await until(() => w.events.length === 4, 'live events');
    assert.deepEqual(w.summary(), ['ADDED w1', 'ADDED w2', 'MODIFIED w1', 'DELETED w2']);
    const rvs = w.events.map((e) => Number(e.object.metadata?.resourceVersion));
    assert.ok(rvs[3]! > rvs[2]! && rvs[2]! > rvs[1]!, 'resourceVersions increase');
    assert.equal(w.events[3]?.object.kind, 'Node');
  });

  it('legacy /watch/ paths and single-object watches', async () => {
    server.createNode({ metadata: { name: 'l1' } });
    server.createNode({ metadata: { name: 'l2' } });
    const legacy = await watch('/api/v1/watch/nodes/l2');
    const byField = await watch('/api/v1/nodes?watch=1&fieldSelector=metadata.name%3Dl1');
    await until(() => legacy.events.length === 1 && byField.events.length === 1, 'initial events');
    server.patchNode('l1', { metadata: { labels: { n: '1' } } });
    server.patchNode('l2', { metadata: { labels: { n: '2' } } });
    await until(() => legacy.events.length === 2 && byField.events.length === 2, 'modifications');
    assert.deepEqual(legacy.summary(), ['ADDED l2', 'MODIFIED l2']);
    assert.deepEqual(byField.summary(), ['ADDED l1', 'MODIFIED l1']);
  });

  it('label-selected watches see objects enter (ADDED) and leave (DELETED) the selection; no-op writes emit nothing', async () => {
    server.createNode({ metadata: { name: 's1', labels: { mesh: 'on' } } });
    const rv = server.resourceVersion;
    const w = await watch(`/api/v1/nodes?watch=1&labelSelector=mesh%3Don&resourceVersion=${rv}`);
    const before = server.getNode('s1')?.metadata?.resourceVersion;
    server.patchNode('s1', { metadata: { labels: { mesh: 'on' } } });
    assert.equal(server.getNode('s1')?.metadata?.resourceVersion, before, 'no-op patch keeps the resourceVersion');
    server.createNode({ metadata: { name: 's2' } });
    server.patchNode('s2', { metadata: { labels: { mesh: 'on' } } });
    server.patchNode('s1', { metadata: { labels: { mesh: 'off' } } });
    await until(() => w.events.length === 2, 'two events');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(w.summary(), ['ADDED s2', 'DELETED s1']);
    const deleted = w.events[1]?.object;
    assert.equal(deleted?.metadata?.labels?.mesh, 'on', 'DELETED carries the last matching state');
    assert.equal(
      deleted?.metadata?.resourceVersion,
      server.getNode('s1')?.metadata?.resourceVersion,
      '...with the resourceVersion of the change',
    );
  });

  it('bookmarks and sendInitialEvents', async () => {
    server.createNode({ metadata: { name: 'b1' } });
    const w = await watch(
      '/api/v1/nodes?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan',
    );
    await until(() => w.events.length >= 3, 'initial event and bookmarks');
    assert.equal(w.summary()[0], 'ADDED b1');
    assert.equal(w.events[1]?.type, 'BOOKMARK');
    assert.equal(w.events[1]?.object.metadata?.annotations?.['k8s.io/initial-events-end'], 'true');
    assert.equal(w.events[2]?.type, 'BOOKMARK');
    assert.equal(w.events[2]?.object.metadata?.resourceVersion, server.resourceVersion);
  });

  it('watch streams of Tables carry column definitions once', async () => {
    server.createNode({ metadata: { name: 'tw1' } });
    const w = await watch('/api/v1/nodes?watch=1', 'application/json;as=Table;v=v1;g=meta.k8s.io');
    server.createNode({ metadata: { name: 'tw2' } });
    await until(() => w.events.length === 2, 'two table events');
    assert.equal(w.events[0]?.object.kind, 'Table');
    assert.ok(Array.isArray((w.events[0]?.object as { columnDefinitions?: unknown }).columnDefinitions));
    assert.equal((w.events[1]?.object as { columnDefinitions?: unknown }).columnDefinitions, null);
    assert.equal(w.events[1]?.object.rows?.[0]?.cells[0], 'tw2');
  });

  it('keeps a bounded history: old resourceVersions expire (watch ERROR 410, exact list 410)', async () => {
    const small = new KubeApiServer({ token: TOKEN, historyLimit: 3, tls: false });
    extraServers.push(small);
    await small.start();
    small.createNode({ metadata: { name: 'h1' } });
    const rv1 = small.resourceVersion;
    small.createNode({ metadata: { name: 'h2' } });
    const rv2 = small.resourceVersion;
    const exact = await send(small, 'GET', `/api/v1/nodes?resourceVersion=${rv1}&resourceVersionMatch=Exact`);
    assert.deepEqual(
      (exact.json.items as KubeObject[]).map((n) => n.metadata?.name),
      ['h1'],
      'an exact list is a snapshot',
    );
    for (const n of ['h3', 'h4', 'h5']) small.createNode({ metadata: { name: n } });
    const w = await RawWatch.open(small, `/api/v1/nodes?watch=1&resourceVersion=${rv1}`);
    watches.push(w);
    await until(() => w.ended, 'the stream to end');
    assert.deepEqual(
      w.events.map((e) => [e.type, e.object.code, e.object.reason]),
      [['ERROR', 410, 'Expired']],
    );
    const gone = await send(small, 'GET', `/api/v1/nodes?resourceVersion=${rv1}&resourceVersionMatch=Exact`);
    assert.deepEqual([gone.status, gone.json.reason], [410, 'Expired']);
    const w2 = await RawWatch.open(small, `/api/v1/nodes?watch=1&resourceVersion=${rv2}`);
    watches.push(w2);
    await until(() => w2.events.length === 3, 'the retained events');
    assert.deepEqual(w2.summary(), ['ADDED h3', 'ADDED h4', 'ADDED h5']);
    const future = await send(small, 'GET', `/api/v1/nodes?resourceVersion=${Number(small.resourceVersion) + 100}`);
    assert.deepEqual([future.status, future.json.reason], [504, 'Timeout']);
  });

  it('implements strategic merge directives, JSON patch move/copy and merge patch nulls', () => {
    const nodeObj = {
      metadata: { name: 'n', finalizers: ['a', 'b'] },
      spec: { podCIDRs: ['10.0.0.0/24'], taints: [{ key: 'k', effect: 'NoSchedule' }] },
      status: {
        conditions: [
          { type: 'Ready', status: 'True' },
          { type: 'DiskPressure', status: 'False' },
        ],
      },
    };
    const out = strategicMergePatch(
      nodeObj,
      {
        metadata: { '$deleteFromPrimitiveList/finalizers': ['a'] },
        spec: { podCIDRs: ['fd00::/64'], taints: [{ key: 'other', effect: 'NoExecute' }] },
        status: {
          conditions: [
            { type: 'DiskPressure', $patch: 'delete' },
            { type: 'Ready', status: 'False' },
          ],
        },
      },
      NODE_SCHEMA,
    ) as typeof nodeObj;
    assert.deepEqual(out.metadata.finalizers, ['b']);
    assert.deepEqual(out.spec.podCIDRs, ['10.0.0.0/24', 'fd00::/64'], 'podCIDRs merge');
    assert.deepEqual(out.spec.taints, [{ key: 'other', effect: 'NoExecute' }], 'taints are replaced');
    assert.deepEqual(out.status.conditions, [{ type: 'Ready', status: 'False' }]);
    const replaced = strategicMergePatch(
      nodeObj,
      { status: { conditions: [{ $patch: 'replace' }, { type: 'X', status: 'True' }] } },
      NODE_SCHEMA,
    ) as typeof nodeObj;
    assert.deepEqual(replaced.status.conditions, [{ type: 'X', status: 'True' }]);
    assert.deepEqual(
      jsonPatch({ a: { b: 1 }, c: [1, 2] }, [
        { op: 'move', from: '/a/b', path: '/d' },
        { op: 'copy', from: '/c', path: '/e' },
        { op: 'add', path: '/c/-', value: 3 },
        { op: 'replace', path: '/c/0', value: 0 },
      ]),
      { a: {}, c: [0, 2, 3], d: 1, e: [1, 2] },
    );
    assert.throws(() => jsonPatch({ a: 1 }, [{ op: 'replace', path: '/b', value: 1 }]));
    assert.deepEqual(mergePatch({ a: { b: 1, c: 2 }, l: [1] }, { a: { b: null }, l: [2] }), { a: { c: 2 }, l: [2] });
  });

  it('keeps objects with finalizers until the last finalizer is removed; dryRun changes nothing', async () => {
    const dry = await send(server, 'POST', '/api/v1/nodes?dryRun=All', { body: { metadata: { name: 'dry' } } });
    assert.equal(dry.status, 201);
    assert.equal(server.getNode('dry'), undefined);
    server.createNode({ metadata: { name: 'fin', finalizers: ['wg-overlay/cleanup'] } });
    const w = await watch(`/api/v1/nodes?watch=1&resourceVersion=${server.resourceVersion}`);
    const del = await send(server, 'DELETE', '/api/v1/nodes/fin', { body: { propagationPolicy: 'Background' } });
    assert.equal(del.status, 200);
    assert.ok((del.json.metadata as { deletionTimestamp?: string }).deletionTimestamp);
    assert.ok(server.getNode('fin'), 'still there while finalizers remain');
    const patched = await send(server, 'PATCH', '/api/v1/nodes/fin', {
      body: { metadata: { finalizers: null } },
      contentType: 'application/merge-patch+json',
    });
    assert.equal(patched.status, 200);
    assert.equal(server.getNode('fin'), undefined);
    await until(() => w.events.length === 2, 'MODIFIED then DELETED');
    assert.deepEqual(w.summary(), ['MODIFIED fin', 'DELETED fin']);
    const stale = server.createNode({ metadata: { name: 'pre' } });
    const precondition = await send(server, 'DELETE', '/api/v1/nodes/pre', {
      body: { preconditions: { uid: 'not-the-uid' } },
    });
    assert.deepEqual([precondition.status, precondition.json.reason], [409, 'Conflict']);
    assert.ok(server.getNode('pre'));
    assert.ok(stale.metadata?.uid);
  });

  it('serves namespaced custom resources under /namespaces/<ns>/', async () => {
    const widgets = server.registerResource({
      group: 'example.com',
      version: 'v1',
      kind: 'Widget',
      plural: 'widgets',
      namespaced: true,
    });
    const created = await send(server, 'POST', '/apis/example.com/v1/namespaces/ns1/widgets', {
      body: { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } },
    });
    assert.equal(created.status, 201);
    assert.equal((created.json.metadata as { namespace?: string }).namespace, 'ns1');
    await send(server, 'POST', '/apis/example.com/v1/namespaces/ns2/widgets', { body: { metadata: { name: 'w' } } });
    const all = await send(server, 'GET', '/apis/example.com/v1/widgets');
    assert.deepEqual(
      (all.json.items as KubeObject[]).map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`),
      ['ns1/w', 'ns2/w'],
    );
    const one = await send(server, 'GET', '/apis/example.com/v1/namespaces/ns2/widgets');
    assert.equal((one.json.items as KubeObject[]).length, 1);
    assert.equal((await send(server, 'DELETE', '/apis/example.com/v1/namespaces/ns1/widgets/w')).status, 200);
    assert.equal((await send(server, 'GET', '/apis/example.com/v1/namespaces/ns1/widgets/w')).status, 404);
    assert.equal(widgets.get('w', 'ns2')?.metadata?.namespace, 'ns2');
    const group = await send(server, 'GET', '/apis/example.com/v1');
    assert.equal((group.json.resources as Array<{ namespaced: boolean }>)[0]?.namespaced, true);
  });

  it('listens on another local address with a matching certificate, and serves plain HTTP', async () => {
    const other = new KubeApiServer({ token: TOKEN, host: '127.0.0.2' });
    extraServers.push(other);
    const { url } = await other.start();
    assert.match(url, /^https:\/\/127\.0\.0\.2:\d+$/);
    other.createNode({ metadata: { name: 'on-127-0-0-2' } });
    const kc = new k8s.KubeConfig();
    kc.loadFromString(JSON.stringify(other.kubeconfig()));
    const names = (await kc.makeApiClient(k8s.CoreV1Api).listNode()).items.map((n) => n.metadata?.name);
    assert.deepEqual(names, ['on-127-0-0-2']);

    const plain = new KubeApiServer({ token: TOKEN, tls: false });
    extraServers.push(plain);
    assert.match((await plain.start()).url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(plain.caPem, undefined);
    const pkc = new k8s.KubeConfig();
    pkc.loadFromString(JSON.stringify(plain.kubeconfig()));
    const created = await pkc.makeApiClient(k8s.CoreV1Api).createNode({ body: { metadata: { name: 'plain' } } });
    assert.equal(created.metadata?.name, 'plain');
  });

  it('stops promptly with open watches and keep-alive connections', async () => {
    const s = new KubeApiServer({ token: TOKEN });
    await s.start();
    const kc = new k8s.KubeConfig();
    kc.loadFromString(JSON.stringify(s.kubeconfig()));
    await kc.makeApiClient(k8s.CoreV1Api).listNode();
    const w1 = await RawWatch.open(s, '/api/v1/nodes?watch=1');
    const w2 = await RawWatch.open(s, '/api/v1/watch/nodes');
    watches.push(w1, w2);
    await until(() => s.watchCount === 2, 'two watches');
    const t0 = Date.now();
    await s.stop();
    assert.ok(Date.now() - t0 < 1000, `stop took ${Date.now() - t0} ms`);
    await until(() => w1.ended && w2.ended, 'the clients to see the end');
    await assert.rejects(send(s, 'GET', '/version'), /ECONNREFUSED/);
  });

  it('runs standalone from the CLI and stops on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kube-api-cli-'));
    try {
      const nodesFile = join(dir, 'nodes.json');
      await writeFile(
        nodesFile,
        JSON.stringify([{ metadata: { name: 'cli-a' } }, { metadata: { name: 'cli-b', labels: { x: 'y' } } }]),
      );
      const kubeconfig = join(dir, 'kubeconfig');
      const main = fileURLToPath(new URL('./main.js', import.meta.url));
      const child = spawn(
        process.execPath,
        [
          main,
          '--host',
          '127.0.0.1',
          '--port',
          '0',
          '--tls',
          '--token',
          'cli-token',
          '--kubeconfig',
          kubeconfig,
          '--nodes-file',
          nodesFile,
          '--kilo',
        ],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
      try {
        const line = await new Promise<string>((resolve, reject) => {
          let out = '';
          child.stdout.setEncoding('utf8').on('data', (d: string) => {
            out += d;
            if (out.includes('\n')) resolve(out.split('\n')[0] as string);
          });
          child.on('close', () => reject(new Error('the CLI exited before printing its URL')));
        });
        const info = JSON.parse(line) as { url: string; kubeconfig: string };
        assert.match(info.url, /^https:\/\/127\.0\.0\.1:\d+$/);
        assert.equal(info.kubeconfig, kubeconfig);
        const kc = new k8s.KubeConfig();
        kc.loadFromFile(kubeconfig);
        const names = (await kc.makeApiClient(k8s.CoreV1Api).listNode({ labelSelector: 'x=y' })).items.map(
          (n) => n.metadata?.name,
        );
        assert.deepEqual(names, ['cli-b']);
        const peers = (await kc
          .makeApiClient(k8s.CustomObjectsApi)
          .listClusterCustomObject({ group: 'kilo.squat.ai', version: 'v1alpha1', plural: 'peers' })) as {
          items: unknown[];
        };
        assert.deepEqual(peers.items, []);
      } finally {
        child.kill('SIGTERM');
      }
      assert.equal(await exited, 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
