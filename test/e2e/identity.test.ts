/**
 * End-to-end: per-node identity. The test API server enforces the shipped node policy
 * (packaging/kubernetes/node-policy.yaml, created with kubectl) and each node is onboarded the
 * way the install guide says, with one piped command: `kubectl create token … --bound-object-kind
 * Node | wg-overlay kubeconfig … --token-file -`. The daemons publish and mesh through the policy;
 * node A's credential cannot change node B (nor labels, taints or spec, nor delete a Node) through
 * kubectl or through a daemon; and a token rotated on a running daemon is used without a restart.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubectlOk, type KubectlEnv } from '../kube-api/kubectl.js';
import { CLI, Cluster, waitFor } from '../support/cluster/cluster.js';
import { requireTools, type RunResult } from '../support/process.js';

const SA = 'system:serviceaccount:wg-overlay:wg-overlay';
const POLICY = "ValidatingAdmissionPolicy 'wg-overlay-own-node' with binding 'wg-overlay-own-node' denied request";
const ANN = 'wg-overlay.io/';

describe('e2e: per-node identity (Node-bound tokens through the shipped node policy)', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  let dir: string;
  let admin: KubectlEnv;
  /** What `wg-overlay kubeconfig` printed on each node, and the token each node was given. */
  const onboarding = new Map<string, string>();
  const tokens = new Map<string, string>();

  /** What the admin runs on a machine with kubectl: a token of wg-overlay's ServiceAccount bound to Node `boundTo`. */
  async function mintToken(boundTo: string): Promise<string> {
    return (
      await kubectlOk(admin, [
        '-n',
        'wg-overlay',
        'create',
        'token',
        'wg-overlay',
        '--bound-object-kind',
        'Node',
        '--bound-object-name',
        boundTo,
        '--duration',
        '8760h',
      ])
    ).trim();
  }

  /** The jti of a token, which the server records as the request's credential id. */
  function credentialOf(token: string): string {
    return `JTI=${(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string }).jti}`;
  }

  /** `kubectl create token … | ssh NODE sudo wg-overlay kubeconfig --server URL --ca-data CA --token-file -`, `ssh` being nsenter. */
  async function onboard(name: string, boundTo = name): Promise<string> {
    const token = await mintToken(boundTo);
    const caData = Buffer.from(cluster.api.caPem!).toString('base64');
    const r = await cluster
      .must(name)
      .host.exec('node', [CLI, 'kubeconfig', '--server', cluster.api.url!, '--ca-data', caData, '--token-file', '-'], {
        input: token,
      });
    onboarding.set(name, r.stdout);
    tokens.set(name, token);
    return token;
  }

  /** kubectl inside node `name`, with that node's own kubeconfig (and so its token file). */
  function kubectlOn(name: string, args: string[]): Promise<RunResult> {
    return cluster.must(name).host.exec('kubectl', ['--kubeconfig', '/etc/wg-overlay/kubeconfig', ...args], {
      env: { KUBECACHEDIR: join(dir, `cache-${name}`) },
      allowFailure: true,
    });
  }

  const nodeRequests = (from = 0) => cluster.api.requests.slice(from).filter((r) => r.path.startsWith('/api/v1/nodes'));

  before(async () => {
    await requireTools(['wg', 'wg-quick', 'wireguard-go', 'ip', 'nsenter', 'unshare', 'ping', 'kubectl']);
    cluster = await Cluster.create({ api: { admission: true, serviceAccounts: true } });
    dir = await mkdtemp(join(tmpdir(), 'wgo-identity-'));
    admin = { kubeconfig: join(dir, 'admin-kubeconfig'), cacheDir: join(dir, 'cache-admin') };
    await writeFile(admin.kubeconfig, cluster.kubeconfigText, { mode: 0o600 });
    // The admin's cluster setup: rbac.yaml's ServiceAccount (the test server serves no RBAC), and
    // the shipped policy, created from the file with kubectl.
    cluster.api.resource('serviceaccounts').create({ metadata: { name: 'wg-overlay', namespace: 'wg-overlay' } });
    await kubectlOk(admin, ['create', '-f', 'packaging/kubernetes/node-policy.yaml', '--validate=false']);
    for (const n of ['node-a', 'node-b']) {
      await cluster.addNode(n, { start: false, kubeconfig: false });
      await onboard(n);
      await cluster.startDaemon(n);
    }
    await cluster.waitForMesh(['node-a', 'node-b'], 30_000);
  });

  after(async () => {
    await cluster?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('each node is onboarded with one piped command and its own Node-bound token; the daemons publish through the policy and mesh', async () => {
    for (const n of ['node-a', 'node-b']) {
      assert.match(
        onboarding.get(n) ?? '',
        new RegExp(`wrote /etc/wg-overlay/token \\(mode 0600\\): ${SA}, bound to Node ${n}, expires`),
      );
      assert.doesNotMatch(onboarding.get(n) ?? '', /warning/);
      assert.equal(
        (await cluster.must(n).host.exec('stat', ['-c', '%a', '/etc/wg-overlay/kubeconfig', '/etc/wg-overlay/token']))
          .stdout,
        '600\n600\n',
      );
      const ann = cluster.annotations(n);
      assert.ok(
        ann[`${ANN}public-key`] && ann[`${ANN}endpoint`] && ann[`${ANN}overlay-address`],
        `${n} published: ${JSON.stringify(ann)}`,
      );
    }
    // The dry runs the daemons make to see whether the policy is in force are refused by it.
    const dryRuns = nodeRequests().filter((r) => r.method === 'PATCH' && r.query.includes('dryRun=All'));
    assert.ok(dryRuns.length >= 2 && dryRuns.every((r) => r.user === SA && r.status === 403), JSON.stringify(dryRuns));
    for (const n of ['node-a', 'node-b'])
      await cluster
        .must(n)
        .daemon!.waitForOutput(/node-policy\.yaml is in force: a dry-run write of a label on Node/, 10_000);
    const patches = nodeRequests().filter((r) => r.method === 'PATCH' && !r.query.includes('dryRun'));
    assert.ok(patches.length >= 2);
    assert.ok(
      patches.every((r) => r.user === SA && r.status === 200),
      JSON.stringify(patches),
    );
    const byNode = new Map(patches.map((r) => [r.path, r.credentialId]));
    assert.notEqual(
      byNode.get('/api/v1/nodes/node-a'),
      byNode.get('/api/v1/nodes/node-b'),
      'each node its own credential',
    );
    const pod = await cluster
      .must('node-a')
      .pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', cluster.must('node-b').podIp]);
    assert.match(pod.stdout, /2 received/);
  });

  it("node A's credential cannot change node B's annotations: kubectl with A's kubeconfig gets 403 from the policy", async () => {
    const before = cluster.annotations('node-b');
    const r = await kubectlOn('node-a', [
      'annotate',
      'node',
      'node-b',
      '--overwrite',
      `${ANN}endpoint=203.0.113.66:51820`,
    ]);
    assert.notEqual(r.exitCode, 0);
    assert.match(
      r.stderr,
      new RegExp(
        `Error from server \\(Forbidden\\): nodes "node-b" is forbidden: ${POLICY}: wg-overlay may change only its own Node`,
      ),
    );
    const sent = nodeRequests()
      .filter((x) => x.method === 'PATCH' && x.path === '/api/v1/nodes/node-b')
      .pop();
    assert.deepEqual(
      [sent?.user, sent?.status],
      [SA, 403],
      "it was node A's ServiceAccount token, refused by admission",
    );
    assert.deepEqual(cluster.annotations('node-b'), before);
  });

  it("node A's credential cannot change labels (B's or its own), taints or unschedulable, nor delete a Node", async () => {
    const before = { a: cluster.api.getNode('node-a'), b: cluster.api.getNode('node-b') };
    const cases: Array<[string[], RegExp]> = [
      [['label', 'node', 'node-b', 'evil=1'], /nodes "node-b" is forbidden: .*may change only its own Node/],
      [
        ['label', 'node', 'node-a', 'node-role.kubernetes.io/control-plane='],
        /nodes "node-a" is forbidden: .*may not change a Node's labels/,
      ],
      [['taint', 'node', 'node-a', 'evict=1:NoExecute'], /nodes "node-a" is forbidden: .*may not change a Node's spec/],
      [['cordon', 'node-a'], /nodes "node-a" is forbidden: .*may not change a Node's spec/],
      [
        ['annotate', 'node', 'node-a', 'example.com/owner=evil'],
        /nodes "node-a" is forbidden: .*may change only annotations under wg-overlay\.io\//,
      ],
      [['delete', 'node', 'node-b', '--wait=false'], /nodes "node-b" is forbidden: .*may not create or delete Nodes/],
    ];
    for (const [args, re] of cases) {
      const r = await kubectlOn('node-a', args);
      assert.match(r.stderr, re, `kubectl ${args.join(' ')}: ${r.stderr}`);
    }
    assert.deepEqual(cluster.api.getNode('node-a')?.spec, before.a?.spec);
    assert.deepEqual(cluster.api.getNode('node-a')?.metadata?.labels, before.a?.metadata?.labels);
    assert.deepEqual(cluster.api.getNode('node-b'), before.b);
  });

  it("node A's credential can still add and remove its own wg-overlay.io/ annotations (what the daemon does)", async () => {
    assert.equal((await kubectlOn('node-a', ['annotate', 'node', 'node-a', `${ANN}probe=1`])).exitCode, 0);
    assert.equal(cluster.annotations('node-a')[`${ANN}probe`], '1');
    assert.equal((await kubectlOn('node-a', ['annotate', 'node', 'node-a', `${ANN}probe-`])).exitCode, 0);
    assert.equal(cluster.annotations('node-a')[`${ANN}probe`], undefined);
  });

  it('a daemon whose token is bound to node A cannot publish on node C: the policy refuses it and the daemon logs why', async () => {
    await cluster.addNode('node-c', { start: false, kubeconfig: false, pod: false });
    try {
      await onboard('node-c', 'node-a');
      assert.match(
        onboarding.get('node-c') ?? '',
        /warning: the token is bound to Node node-a, but this node's wg-overlay is Node node-c/,
      );
      const mark = cluster.api.requests.length;
      const daemon = await cluster.startDaemon('node-c');
      await daemon.waitForOutput(
        /HTTP 403: nodes "node-c" is forbidden: .*wg-overlay may change only its own Node/,
        20_000,
      );
      const patches = nodeRequests(mark).filter((r) => r.method === 'PATCH');
      assert.ok(
        patches.length > 0 && patches.every((r) => r.path === '/api/v1/nodes/node-c' && r.status === 403),
        JSON.stringify(patches),
      );
      assert.deepEqual(
        Object.keys(cluster.annotations('node-c')).filter((k) => k.startsWith(ANN)),
        [],
        'node C got nothing',
      );
      assert.ok(
        Object.keys(cluster.annotations('node-a')).every((k) => !k.startsWith(`${ANN}probe`)),
        'and node A was not touched either',
      );
    } finally {
      await cluster.removeNode('node-c');
    }
    await cluster.waitForMesh(['node-a', 'node-b']);
  });

  it('a token rotated on a running daemon is used from its next request; the revoked old token is never sent again; no restart', async () => {
    const a = cluster.must('node-a');
    const pid = a.daemon!.pid;
    const fresh = await mintToken('node-a');
    const r = await a.host.exec('node', [CLI, 'kubeconfig', '--token-only', '--token-file', '-'], { input: fresh });
    assert.match(r.stdout, /bound to Node node-a, .*\n.*no restart needed/s);
    // Revoke the old token (as deleting and re-creating the Node would); the API server also ends
    // watches now and then, and the daemon reconnects with whatever is in the token file.
    assert.ok(cluster.api.revokeToken(tokens.get('node-a')!));
    const mark = cluster.api.requests.length;
    cluster.api.dropWatches();
    // Something for the daemon to publish: an admin removes its endpoint annotation.
    const endpoint = cluster.annotations('node-a')[`${ANN}endpoint`];
    cluster.api.patchNode('node-a', { metadata: { annotations: { [`${ANN}endpoint`]: null } } });
    await waitFor(
      'node-a to publish its endpoint again',
      () => cluster.annotations('node-a')[`${ANN}endpoint`] === endpoint,
      20_000,
    );
    const since = nodeRequests(mark).filter((x) => x.credentialId !== undefined || x.status === 401);
    assert.ok(
      since.some((x) => x.method === 'PATCH' && x.status === 200 && x.credentialId === credentialOf(fresh)),
      'the PATCH carried the new token',
    );
    assert.ok(
      since.some((x) => x.query.includes('watch=true') && x.credentialId === credentialOf(fresh)),
      'the watch reconnected with the new token',
    );
    assert.deepEqual(
      since.filter((x) => x.status === 401),
      [],
      'the revoked token was never sent',
    );
    assert.ok(a.daemon!.running);
    assert.equal(a.daemon!.pid, pid, 'the same process: no restart');
    await cluster.waitForMesh(['node-a', 'node-b']);
  });
});
