/**
 * The shipped admission policy, packaging/kubernetes/node-policy.yaml, evaluated as it is (its CEL
 * run by an independent CEL evaluator, @bufbuild/cel, through the test API server's admission
 * code): wg-overlay's ServiceAccount, with a token bound to Node A, may add, change and remove
 * Node A's wg-overlay.io/ annotations and nothing else — not another Node, not another
 * annotation, label, taint, spec field, finalizer or owner reference, not without a node claim,
 * not with a token bound to a Pod (which recent clusters also give a node claim), no create or
 * delete — and other users are not affected. The Lease policy lets it write only wg-overlay's
 * location Leases, with its own Node as the holder, and never delete one. No case
 * may pass or fail through an evaluation error: every decision must come from an expression that
 * evaluated.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { validatingAdmission, type AdmissionResult, type Operation } from '../../kube-api/admission.js';
import type { UserInfo } from '../../kube-api/auth.js';
import type { KubeObject } from '../../kube-api/registry.js';

const docs = parseAllDocuments(readFileSync('packaging/kubernetes/node-policy.yaml', 'utf8')).map(
  (d) => d.toJS() as KubeObject,
);
const policy = docs.find((d) => d.kind === 'ValidatingAdmissionPolicy' && d.metadata?.name === 'wg-overlay-own-node')!;
const binding = docs.find(
  (d) => d.kind === 'ValidatingAdmissionPolicyBinding' && d.metadata?.name === 'wg-overlay-own-node',
)!;
const leasePolicy = docs.find(
  (d) => d.kind === 'ValidatingAdmissionPolicy' && d.metadata?.name === 'wg-overlay-own-lease',
)!;
const leaseBinding = docs.find(
  (d) => d.kind === 'ValidatingAdmissionPolicyBinding' && d.metadata?.name === 'wg-overlay-own-lease',
)!;
const SA = 'system:serviceaccount:wg-overlay:wg-overlay';
const SA_GROUPS = ['system:serviceaccounts', 'system:serviceaccounts:wg-overlay', 'system:authenticated'];

/** wg-overlay's ServiceAccount with a token bound to `node` (as the API server reports such a user), or to no Node. */
function wgOverlay(node?: string): UserInfo {
  const extra: Record<string, string[]> = {
    'authentication.kubernetes.io/credential-id': ['JTI=00000000-0000-0000-0000-000000000001'],
  };
  if (node) {
    extra['authentication.kubernetes.io/node-name'] = [node];
    extra['authentication.kubernetes.io/node-uid'] = [`uid-${node}`];
  }
  return { username: SA, uid: 'sa-uid', groups: SA_GROUPS, extra };
}

/**
 * wg-overlay's ServiceAccount with a token bound to a Pod, as recent clusters report it: the pod's
 * name and uid and, since ServiceAccountTokenPodNodeInfo, the name and uid of the pod's node.
 */
function podBound(pod: string, node?: string, keys: readonly string[] = ['pod-name', 'pod-uid']): UserInfo {
  const extra: Record<string, string[]> = {
    'authentication.kubernetes.io/credential-id': ['JTI=00000000-0000-0000-0000-000000000002'],
  };
  for (const k of keys) extra[`authentication.kubernetes.io/${k}`] = [k === 'pod-name' ? pod : `uid-${pod}`];
  if (node) {
    extra['authentication.kubernetes.io/node-name'] = [node];
    extra['authentication.kubernetes.io/node-uid'] = [`uid-${node}`];
  }
  return { username: SA, uid: 'sa-uid', groups: SA_GROUPS, extra };
}

