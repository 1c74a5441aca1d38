/**
 * The Node reflector against the Kubernetes API test server: the first list comes in pages
 * (`limit`/`continue`), a dropped or ended watch resumes from the last resourceVersion it saw
 * without listing again (so an outage does not make thousands of daemons re-list together), only
 * 410 Gone re-lists, bookmarks advance the resume point, and a failing server is retried with
 * jittered backoff. Requests are counted as the server saw them.
 */
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { nodesApi } from '../../../service/src/kube/node-source.js';
import { toMeshNode } from '../../../service/src/kube/node-translate.js';
import { Reflector } from '../../../service/src/kube/reflector.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { MeshNode } from '../../../service/src/mesh/types.js';
import { Backoff } from '../../../service/src/util/backoff.js';
import { KILO_PEER_RESOURCE, KubeApiServer, type KubeObject } from '../../kube-api/server.js';
import { until } from '../../support/wait.js';

function node(i: number): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: `n-${String(i).padStart(4, '0')}` },
    spec: { podCIDR: `10.${100 + (i >> 8)}.${i & 255}.0/24` },
    status: { addresses: [{ type: 'InternalIP', address: `198.18.${i >> 8}.${i & 255}` }] },
  };
}

/** A reflector over the server's Nodes that records what it reports. */
function reflect(server: KubeApiServer, opts: { pageSize?: number; watchSeconds?: number; backoff?: Backoff } = {}) {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(JSON.stringify(server.kubeconfig()));
  const nodes = new Map<string, MeshNode>();
  const seen = { lists: 0, ups: 0, errors: [] as number[] };
  const reflector = new Reflector<MeshNode>({
    api: nodesApi(kc, 5_000),
    translate: (raw) => toMeshNode(raw as k8s.V1Node),
    log: memoryLogger(),
    what: 'node watch',
    ...opts,
    random: () => 0.5,
  });
  reflector.start({
    onList: (items) => {
      seen.lists += 1;
      nodes.clear();
      for (const n of items) nodes.set(n.name, n);
    },
    onChange: (name, item) => {
      if (item) nodes.set(name, item);
      else nodes.delete(name);
    },
    onUp: () => {
      seen.ups += 1;
    },
    onError: (_err, next) => {
      seen.errors.push(next);
      return undefined;
    },
  });
  return { reflector, nodes, seen };
}

const lists = (s: KubeApiServer): Array<{ query: URLSearchParams }> =>
  s.requests
    .filter((r) => r.method === 'GET' && r.path === '/api/v1/nodes' && !new URLSearchParams(r.query).has('watch'))
    .map((r) => ({ query: new URLSearchParams(r.query) }));
const watches = (s: KubeApiServer): Array<{ query: URLSearchParams }> =>
  s.requests
    .filter(
      (r) => r.method === 'GET' && r.path === '/api/v1/nodes' && new URLSearchParams(r.query).get('watch') === 'true',
    )
    .map((r) => ({ query: new URLSearchParams(r.query) }));

