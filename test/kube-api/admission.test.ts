/*
 * Integration tests of the test API server's ValidatingAdmissionPolicies, evaluated with a real
 * CEL evaluator: policies and bindings created through the API (client-node, kubectl) are enforced
 * on create, update, patch and delete; denials are Status errors worded like kube-apiserver's
 * (422 Invalid by default, the validation's reason otherwise); match constraints, match
 * conditions, variables, messageExpression, failurePolicy and the Deny/Warn/Audit actions.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { KubeApiServer, type KubeObject } from './server.js';
import { kubectl, type KubectlEnv } from './kubectl.js';
import { coreClient as client, failureStatus, statusOf, type StatusReply } from './testing.js';

const ADMIN = 'admission-admin-token';
const ALICE = 'alice-token';
const VAP = 'admissionregistration.k8s.io/v1';

/** The HTTP status and Status body of a failed call (200 and {} when it succeeds). */
async function outcome(p: Promise<unknown>): Promise<{ code: number; body: StatusReply }> {
  try {
    await p;
    return { code: 200, body: {} };
  } catch (err) {
    if (!(err instanceof k8s.ApiException)) throw err;
    return { code: err.code as number, body: statusOf(err.body) };
  }
}

const NODE_RULE = {
  apiGroups: [''],
  apiVersions: ['v1'],
  resources: ['nodes'],
  operations: ['CREATE', 'UPDATE', 'DELETE'],
};
const ALICE_ONLY = [{ name: 'alice', expression: "request.userInfo.username == 'alice'" }];
const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

/** A policy that alice may not delete Nodes nor label them `frozen`, and its binding, as a List manifest for `kubectl create -f`. */
const NO_FROZEN_MANIFEST = {
  apiVersion: 'v1',
  kind: 'List',
  items: [
    {
      apiVersion: VAP,
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: 'no-frozen' },
      spec: {
        matchConstraints: { resourceRules: [NODE_RULE] },
        matchConditions: ALICE_ONLY,
        validations: [
          { expression: "request.operation != 'DELETE'", message: 'alice may not delete Nodes' },
          {
            expression:
              "request.operation == 'DELETE' || !has(object.metadata.labels) || !('frozen' in object.metadata.labels)",
            messageExpression: "'Node ' + object.metadata.name + ' may not be frozen'",
          },
        ],
      },
    },
    {
      apiVersion: VAP,
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: 'no-frozen' },
      spec: { policyName: 'no-frozen', validationActions: ['Deny'] },
    },
  ],
};

/** The outcome of a merge patch of Node `name`'s metadata by `api`. */
function patchMetadata(api: k8s.CoreV1Api, metadata: Record<string, unknown>, name = 'n1') {
  return outcome(api.patchNode({ name, body: { metadata } }, merge));
}