/** A Node as a cluster has it: kubelet's labels, a foreign annotation, the daemon's annotations, taints, pod CIDRs. */
function node(name: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      uid: `uid-${name}`,
      resourceVersion: '42',
      labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' },
      annotations: {
        'node.alpha.kubernetes.io/ttl': '0',
        'wg-overlay.io/public-key': 'aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=',
        'wg-overlay.io/endpoint': '192.0.2.10:51820',
      },
    },
    spec: {
      podCIDR: '10.244.1.0/24',
      podCIDRs: ['10.244.1.0/24'],
      taints: [{ key: 'dedicated', value: 'net', effect: 'NoSchedule' }],
    },
    status: { addresses: [{ type: 'InternalIP', address: '192.0.2.10' }] },
  };
}

/** A Node as the tests edit it (every part optional, as a write may drop it). */
interface EditableNode {
  metadata: {
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    finalizers?: string[];
    ownerReferences?: unknown[];
  };
  spec: {
    taints?: { key: string; value?: string; effect: string }[];
    unschedulable?: boolean;
    podCIDR?: string;
    podCIDRs?: string[];
  };
}

/** `base` changed by `edit` (on a deep copy). */
function changed(base: KubeObject, edit: (n: EditableNode) => void): KubeObject {
  const n = JSON.parse(JSON.stringify(base)) as KubeObject;
  edit(n as unknown as EditableNode);
  return n;
}

/** Runs the shipped policy on one request; fails the test if any expression could not be evaluated. */
function admit(
  user: UserInfo,
  oldObject: KubeObject | null,
  object: KubeObject | null,
  operation: Operation = 'UPDATE',
): AdmissionResult {
  const name = (object ?? oldObject)?.metadata?.name ?? '';
  const r = validatingAdmission([policy], [binding], {
    operation,
    group: '',
    version: 'v1',
    resource: 'nodes',
    kind: 'Node',
    name,
    object,
    oldObject,
    userInfo: user,
  });
  const errors = r.decisions.filter((d) => d.error);
  assert.deepEqual(errors, [], 'every expression of the policy must evaluate (no decision by error)');
  return r;
}

function allowed(r: AdmissionResult): void {
  assert.equal(r.denial, undefined, r.denial?.message);
  assert.ok(r.decisions.length > 0, 'the policy applied');
}

function denied(r: AdmissionResult, why: RegExp): void {
  assert.ok(r.denial, 'the request must be denied');
  assert.equal(r.denial.code, 403);
  assert.equal(r.denial.reason, 'Forbidden');
  assert.match(r.denial.message, why);
}