describe('integration: Node reflector against the API test server (paging, resume, 410, backoff)', function () {
  this.timeout(30_000);
  let server: KubeApiServer;
  let stop: (() => void) | undefined;

  beforeEach(async () => {
    server = new KubeApiServer({ bookmarkIntervalMs: 200 });
    await server.start();
  });
  afterEach(async () => {
    stop?.();
    stop = undefined;
    await server?.stop();
  });

  it('lists 600 Nodes in pages of 250 with continue tokens, then watches from the list version', async () => {
    for (let i = 0; i < 600; i += 1) server.createNode(node(i));
    const listVersion = server.resourceVersion;
    const r = reflect(server, { pageSize: 250 });
    stop = () => r.reflector.stop();
    await until(() => r.seen.lists === 1 && watches(server).length === 1, 'list and watch');
    assert.equal(r.nodes.size, 600);
    const pages = lists(server);
    assert.deepEqual(
      pages.map((p) => p.query.get('limit')),
      ['250', '250', '250'],
    );
    assert.equal(pages[0]!.query.has('continue'), false);
    assert.ok(pages[1]!.query.get('continue') && pages[2]!.query.get('continue'), 'later pages carry continue tokens');
    assert.equal(r.reflector.listRequests, 3);
    const w = watches(server)[0]!.query;
    assert.equal(w.get('resourceVersion'), listVersion);
    assert.equal(w.get('allowWatchBookmarks'), 'true');
    // Events arrive one by one.
    server.patchNode('n-0007', { spec: { podCIDRs: ['10.100.7.0/24', '10.250.0.0/24'] } });
    server.deleteNode('n-0008');
    await until(
      () => r.nodes.get('n-0007')?.podCIDRs.length === 2 && !r.nodes.has('n-0008'),
      'the patch and the delete',
    );
  });

  it('a dropped watch resumes from the last version it saw: no second list, and nothing is missed', async () => {
    for (let i = 0; i < 20; i += 1) server.createNode(node(i));
    const r = reflect(server, { backoff: new Backoff(50, 200) });
    stop = () => r.reflector.stop();
    await until(() => server.watchCount === 1, 'the watch');
    server.patchNode('n-0001', { spec: { podCIDRs: ['10.100.1.0/24', '10.250.1.0/24'] } });
    await until(() => r.nodes.get('n-0001')?.podCIDRs.length === 2, 'the first event');
    const seenVersion = String(server.getNode('n-0001')!.metadata!.resourceVersion);
    assert.equal(server.dropWatches(), 1);
    server.createNode(node(99)); // happens while no watch is open
    await until(() => r.nodes.has('n-0099'), 'the Node created during the outage');
    assert.equal(lists(server).length, 1, 'no re-list after a dropped watch');
    assert.equal(r.seen.lists, 1);
    const resumed = watches(server).at(-1)!.query.get('resourceVersion');
    assert.ok(Number(resumed) >= Number(seenVersion), `resumed from ${resumed}, at least ${seenVersion}`);
    // A watch the server ends normally (its timeout) is resumed the same way.
    server.dropWatches({ graceful: true });
    server.deleteNode('n-0002');
    await until(() => !r.nodes.has('n-0002'), 'the delete after a graceful end');
    assert.equal(lists(server).length, 1);
  });

  it('bookmarks move the resume point forward while no Node changes', async () => {
    server.createNode(node(1));
    const peers = server.registerResource(KILO_PEER_RESOURCE);
    const r = reflect(server);
    stop = () => r.reflector.stop();
    await until(() => server.watchCount === 1, 'the watch');
    const first = Number(watches(server)[0]!.query.get('resourceVersion'));
    // Writes to another resource move the store's version; only a bookmark tells the Node watch.
    for (let i = 0; i < 5; i += 1)
      peers.create({
        apiVersion: 'kilo.squat.ai/v1alpha1',
        kind: 'Peer',
        metadata: { name: `p-${i}` },
        spec: { allowedIPs: [`192.0.2.${i + 1}/32`], publicKey: 'x' },
      });
    const latest = Number(server.resourceVersion);
    await new Promise((res) => setTimeout(res, 600)); // a few bookmark intervals
    server.dropWatches();
    await until(() => watches(server).length === 2, 'the resumed watch');
    assert.equal(
      Number(watches(server)[1]!.query.get('resourceVersion')),
      latest,
      `resumed from the bookmark (first watch from ${first})`,
    );
    assert.equal(lists(server).length, 1);
  });

  it('410 Gone (history compacted during an outage) re-lists once and watches from the new list', async () => {
    for (let i = 0; i < 10; i += 1) server.createNode(node(i));
    const r = reflect(server, { backoff: new Backoff(50, 200) });
    stop = () => r.reflector.stop();
    await until(() => server.watchCount === 1, 'the watch');
    server.setWatchEnabled(false);
    server.dropWatches();
    await until(() => r.seen.errors.length >= 1, 'a failed watch');
    server.deleteNode('n-0003');
    server.createNode(node(50));
    server.expireHistory();
    server.setWatchEnabled(true);
    await until(() => r.seen.lists === 2 && server.watchCount === 1, 'the re-list after 410');
    assert.equal(r.nodes.has('n-0003'), false);
    assert.equal(r.nodes.has('n-0050'), true);
    assert.equal(r.nodes.size, 10);
    assert.equal(lists(server).length, 2, 'exactly one re-list');
  });

  it('a failing server is retried with growing, jittered delays, and the first success reports up', async () => {
    server.createNode(node(1));
    server.failNext(4, 503);
    const r = reflect(server, { backoff: new Backoff(40, 1_000) });
    stop = () => r.reflector.stop();
    await until(() => r.seen.ups === 1 && r.nodes.size === 1, 'up after the failures', 10_000);
    // random() is 0.5: the jitter factor is exactly 1, so the delays are the backoff's own.
    assert.deepEqual(r.seen.errors, [40, 80, 160, 320]);
  });
});
