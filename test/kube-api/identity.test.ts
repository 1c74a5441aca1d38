/*
 * Integration tests of the test API server's identities: several bearer tokens each mapped to a
 * user, the single-token option still a cluster admin, and service-account tokens from the
 * TokenRequest API (the real `kubectl create token`, which speaks protobuf, and the direct
 * helper): Node-bound tokens carry the node-name claim, expire, stop working when their Node is
 * deleted, and can be revoked.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import {
  ADMIN_USER,
  EXTRA_CREDENTIAL_ID,
  EXTRA_NODE_NAME,
  EXTRA_NODE_UID,
  KubeApiServer,
  type KubeObject,
} from './server.js';
import { isObject } from './json.js';
import { kubectl, kubectlOk, type KubectlEnv } from './kubectl.js';
import { coreClient as client } from './testing.js';

const ADMIN_TOKEN = 'identity-admin-token';

/** The claims of a service-account JWT that these tests read. */
type Claims = { sub: string; iat: number; exp: number; jti: string; 'kubernetes.io': { node?: unknown } };

async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    return err instanceof k8s.ApiException ? (err.code as number) : -1;
  }
}

/** The claims of a JWT (its middle part), checked to be a service-account token's. */
function claims(token: string): Claims {
  const c: unknown = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
  const ok =
    isObject(c) &&
    typeof c.sub === 'string' &&
    typeof c.iat === 'number' &&
    typeof c.exp === 'number' &&
    typeof c.jti === 'string' &&
    isObject(c['kubernetes.io']);
  if (!ok) assert.fail(`not the claims of a service-account token: ${JSON.stringify(c)}`);
  return c as Claims;
}