describe('unit: packaging: node-policy.yaml (the shipped CEL, evaluated)', () => {
  const A = node('node-a');
  const B = node('node-b');
  const asA = wgOverlay('node-a');

  it('is a ValidatingAdmissionPolicy (v1, failurePolicy Fail) on core/v1 nodes CREATE, UPDATE and DELETE, bound with Deny', () => {
    assert.equal(policy.apiVersion, 'admissionregistration.k8s.io/v1');
    const spec = policy.spec as { failurePolicy: string; matchConstraints: { resourceRules: unknown } };
    assert.equal(spec.failurePolicy, 'Fail');
    assert.deepEqual(spec.matchConstraints.resourceRules, [
      { apiGroups: [''], apiVersions: ['v1'], resources: ['nodes'], operations: ['CREATE', 'UPDATE', 'DELETE'] },
    ]);
    assert.equal(binding.apiVersion, 'admissionregistration.k8s.io/v1');
    assert.deepEqual(binding.spec, { policyName: policy.metadata?.name, validationActions: ['Deny'] });
    assert.equal(docs.length, 4, 'the Node policy and the Lease policy, each with its binding');
  });

  it('allows the own Node: adding a wg-overlay.io/ annotation', () => {
    allowed(
      admit(
        asA,
        A,
        changed(A, (n) => (n.metadata.annotations!['wg-overlay.io/overlay-address'] = '100.64.0.10')),
      ),
    );
  });

  it('allows the own Node: changing a wg-overlay.io/ annotation', () => {
    allowed(
      admit(
        asA,
        A,
        changed(A, (n) => (n.metadata.annotations!['wg-overlay.io/endpoint'] = '198.51.100.7:51820')),
      ),
    );
  });

  it('allows the own Node: removing a wg-overlay.io/ annotation', () => {
    allowed(
      admit(
        asA,
        A,
        changed(A, (n) => delete n.metadata.annotations!['wg-overlay.io/endpoint']),
      ),
    );
  });

  it('allows the own Node: the first publish on a Node without any annotations', () => {
    const bare = changed(A, (n) => delete n.metadata.annotations);
    allowed(
      admit(
        asA,
        bare,
        changed(
          bare,
          (n) =>
            (n.metadata.annotations = {
              'wg-overlay.io/public-key': 'k',
              'wg-overlay.io/endpoint': 'e',
              'wg-overlay.io/overlay-address': 'a',
            }),
        ),
      ),
    );
  });

  it('allows the own Node: a write that changes nothing', () => {
    allowed(
      admit(
        asA,
        A,
        changed(A, () => undefined),
      ),
    );
  });

  it('denies another Node, even under wg-overlay.io/', () => {
    denied(
      admit(
        asA,
        B,
        changed(B, (n) => (n.metadata.annotations!['wg-overlay.io/endpoint'] = '203.0.113.66:51820')),
      ),
      /nodes "node-b" is forbidden: .*denied request: wg-overlay may change only its own Node$/,
    );
  });

  it("denies another Node's labels", () => {
    denied(
      admit(
        asA,
        B,
        changed(B, (n) => (n.metadata.labels!.evil = 'yes')),
      ),
      /may change only its own Node$/,
    );
  });

  it('denies adding an annotation outside wg-overlay.io/', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.metadata.annotations!['example.com/x'] = '1')),
      ),
      /may change only annotations under wg-overlay\.io\/$/,
    );
  });

  it('denies changing an annotation outside wg-overlay.io/', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.metadata.annotations!['node.alpha.kubernetes.io/ttl'] = '30')),
      ),
      /may change only annotations under wg-overlay\.io\/$/,
    );
  });

  it('denies removing an annotation outside wg-overlay.io/', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => delete n.metadata.annotations!['node.alpha.kubernetes.io/ttl']),
      ),
      /may change only annotations under wg-overlay\.io\/$/,
    );
  });

  it('denies removing all annotations when one is outside wg-overlay.io/', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => delete n.metadata.annotations),
      ),
      /may change only annotations under wg-overlay\.io\/$/,
    );
  });

  it('denies look-alike prefixes (wg-overlay.io.evil/, x.wg-overlay.io/, wg-overlay.io without a slash)', () => {
    for (const key of ['wg-overlay.io.evil/x', 'x.wg-overlay.io/x', 'wg-overlay.io', 'WG-OVERLAY.IO/x']) {
      denied(
        admit(
          asA,
          A,
          changed(A, (n) => (n.metadata.annotations![key] = '1')),
        ),
        /may change only annotations under wg-overlay\.io\/$/,
      );
    }
  });

  it('denies adding a label', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.metadata.labels!['node-role.kubernetes.io/control-plane'] = '')),
      ),
      /may not change a Node's labels$/,
    );
  });

  it('denies changing a label', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.metadata.labels!['kubernetes.io/hostname'] = 'node-b')),
      ),
      /may not change a Node's labels$/,
    );
  });

  it('denies removing a label', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => delete n.metadata.labels!['kubernetes.io/os']),
      ),
      /may not change a Node's labels$/,
    );
  });

  it('denies adding a taint', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => n.spec.taints!.push({ key: 'evict', effect: 'NoExecute' })),
      ),
      /may not change a Node's spec/,
    );
  });

  it('denies removing a taint', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => delete n.spec.taints),
      ),
      /may not change a Node's spec/,
    );
  });

  it('denies marking the Node unschedulable (cordon)', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.spec.unschedulable = true)),
      ),
      /may not change a Node's spec/,
    );
  });

  it('denies changing the pod CIDRs', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.spec.podCIDRs = ['10.244.1.0/24', '10.99.0.0/16'])),
      ),
      /may not change a Node's spec/,
    );
  });

  it('denies setting an empty podCIDR', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.spec.podCIDR = '')),
      ),
      /may not change a Node's spec/,
    );
  });

  it('denies adding a finalizer', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.metadata.finalizers = ['example.com/hold'])),
      ),
      /may not change a Node's finalizers or owner references$/,
    );
  });

  it('denies adding an owner reference (the garbage collector would delete the Node with its owner)', () => {
    const owner = { apiVersion: 'v1', kind: 'ConfigMap', name: 'x', uid: '00000000-0000-0000-0000-0000000000aa' };
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => (n.metadata.ownerReferences = [owner])),
      ),
      /may not change a Node's finalizers or owner references$/,
    );
  });

  it('denies a change mixing an allowed annotation with a label', () => {
    denied(
      admit(
        asA,
        A,
        changed(A, (n) => {
          n.metadata.annotations!['wg-overlay.io/endpoint'] = '198.51.100.7:51820';
          n.metadata.labels!.extra = '1';
        }),
      ),
      /may not change a Node's labels$/,
    );
  });

  it('denies a token that names no Node (no authentication.kubernetes.io/node-name)', () => {
    denied(
      admit(
        wgOverlay(),
        A,
        changed(A, (n) => (n.metadata.annotations!['wg-overlay.io/endpoint'] = 'x')),
      ),
      /this wg-overlay credential names no Node/,
    );
  });

  it("denies a Pod-bound token even though it carries the pod's node name (anyone who may create a Pod could choose the node)", () => {
    const annotate = changed(A, (n) => (n.metadata.annotations!['wg-overlay.io/endpoint'] = '198.51.100.7:51820'));
    for (const user of [
      podBound('evil', 'node-a'),
      podBound('evil', 'node-a', ['pod-name']),
      podBound('evil', 'node-a', ['pod-uid']),
      podBound('evil'),
    ])
      denied(
        admit(user, A, annotate),
        /this wg-overlay credential is bound to a Pod, not to a Node: give each node a token/,
      );
    // The same write with the Node-bound token of that node passes: only the binding differs.
    allowed(admit(asA, A, annotate));
  });

  it('denies a user whose extra is absent altogether', () => {
    denied(
      admit(
        { username: SA },
        A,
        changed(A, (n) => (n.metadata.annotations!['wg-overlay.io/endpoint'] = 'x')),
      ),
      /this wg-overlay credential names no Node/,
    );
  });

  it('denies deleting a Node, even its own', () => {
    denied(admit(asA, A, null, 'DELETE'), /nodes "node-a" is forbidden: .*wg-overlay may not create or delete Nodes$/);
  });

  it('denies creating a Node, even one of its own name', () => {
    denied(admit(asA, null, node('node-a'), 'CREATE'), /wg-overlay may not create or delete Nodes$/);
  });

  it('does not apply to other users: kubelet, an admin, another ServiceAccount with a node claim', () => {
    const others: UserInfo[] = [
      { username: 'system:node:node-a', groups: ['system:nodes', 'system:authenticated'] },
      { username: 'kubernetes-admin', groups: ['system:masters', 'system:authenticated'] },
      {
        username: 'system:serviceaccount:kube-system:other',
        groups: SA_GROUPS,
        extra: { 'authentication.kubernetes.io/node-name': ['node-a'] },
      },
    ];
    for (const user of others) {
      const r = admit(
        user,
        B,
        changed(B, (n) => (n.metadata.labels!.any = 'thing')),
      );
      assert.equal(r.denial, undefined, user.username);
      assert.deepEqual(r.decisions, [], `${user.username}: the policy is not even evaluated`);
    }
  });

  it('a denial is the Status kube-apiserver sends: 403 Forbidden, the policy and binding named, one cause', () => {
    const r = admit(
      asA,
      B,
      changed(B, (n) => (n.metadata.annotations!['wg-overlay.io/endpoint'] = 'x')),
    );
    const msg =
      "ValidatingAdmissionPolicy 'wg-overlay-own-node' with binding 'wg-overlay-own-node' denied request: wg-overlay may change only its own Node";
    assert.deepEqual(r.denial?.toStatus(), {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      code: 403,
      reason: 'Forbidden',
      message: `nodes "node-b" is forbidden: ${msg}`,
      details: { name: 'node-b', kind: 'nodes', causes: [{ message: msg }] },
    });
  });
});

