/**
 * The dry run that tells whether node-policy.yaml is in force, against the Kubernetes API test
 * server with a Node-bound token: refused by the shipped policy (in force; a Pod-bound token is
 * refused too, dry run or not), accepted without it
 * (not in force; nothing is stored either way), and every other answer — the API failing, a
 * refusal that is not admission's, the server gone — is "unknown", never "not in force".
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as k8s from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { ApiNodePolicyProbe, judgePolicyProbe, PROBE_LABEL } from '../../../service/src/kube/node-policy-probe.js';
import { KubeApiServer, type KubeObject } from '../../kube-api/server.js';

const POLICY = parseAllDocuments(readFileSync('packaging/kubernetes/node-policy.yaml', 'utf8')).map(
  (d) => d.toJS() as KubeObject,
);

/** A started server with Node `node-a` and, if asked, the shipped policy; and a probe with node-a's Node-bound token. */
async function cluster(policy: boolean): Promise<{ api: KubeApiServer; probe: ApiNodePolicyProbe }> {
  const api = new KubeApiServer({ token: 'admin', admission: true, serviceAccounts: true });
  if (policy) api.createObjects(POLICY);
  await api.start();
  api.createNode({ metadata: { name: 'node-a', labels: { 'kubernetes.io/hostname': 'node-a' } } });
  const t = api.createServiceAccountToken({ namespace: 'wg-overlay', name: 'wg-overlay', boundNode: 'node-a' });
  const kc = new k8s.KubeConfig();
  kc.loadFromString(JSON.stringify(api.kubeconfig({ token: t.token })));
  return { api, probe: new ApiNodePolicyProbe(kc) };
}

describe('unit: kube: the node-policy dry run (against the API test server)', function () {
  this.timeout(20_000);
  const servers: KubeApiServer[] = [];
  const start = async (policy: boolean) => {
    const c = await cluster(policy);
    servers.push(c.api);
    return c;
  };

  after(async () => {
    for (const s of servers) await s.stop();
  });

  it('with the shipped policy: enforced, with the denial; the write is a dry run that stores nothing', async () => {
    const { api, probe } = await start(true);
    const v = await probe.probe('node-a');
    assert.equal(v.state, 'enforced');
    assert.match(
      v.state === 'enforced' ? v.detail : '',
      /^nodes "node-a" is forbidden: ValidatingAdmissionPolicy 'wg-overlay-own-node' .* may not change a Node's labels$/,
    );
    const sent = api.requests.filter((r) => r.method === 'PATCH');
    assert.deepEqual(
      sent.map((r) => [r.path, r.query, r.contentType, r.status]),
      [['/api/v1/nodes/node-a', '?dryRun=All', 'application/merge-patch+json', 403]],
    );
    assert.equal(api.getNode('node-a')?.metadata?.labels?.[PROBE_LABEL], undefined);
  });

  it("a Pod-bound token carrying node-a's name: the policy refuses its dry run and its real writes alike", async () => {
    const { api } = await start(true);
    const t = api.createServiceAccountToken({
      namespace: 'wg-overlay',
      name: 'wg-overlay',
      boundPod: { name: 'evil', node: 'node-a' },
    });
    const kc = new k8s.KubeConfig();
    kc.loadFromString(JSON.stringify(api.kubeconfig({ token: t.token })));
    const v = await new ApiNodePolicyProbe(kc).probe('node-a');
    assert.equal(v.state, 'enforced');
    assert.match(v.state === 'enforced' ? v.detail : '', /this wg-overlay credential is bound to a Pod, not to a Node/);
    const publish = kc
      .makeApiClient(k8s.CoreV1Api)
      .patchNode(
        { name: 'node-a', body: { metadata: { annotations: { 'wg-overlay.io/endpoint': '203.0.113.9:51820' } } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    await assert.rejects(publish, (err: { code?: number }) => err.code === 403);
    assert.equal(api.getNode('node-a')?.metadata?.annotations?.['wg-overlay.io/endpoint'], undefined);
  });

  it('without the policy: not enforced (the label write went through), and still nothing is stored', async () => {
    const { api, probe } = await start(false);
    assert.deepEqual(await probe.probe('node-a'), { state: 'not-enforced' });
    assert.equal(api.getNode('node-a')?.metadata?.labels?.[PROBE_LABEL], undefined);
    assert.equal(api.requests.find((r) => r.method === 'PATCH')?.status, 200);
  });

  it('the API failing (503), a 403 that is not admission (RBAC), a missing Node, the server gone: unknown, never not enforced', async () => {
    const { api, probe } = await start(false);
    api.failNext(1, 503);
    assert.deepEqual(await probe.probe('node-a'), { state: 'unknown', detail: 'HTTP 503: injected failure (503)' });
    api.failNext(1, 403, {
      message:
        'nodes "node-a" is forbidden: User "system:serviceaccount:wg-overlay:wg-overlay" cannot patch resource "nodes"',
    });
    const rbac = await probe.probe('node-a');
    assert.equal(rbac.state, 'unknown');
    assert.match(rbac.state === 'unknown' ? rbac.detail : '', /^HTTP 403: .*cannot patch resource "nodes"$/);
    const missing = await probe.probe('node-z');
    assert.equal(missing.state, 'unknown');
    await api.stop();
    const gone = await probe.probe('node-a');
    assert.equal(gone.state, 'unknown');
    assert.match(gone.state === 'unknown' ? gone.detail : '', /ECONNREFUSED/);
  });

  it('judges answers: admission denials (policy or webhook, 403 or 422) are enforced; other failures unknown', () => {
    const fail = (code: number, message: string) => ({ error: { code, body: JSON.stringify({ message }) } });
    const policy = "nodes \"a\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: no";
    assert.equal(judgePolicyProbe(fail(403, policy)).state, 'enforced');
    assert.equal(judgePolicyProbe(fail(422, policy)).state, 'enforced');
    const webhook = 'admission webhook "validate.kyverno.svc" denied the request: labels are not allowed';
    assert.equal(judgePolicyProbe(fail(400, webhook)).state, 'unknown');
    assert.equal(judgePolicyProbe(fail(403, webhook)).state, 'enforced');
    assert.equal(judgePolicyProbe(fail(422, 'Node "a" is invalid: metadata.labels: Invalid value')).state, 'unknown');
    assert.equal(judgePolicyProbe(fail(401, 'Unauthorized')).state, 'unknown');
    assert.equal(judgePolicyProbe({ error: new Error('socket hang up') }).state, 'unknown');
    assert.deepEqual(judgePolicyProbe({ ok: true }), { state: 'not-enforced' });
  });
});