describe('kube-api: identities (tokens, users, TokenRequest)', function () {
  this.timeout(30_000);
  let server: KubeApiServer;
  let dir: string;
  let admin: KubectlEnv;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kube-api-identity-'));
    server = new KubeApiServer({
      token: ADMIN_TOKEN,
      users: {
        'kubelet-a-token': { username: 'system:node:node-a', groups: ['system:nodes', 'system:authenticated'] },
      },
      serviceAccounts: true,
    });
    await server.start();
    admin = { kubeconfig: join(dir, 'admin'), cacheDir: join(dir, 'cache') };
    await server.writeKubeconfig(admin.kubeconfig);
    server.resource('serviceaccounts').create({ metadata: { name: 'wg-overlay', namespace: 'wg-overlay' } });
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    for (const n of server.listNodes()) server.deleteNode(n.metadata?.name as string);
    server.createNode({ metadata: { name: 'node-a' } });
    server.createNode({ metadata: { name: 'node-b' } });
  });

  it('the single `token` option is a cluster admin, as before; a wrong or missing token gets 401', async () => {
    assert.equal(await codeOf(client(server, ADMIN_TOKEN).listNode()), 200);
    const last = server.requests[server.requests.length - 1]!;
    assert.equal(last.user, ADMIN_USER.username);
    assert.equal(await codeOf(client(server, 'nope').listNode()), 401);
  });

  it('each token of `users` authenticates as its own user; addToken adds one, revokeToken ends it', async () => {
    assert.equal(await codeOf(client(server, 'kubelet-a-token').readNode({ name: 'node-a' })), 200);
    assert.equal(server.requests[server.requests.length - 1]!.user, 'system:node:node-a');
    server.addToken('late-token', { username: 'late' });
    assert.equal(await codeOf(client(server, 'late-token').listNode()), 200);
    assert.equal(server.requests[server.requests.length - 1]!.user, 'late');
    assert.equal(server.revokeToken('late-token'), true);
    assert.equal(await codeOf(client(server, 'late-token').listNode()), 401);
    assert.equal(server.revokeToken('late-token'), false);
  });

  it('`kubectl create token --bound-object-kind Node` (a protobuf TokenRequest) mints a JWT with the node claims', async () => {
    const token = (
      await kubectlOk(admin, [
        '-n',
        'wg-overlay',
        'create',
        'token',
        'wg-overlay',
        '--bound-object-kind',
        'Node',
        '--bound-object-name',
        'node-a',
        '--duration',
        '8760h',
      ])
    ).trim();
    const tr = server.requests
      .filter((r) => r.method === 'POST' && r.path === '/api/v1/namespaces/wg-overlay/serviceaccounts/wg-overlay/token')
      .pop();
    assert.equal(tr?.contentType, 'application/vnd.kubernetes.protobuf');
    const c = claims(token);
    assert.equal(c.sub, 'system:serviceaccount:wg-overlay:wg-overlay');
    assert.deepEqual(c['kubernetes.io'].node, { name: 'node-a', uid: server.getNode('node-a')?.metadata?.uid });
    assert.equal(c.exp - c.iat, 8760 * 3600);
    assert.equal(await codeOf(client(server, token).listNode()), 200);
    const seen = server.requests[server.requests.length - 1]!;
    assert.equal(seen.user, 'system:serviceaccount:wg-overlay:wg-overlay');
    assert.equal(seen.credentialId, `JTI=${c.jti}`);
  });

  it('TokenRequest refuses a missing ServiceAccount or Node, a lifetime under 10 minutes, and other bound kinds', async () => {
    const bad = async (args: string[], re: RegExp) => {
      const r = await kubectl(admin, ['-n', 'wg-overlay', 'create', 'token', ...args]);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, re, args.join(' '));
    };
    await bad(['nobody'], /serviceaccounts "nobody" not found/);
    await bad(
      ['wg-overlay', '--bound-object-kind', 'Node', '--bound-object-name', 'node-z'],
      /nodes "node-z" not found/,
    );
    await bad(['wg-overlay', '--duration', '5m'], /may not specify a duration less than 10 minutes/);
    await bad(['wg-overlay', '--bound-object-kind', 'Pod', '--bound-object-name', 'p'], /binds tokens to Nodes only/);
  });

  it('a Node-bound token from createServiceAccountToken carries node-name, node-uid and credential-id, and dies with its Node', async () => {
    const t = server.createServiceAccountToken({ namespace: 'wg-overlay', name: 'wg-overlay', boundNode: 'node-b' });
    assert.deepEqual(t.user.extra?.[EXTRA_NODE_NAME], ['node-b']);
    assert.deepEqual(t.user.extra?.[EXTRA_NODE_UID], [server.getNode('node-b')?.metadata?.uid]);
    assert.deepEqual(t.user.extra?.[EXTRA_CREDENTIAL_ID], [`JTI=${t.id}`]);
    assert.deepEqual(t.user.groups, [
      'system:serviceaccounts',
      'system:serviceaccounts:wg-overlay',
      'system:authenticated',
    ]);
    const api = client(server, t.token);
    assert.equal(await codeOf(api.listNode()), 200);
    server.deleteNode('node-b');
    assert.equal(await codeOf(api.listNode()), 401, 'the bound Node is gone');
    server.createNode({ metadata: { name: 'node-b' } } as KubeObject);
    assert.equal(await codeOf(api.listNode()), 401, 'a new Node of the same name has another uid');
  });

  it('an expired token gets 401', async () => {
    const t = server.createServiceAccountToken({ namespace: 'wg-overlay', name: 'wg-overlay', expirationSeconds: 1 });
    assert.equal(await codeOf(client(server, t.token).listNode()), 200);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await codeOf(client(server, t.token).listNode()), 401);
  });

  it('a revoked service-account token gets 401 while a newer one of the same account works', async () => {
    const old = server.createServiceAccountToken({ namespace: 'wg-overlay', name: 'wg-overlay', boundNode: 'node-a' });
    const fresh = server.createServiceAccountToken({
      namespace: 'wg-overlay',
      name: 'wg-overlay',
      boundNode: 'node-a',
    });
    assert.ok(server.revokeToken(old.token));
    assert.equal(await codeOf(client(server, old.token).listNode()), 401);
    assert.equal(await codeOf(client(server, fresh.token).listNode()), 200);
  });

  it('without `token` or `users` nobody needs credentials (everyone is an admin), but a known token still names its user', async () => {
    const open = new KubeApiServer({ tls: false });
    await open.start();
    try {
      open.createNode({ metadata: { name: 'n' } });
      const t = open.createServiceAccountToken({ namespace: 'ns', name: 'sa', boundNode: 'n' });
      assert.equal(await codeOf(client(open, 'anything').listNode()), 200);
      assert.equal(open.requests[open.requests.length - 1]!.user, ADMIN_USER.username);
      assert.equal(await codeOf(client(open, t.token).listNode()), 200);
      assert.equal(open.requests[open.requests.length - 1]!.user, 'system:serviceaccount:ns:sa');
    } finally {
      await open.stop();
    }
  });
});