/** A location Lease held by `holder`. */
function lease(name: string, holder: string | undefined): KubeObject {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace: 'wg-overlay', labels: { 'app.kubernetes.io/managed-by': 'wg-overlay' } },
    spec: { ...(holder ? { holderIdentity: holder } : {}), leaseDurationSeconds: 5 },
  };
}

/** Runs the shipped Lease policy on one request; fails the test if an expression could not be evaluated. */
function admitLease(
  user: UserInfo,
  oldObject: KubeObject | null,
  object: KubeObject | null,
  operation: Operation,
): AdmissionResult {
  const name = (object ?? oldObject)?.metadata?.name ?? '';
  const r = validatingAdmission([leasePolicy], [leaseBinding], {
    operation,
    group: 'coordination.k8s.io',
    version: 'v1',
    resource: 'leases',
    kind: 'Lease',
    name,
    namespace: 'wg-overlay',
    object,
    oldObject,
    userInfo: user,
  });
  assert.deepEqual(
    r.decisions.filter((d) => d.error),
    [],
    'every expression of the policy must evaluate (no decision by error)',
  );
  return r;
}

describe('unit: packaging: node-policy.yaml, the location Leases (the shipped CEL, evaluated)', () => {
  const asA = wgOverlay('node-a');
  const L = 'wg-overlay-loc-0123456789abcdef';

  it('allows taking a free Lease, renewing it, and taking over one that another node held', () => {
    allowed(admitLease(asA, null, lease(L, 'node-a'), 'CREATE'));
    allowed(admitLease(asA, lease(L, 'node-a'), lease(L, 'node-a'), 'UPDATE'));
    allowed(admitLease(asA, lease(L, 'node-b'), lease(L, 'node-a'), 'UPDATE'));
  });

  it('denies naming another node as the holder, or none', () => {
    denied(admitLease(asA, null, lease(L, 'node-b'), 'CREATE'), /only with its own Node as the holder/);
    denied(admitLease(asA, lease(L, 'node-a'), lease(L, undefined), 'UPDATE'), /only with its own Node as the holder/);
  });

  it("denies other Leases (a kubelet's heartbeat, a controller's lock) and every delete", () => {
    denied(
      admitLease(asA, lease('kube-controller-manager', 'x'), lease('kube-controller-manager', 'node-a'), 'UPDATE'),
      /only its own location Leases/,
    );
    denied(admitLease(asA, lease(L, 'node-a'), null, 'DELETE'), /may not delete Leases/);
  });

  it('denies a Pod-bound token, even one carrying the node name of its holder', () => {
    denied(admitLease(podBound('evil', 'node-a'), null, lease(L, 'node-a'), 'CREATE'), /bound to a Pod, not to a Node/);
    denied(
      admitLease(podBound('evil', 'node-a'), lease(L, 'node-a'), lease(L, 'node-a'), 'UPDATE'),
      /bound to a Pod, not to a Node/,
    );
  });

  it('denies a token that names no Node; other users are not checked', () => {
    denied(admitLease(wgOverlay(), null, lease(L, 'node-a'), 'CREATE'), /names no Node/);
    const r = admitLease(
      { username: 'kubernetes-admin', groups: ['system:masters'] },
      lease(L, 'node-a'),
      null,
      'DELETE',
    );
    assert.equal(r.denial, undefined);
    assert.deepEqual(r.decisions, []);
  });
});