describe('kube-api: ValidatingAdmissionPolicy (CEL)', function () {
  this.timeout(30_000);
  let server: KubeApiServer;
  let dir: string;
  let alice: k8s.CoreV1Api;
  let admin: k8s.CoreV1Api;
  let aliceEnv: KubectlEnv;
  let adminEnv: KubectlEnv;

  /** Creates a policy and its binding (through the API, as an admin). */
  async function install(
    name: string,
    spec: Record<string, unknown>,
    actions: string[] = ['Deny'],
    bindingSpec: Record<string, unknown> = {},
  ): Promise<void> {
    server.createObjects([
      { apiVersion: VAP, kind: 'ValidatingAdmissionPolicy', metadata: { name }, spec },
      {
        apiVersion: VAP,
        kind: 'ValidatingAdmissionPolicyBinding',
        metadata: { name: `${name}-binding` },
        spec: { policyName: name, validationActions: actions, ...bindingSpec },
      },
    ]);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kube-api-admission-'));
    server = new KubeApiServer({
      token: ADMIN,
      users: { [ALICE]: { username: 'alice', groups: ['devs', 'system:authenticated'], extra: { team: ['net'] } } },
      admission: true,
    });
    await server.start();
    alice = client(server, ALICE);
    admin = client(server, ADMIN);
    aliceEnv = { kubeconfig: join(dir, 'alice'), cacheDir: join(dir, 'cache') };
    adminEnv = { kubeconfig: join(dir, 'admin'), cacheDir: join(dir, 'cache') };
    await server.writeKubeconfig(aliceEnv.kubeconfig, { token: ALICE });
    await server.writeKubeconfig(adminEnv.kubeconfig);
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    for (const b of server.resource('validatingadmissionpolicybindings', 'admissionregistration.k8s.io').list()) {
      server.resource('validatingadmissionpolicybindings', 'admissionregistration.k8s.io').delete(b.metadata!.name!);
    }
    for (const p of server.resource('validatingadmissionpolicies', 'admissionregistration.k8s.io').list()) {
      server.resource('validatingadmissionpolicies', 'admissionregistration.k8s.io').delete(p.metadata!.name!);
    }
    for (const n of server.listNodes()) server.deleteNode(n.metadata!.name!);
    server.createNode({
      metadata: { name: 'n1', labels: { zone: 'a' } },
      spec: { podCIDR: '10.0.1.0/24' },
      status: { addresses: [] },
    });
  });

  it('a policy made with `kubectl create -f` is enforced on patch, update, create and delete, only for the users it matches', async () => {
    const manifest = join(dir, 'policy.json');
    await writeFile(manifest, JSON.stringify(NO_FROZEN_MANIFEST));
    const created = await kubectl(adminEnv, ['create', '-f', manifest, '--validate=false']);
    assert.equal(created.code, 0, created.stderr);
    const denial =
      "ValidatingAdmissionPolicy 'no-frozen' with binding 'no-frozen' denied request: Node n1 may not be frozen";

    const patched = await patchMetadata(alice, { labels: { frozen: 'yes' } });
    assert.equal(patched.code, 422);
    assert.deepEqual(
      patched.body,
      failureStatus(422, 'Invalid', `nodes "n1" is forbidden: ${denial}`, {
        name: 'n1',
        kind: 'nodes',
        causes: [{ message: denial }],
      }),
    );
    const node = await admin.readNode({ name: 'n1' });
    assert.equal(
      (
        await outcome(
          alice.replaceNode({ name: 'n1', body: { ...node, metadata: { ...node.metadata, labels: { frozen: '1' } } } }),
        )
      ).code,
      422,
    );
    assert.equal(
      (await outcome(alice.createNode({ body: { metadata: { name: 'n2', labels: { frozen: '1' } } } }))).code,
      422,
    );
    const del = await outcome(alice.deleteNode({ name: 'n1' }));
    assert.deepEqual(
      [del.code, del.body.message],
      [
        422,
        'nodes "n1" is forbidden: ' +
          "ValidatingAdmissionPolicy 'no-frozen' with binding 'no-frozen' denied request: alice may not delete Nodes",
      ],
    );
    assert.deepEqual(server.getNode('n1')?.metadata?.labels, { zone: 'a' }, 'nothing was written');
    assert.equal(server.getNode('n2'), undefined);

    // What the policy allows goes through, and other users are not matched.
    assert.equal((await patchMetadata(alice, { labels: { ok: '1' } })).code, 200);
    assert.equal((await patchMetadata(admin, { labels: { frozen: '1' } })).code, 200);
    const k = await kubectl(aliceEnv, ['label', 'node', 'n1', 'frozen=2', '--overwrite']);
    assert.notEqual(k.code, 0);
    // kubectl renders a 422 from its causes, as it does with a real cluster's.
    assert.match(
      k.stderr,
      /The nodes "n1" is invalid: : ValidatingAdmissionPolicy 'no-frozen' with binding 'no-frozen' denied request: Node n1 may not be frozen/,
    );
  });

  it('a validation with reason Forbidden is answered with 403 Forbidden', async () => {
    await install('forbid', {
      matchConstraints: { resourceRules: [NODE_RULE] },
      matchConditions: ALICE_ONLY,
      validations: [{ expression: 'false', message: 'no', reason: 'Forbidden' }],
    });
    const r = await patchMetadata(alice, { annotations: { a: 'b' } });
    assert.deepEqual(
      [r.code, r.body.reason, r.body.message],
      [
        403,
        'Forbidden',
        "nodes \"n1\" is forbidden: ValidatingAdmissionPolicy 'forbid' with binding 'forbid-binding' denied request: no",
      ],
    );
  });

  it('without a message the denial quotes the expression; the first failed validation is the one reported', async () => {
    await install('plain', {
      matchConstraints: { resourceRules: [NODE_RULE] },
      validations: [{ expression: "object.metadata.name != 'n1'" }, { expression: 'false', message: 'second' }],
    });
    const r = await patchMetadata(admin, { annotations: { a: 'b' } });
    assert.equal(
      r.body.message,
      'nodes "n1" is forbidden: ' +
        "ValidatingAdmissionPolicy 'plain' with binding 'plain-binding' denied request: " +
        "failed expression: object.metadata.name != 'n1'",
    );
  });

  it('request.userInfo (username, groups, extra), request.operation, object and oldObject are what CEL sees', async () => {
    await install('sees', {
      matchConstraints: { resourceRules: [NODE_RULE] },
      matchConditions: ALICE_ONLY,
      validations: [
        {
          expression: [
            "request.operation == 'UPDATE'",
            "'devs' in request.userInfo.groups",
            "request.userInfo.extra['team'] == ['net']",
            "oldObject.metadata.labels['zone'] == 'a'",
            "object.metadata.labels['zone'] == 'b'",
            "object.spec.podCIDR == '10.0.1.0/24'",
            "request.name == 'n1'",
          ].join(' && '),
        },
      ],
    });
    assert.equal((await patchMetadata(alice, { labels: { zone: 'b' } })).code, 200);
    assert.equal((await patchMetadata(alice, { labels: { zone: 'c' } })).code, 422);
  });

  it('variables: each sees the ones before it; one that fails makes what uses it fail', async () => {
    await install('vars', {
      matchConstraints: { resourceRules: [NODE_RULE] },
      variables: [
        { name: 'labels', expression: 'has(object.metadata.labels) ? object.metadata.labels : {}' },
        { name: 'zone', expression: "'zone' in variables.labels ? variables.labels['zone'] : ''" },
        { name: 'broken', expression: 'object.metadata.nope' },
      ],
      validations: [{ expression: "variables.zone != 'frozen'", message: 'frozen zone' }],
    });
    assert.equal((await patchMetadata(admin, { labels: { zone: 'b' } })).code, 200);
    const r = await patchMetadata(admin, { labels: { zone: 'frozen' } });
    assert.match(r.body.message ?? '', /denied request: frozen zone$/);
    await install('uses-broken', {
      matchConstraints: { resourceRules: [NODE_RULE] },
      variables: [{ name: 'broken', expression: 'object.metadata.nope' }],
      validations: [{ expression: 'variables.broken == 1' }],
    });
    const e = await patchMetadata(admin, { labels: { zone: 'c' } });
    assert.equal(e.code, 422);
    assert.match(
      e.body.message ?? '',
      /'uses-broken' with binding 'uses-broken-binding' denied request: expression 'variables.broken == 1' resulted in error/,
    );
  });

  it('failurePolicy: an evaluation error denies under Fail (the default) and admits under Ignore', async () => {
    const spec = (failurePolicy?: string) => ({
      ...(failurePolicy ? { failurePolicy } : {}),
      matchConstraints: { resourceRules: [NODE_RULE] },
      validations: [{ expression: "object.metadata.labels['missing'] == 'x'" }],
    });
    await install('fails', spec());
    const r = await patchMetadata(admin, { annotations: { a: '1' } });
    assert.equal(r.code, 422);
    assert.match(r.body.message ?? '', /expression 'object\.metadata\.labels\['missing'\] == 'x'' resulted in error/);
    server.resource('validatingadmissionpolicybindings', 'admissionregistration.k8s.io').delete('fails-binding');
    await install('ignores', spec('Ignore'));
    assert.equal((await patchMetadata(admin, { annotations: { a: '2' } })).code, 200);
  });

  it('match constraints: `nodes` does not cover nodes/status; `nodes/status`, resourceNames and excludeResourceRules do what they say', async () => {
    await install('main-only', {
      matchConstraints: { resourceRules: [NODE_RULE] },
      matchConditions: ALICE_ONLY,
      validations: [{ expression: 'false' }],
    });
    assert.equal(
      (await outcome(alice.patchNodeStatus({ name: 'n1', body: { status: { phase: 'x' } } }, merge))).code,
      200,
      'a status write is not matched by "nodes"',
    );
    await install('status', {
      matchConstraints: { resourceRules: [{ ...NODE_RULE, resources: ['nodes/status'] }] },
      matchConditions: ALICE_ONLY,
      validations: [{ expression: 'false', message: 'no status' }],
    });
    assert.match(
      (await outcome(alice.patchNodeStatus({ name: 'n1', body: { status: { phase: 'y' } } }, merge))).body.message ??
        '',
      /no status$/,
    );
    await install('named', {
      matchConstraints: {
        resourceRules: [{ ...NODE_RULE, resources: ['*'], resourceNames: ['n9'] }],
        excludeResourceRules: [{ ...NODE_RULE, resourceNames: ['n9'], operations: ['DELETE'] }],
      },
      validations: [{ expression: 'false', message: 'n9 is frozen' }],
    });
    server.createNode({ metadata: { name: 'n9' } });
    assert.equal((await patchMetadata(admin, { annotations: { a: '1' } }, 'n9')).code, 422);
    assert.equal((await outcome(admin.deleteNode({ name: 'n9' }))).code, 200, 'excluded');
  });

  it('a binding with Warn lets the write through with a Warning header (kubectl prints it); Audit only records', async () => {
    /** A policy that fails every Node write of alice's with `message`. */
    const failAlice = (message: string) => ({
      matchConstraints: { resourceRules: [NODE_RULE] },
      matchConditions: ALICE_ONLY,
      validations: [{ expression: 'false', message }],
    });
    await install('warns', failAlice('think twice'), ['Warn']);
    await install('audits', failAlice('audited'), ['Audit']);
    const r = await kubectl(aliceEnv, ['annotate', 'node', 'n1', 'x=1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /Warning: Validation failed for ValidatingAdmissionPolicy 'warns' with binding 'warns-binding': think twice/,
    );
    assert.doesNotMatch(r.stderr, /audited/);
    assert.equal(server.getNode('n1')?.metadata?.annotations?.x, '1');
  });

  it("a binding's objectSelector narrows what its policy sees (new or old object labels)", async () => {
    await install(
      'selected',
      { matchConstraints: { resourceRules: [NODE_RULE] }, validations: [{ expression: 'false', message: 'selected' }] },
      ['Deny'],
      { matchResources: { objectSelector: { matchLabels: { locked: 'true' } } } },
    );
    assert.equal((await patchMetadata(admin, { annotations: { a: '1' } })).code, 200);
    server.patchNode('n1', { metadata: { labels: { locked: 'true' } } });
    assert.equal((await patchMetadata(admin, { labels: { locked: null } })).code, 422, 'the old object matches');
  });

  it('a policy whose CEL does not compile, or a binding without policyName or actions, is refused with 422 on create', async () => {
    const policy: KubeObject = {
      apiVersion: VAP,
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: 'p' },
      spec: { matchConstraints: {}, validations: [{ expression: 'object.metadata.name ==' }] },
    };
    const p = await kubectl(adminEnv, ['create', '-f', '-', '--validate=false'], { input: JSON.stringify(policy) });
    assert.notEqual(p.code, 0);
    assert.match(
      p.stderr,
      new RegExp(
        String.raw`The ValidatingAdmissionPolicy "p" is invalid: spec\.validations\[0\]\.expression: ` +
          String.raw`Invalid value: "object\.metadata\.name ==": compilation failed`,
      ),
    );
    assert.throws(
      () => server.createObjects([policy]),
      (e: { code?: number; message?: string }) =>
        e.code === 422 &&
        /^ValidatingAdmissionPolicy\.admissionregistration\.k8s\.io "p" is invalid: spec\.validations\[0\]\.expression/.test(
          e.message ?? '',
        ),
      'the direct helper checks the same',
    );
    const k = await kubectl(adminEnv, ['create', '-f', '-', '--validate=false'], {
      input: JSON.stringify({
        apiVersion: VAP,
        kind: 'ValidatingAdmissionPolicyBinding',
        metadata: { name: 'b' },
        spec: { policyName: 'p' },
      }),
    });
    assert.notEqual(k.code, 0);
    assert.match(k.stderr, /spec\.validationActions: Required value/);
  });
});
