/**
 * `wg-overlay kubeconfig`: the files it writes (mode 0600, atomic: the kubeconfig with the CA
 * embedded, naming the token file next to it) load the way the daemon loads them and
 * authenticate against a real HTTPS API server (the test API server, through client-node and
 * through kubectl); bad inputs are refused with a message that says what to fix, an existing file
 * is replaced only with --force, and --token-only replaces just the token (keeping its owner).
 */
import assert from 'node:assert/strict';
import { chownSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
import {
  checkCaData,
  checkCaPem,
  checkServerUrl,
  checkToken,
  DEFAULT_KUBECONFIG_PATH,
  describeToken,
  kubeconfigCommand,
  KubeconfigCommandError,
} from '../../../service/src/cli/kubeconfig.js';
import { KubeconfigError, loadKubeconfig } from '../../../service/src/kube/kubeconfig.js';
import { main } from '../../../service/src/main.js';
import { KubeApiServer } from '../../kube-api/server.js';
import { run } from '../../support/process.js';

/** Collects what a command writes. */
class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

async function runCmd(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new Capture();
  const err = new Capture();
  const code = await kubeconfigCommand(args, out, err);
  return { code, out: out.text, err: err.text };
}

describe('unit: packaging: wg-overlay kubeconfig', function () {
  this.timeout(30_000);
  const TOKEN = 'abc.def-123_XYZ';
  let api: KubeApiServer;
  let dir: string;
  let ca: string;
  let tokenFile: string;

  before(async () => {
    api = new KubeApiServer({ token: TOKEN });
    await api.start();
    api.createNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'n1' },
      status: { addresses: [{ type: 'InternalIP', address: '192.0.2.11' }] },
    });
    dir = mkdtempSync(join(tmpdir(), 'wgo-kubeconfig-'));
    ca = join(dir, 'ca.crt');
    writeFileSync(ca, api.caPem!);
    tokenFile = join(dir, 'token-in');
    writeFileSync(tokenFile, `${TOKEN}\n`);
  });
  after(async () => {
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes a mode-0600 kubeconfig that the daemon's loader accepts and that lists Nodes over HTTPS with the token", async () => {
    const out = join(dir, 'kc1');
    const old = process.umask(0o022);
    let r;
    try {
      r = await runCmd(['--server', api.url!, '--ca', ca, '--token-file', tokenFile, '--output', out]);
    } finally {
      process.umask(old);
    }
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`wrote ${out} \\(mode 0600\\)`));
    assert.equal(statSync(out).mode & 0o777, 0o600);
    const kc = await loadKubeconfig(out);
    assert.equal(kc.getCurrentCluster()?.server, api.url);
    const nodes = await kc.makeApiClient(k8s.CoreV1Api).listNode();
    assert.deepEqual(
      nodes.items.map((n) => n.metadata?.name),
      ['n1'],
    );
    const text = readFileSync(out, 'utf8');
    assert.ok(
      !text.includes(tokenFile) && !text.includes(ca),
      'no references to the input files: the CA is embedded, the token copied',
    );
    assert.ok(!text.includes(TOKEN), 'the token is not in the kubeconfig');
    assert.match(text, new RegExp(`tokenFile: ${join(dir, 'token')}\n`));
    assert.equal(readFileSync(join(dir, 'token'), 'utf8'), `${TOKEN}\n`, 'the token file holds the token alone');
    assert.equal(statSync(join(dir, 'token')).mode & 0o777, 0o600);
  });

  it('kubectl (an independent client) uses the file as it is', async () => {
    const out = join(dir, 'kc-kubectl');
    assert.equal(
      (await runCmd(['--server', api.url!, '--ca', ca, '--token-file', tokenFile, '--output', out])).code,
      0,
    );
    // Asynchronously: the API server runs in this process.
    const r = await run('kubectl', ['--kubeconfig', out, 'get', 'nodes', '-o', 'name'], {
      env: { KUBECACHEDIR: join(dir, 'kcache') },
      allowFailure: true,
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'node/n1');
  });

  it('a wrong token is rejected by the server (the token really is what authenticates)', async () => {
    const bad = join(dir, 'bad-token');
    writeFileSync(bad, 'not-the-token');
    const out = join(dir, 'kc-bad');
    assert.equal((await runCmd(['--server', api.url!, '--ca', ca, '--token-file', bad, '--output', out])).code, 0);
    const kc = await loadKubeconfig(out);
    await assert.rejects(kc.makeApiClient(k8s.CoreV1Api).listNode(), (e: { code?: number }) => e.code === 401);
  });

  it('refuses to replace an existing file unless --force, and --force replaces it atomically with mode 0600', async () => {
    const out = join(dir, 'kc-existing');
    writeFileSync(out, 'hand-made\n', { mode: 0o644 });
    const r = await runCmd(['--server', api.url!, '--ca', ca, '--token-file', tokenFile, '--output', out]);
    assert.equal(r.code, 1);
    assert.match(r.err, /already exists; add --force to replace it/);
    assert.equal(readFileSync(out, 'utf8'), 'hand-made\n');
    const ino = statSync(out).ino;
    const f = await runCmd(['--server', api.url!, '--ca', ca, '--token-file', tokenFile, '--output', out, '--force']);
    assert.equal(f.code, 0, f.err);
    assert.notEqual(statSync(out).ino, ino, 'a new file renamed into place');
    assert.equal(statSync(out).mode & 0o777, 0o600);
    assert.match(readFileSync(out, 'utf8'), /current-context: wg-overlay/);
  });

  it('reads the token from standard input with --token-file -', async () => {
    const out = join(dir, 'kc-stdin');
    const main = new URL('../../../service/src/main.js', import.meta.url).href;
    const script = `import('${main}').then(async (m) => { process.exitCode = await m.main(process.argv.slice(1)); })`;
    const r = await run(
      process.execPath,
      ['-e', script, 'kubeconfig', '--server', api.url!, '--ca', ca, '--token-file', '-', '--output', out],
      { input: `${TOKEN}\n`, allowFailure: true },
    );
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'token'), 'utf8'), `${TOKEN}\n`);
    await (await loadKubeconfig(out)).makeApiClient(k8s.CoreV1Api).listNode();
  });

  it('says what is wrong with bad inputs, and writes nothing', async () => {
    const out = join(dir, 'kc-never');
    const cases: Array<[string[], RegExp]> = [
      [['--server', 'http://10.0.0.1:6443'], /must be an https:\/\/ URL/],
      [['--server', '10.0.0.1:6443'], /is not a URL|must be an https/],
      [['--server', 'https://user:pw@10.0.0.1:6443'], /must not contain credentials/],
      [['--ca', join(dir, 'missing.crt')], /--ca .*missing\.crt: does not exist/],
      [['--ca', tokenFile], /no PEM certificate found/],
      [['--token-file', join(dir, 'empty')], /the file is empty/],
      [['--token-file', join(dir, 'two-lines')], /whitespace or several lines/],
      [['--output', join(dir, 'no-such-dir', 'kc')], /the directory .*no-such-dir does not exist/],
    ];
    writeFileSync(join(dir, 'empty'), '\n');
    writeFileSync(join(dir, 'two-lines'), 'a\nb\n');
    for (const [override, re] of cases) {
      const args: Record<string, string> = {
        '--server': api.url!,
        '--ca': ca,
        '--token-file': tokenFile,
        '--output': out,
      };
      for (let i = 0; i < override.length; i += 2) args[override[i]!] = override[i + 1]!;
      const r = await runCmd(Object.entries(args).flat());
      assert.equal(r.code, 1, `${override.join(' ')}: ${r.err}`);
      assert.match(r.err, re, override.join(' '));
      assert.throws(() => statSync(out), `${override.join(' ')} wrote nothing`);
    }
    const missing = await runCmd(['--server', api.url!]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /missing --ca, --token-file/);
    assert.match(missing.err, /Usage: wg-overlay kubeconfig/);
    const both = await runCmd(['--server', api.url!, '--ca', ca, '--ca-data', 'x', '--token-file', tokenFile]);
    assert.deepEqual([both.code, /give --ca or --ca-data, not both/.test(both.err)], [2, true]);
    const rotateWithServer = await runCmd(['--token-only', '--server', api.url!, '--token-file', tokenFile]);
    assert.deepEqual(
      [rotateWithServer.code, /--token-only replaces only the token: leave out --server/.test(rotateWithServer.err)],
      [2, true],
    );
  });

  it('checks each input on its own', () => {
    assert.equal(checkServerUrl('https://api.example.com:6443/'), 'https://api.example.com:6443');
    assert.throws(() => checkServerUrl('https://h/?x=1'), KubeconfigCommandError);
    assert.equal(checkToken('  tok\n', 'f'), 'tok');
    assert.throws(() => checkToken('to\u0001k', 'f'), /non-printable/);
    assert.throws(
      () => checkCaPem('-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n', 'f'),
      /cannot be parsed/,
    );
    assert.equal(checkCaPem(`junk before\n${api.caPem!}`, 'f'), api.caPem!.trim() + '\n');
    assert.equal(DEFAULT_KUBECONFIG_PATH, '/etc/wg-overlay/kubeconfig');
    assert.equal(checkCaData(Buffer.from(api.caPem!).toString('base64')), api.caPem!.trim() + '\n');
    assert.throws(() => checkCaData('bm90IGEgY2VydA=='), /--ca-data .*no PEM certificate found/);
  });

  it('--ca-data takes the CA as a kubeconfig carries it (base64), so no CA file is needed on the node', async () => {
    const sub = mkdtempSync(join(dir, 'ca-data-'));
    const out = join(sub, 'kubeconfig');
    const r = await runCmd([
      '--server',
      api.url!,
      '--ca-data',
      Buffer.from(api.caPem!).toString('base64'),
      '--token-file',
      tokenFile,
      '--output',
      out,
    ]);
    assert.equal(r.code, 0, r.err);
    await (await loadKubeconfig(out)).makeApiClient(k8s.CoreV1Api).listNode();
  });

  it('--token-only replaces only the token, and a client loaded before uses the new one on its next request', async () => {
    const sub = mkdtempSync(join(dir, 'rotate-'));
    const out = join(sub, 'kubeconfig');
    const first = api.createServiceAccountToken({ namespace: 'wg-overlay', name: 'wg-overlay', boundNode: 'n1' });
    const second = api.createServiceAccountToken({ namespace: 'wg-overlay', name: 'wg-overlay', boundNode: 'n1' });
    writeFileSync(join(dir, 'first'), first.token);
    writeFileSync(join(dir, 'second'), second.token);
    assert.equal(
      (await runCmd(['--server', api.url!, '--ca', ca, '--token-file', join(dir, 'first'), '--output', out])).code,
      0,
    );
    const kubeconfigBefore = readFileSync(out, 'utf8');
    const core = (await loadKubeconfig(out)).makeApiClient(k8s.CoreV1Api);
    await core.listNode();
    assert.equal(api.requests[api.requests.length - 1]?.credentialId, `JTI=${first.id}`);
    const r = await runCmd(['--token-only', '--token-file', join(dir, 'second'), '--output', out]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /bound to Node n1/);
    assert.match(r.out, /no restart needed/);
    assert.equal(readFileSync(out, 'utf8'), kubeconfigBefore, 'the kubeconfig is untouched');
    api.revokeToken(first.token);
    await core.listNode();
    assert.equal(
      api.requests[api.requests.length - 1]?.credentialId,
      `JTI=${second.id}`,
      'the same client, the new token',
    );
  });

  it("--token-only keeps the token file's owner and group, and its mode up to 0640", async () => {
    const sub = mkdtempSync(join(dir, 'owner-'));
    const out = join(sub, 'kubeconfig');
    assert.equal(
      (await runCmd(['--server', api.url!, '--ca', ca, '--token-file', tokenFile, '--output', out])).code,
      0,
    );
    chownSync(join(sub, 'token'), 4242, 4343);
    chmodSync(join(sub, 'token'), 0o644);
    assert.equal((await runCmd(['--token-only', '--token-file', tokenFile, '--output', out])).code, 0);
    const st = statSync(join(sub, 'token'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [4242, 4343, 0o640], 'never world-readable');
  });

  it('--token-only refuses a missing kubeconfig and one that embeds its token (written by an older version)', async () => {
    const sub = mkdtempSync(join(dir, 'old-'));
    const missing = await runCmd(['--token-only', '--token-file', tokenFile, '--output', join(sub, 'nope')]);
    assert.deepEqual([missing.code, /does not exist: write it first with --server/.test(missing.err)], [1, true]);
    writeFileSync(join(sub, 'kubeconfig'), JSON.stringify(api.kubeconfig({ token: TOKEN })));
    const old = await runCmd(['--token-only', '--token-file', tokenFile, '--output', join(sub, 'kubeconfig')]);
    assert.equal(old.code, 1);
    assert.match(old.err, /embeds its token .*--force; after that --token-only works/);
    assert.ok(!old.err.includes(TOKEN), 'errors never carry the token');
  });

  it('says what the token is: its Node and expiry; refuses an expired one; warns when it names no Node, another Node or a Pod', () => {
    const jwt = (claims: object) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
    const sub = 'system:serviceaccount:wg-overlay:wg-overlay';
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const bound = describeToken(jwt({ sub, exp, 'kubernetes.io': { node: { name: 'n1' } } }), 'f', 'n1');
    assert.match(bound.text, new RegExp(`^${sub}, bound to Node n1, expires 20`));
    assert.deepEqual(bound.warnings, []);
    assert.match(describeToken(jwt({ sub, exp }), 'f').warnings.join(), /names no Node/);
    assert.match(
      describeToken(jwt({ sub, exp, 'kubernetes.io': { node: { name: 'n2' } } }), 'f', 'n1').warnings.join(),
      /bound to Node n2, but this node's wg-overlay is Node n1/,
    );
    const podBound = describeToken(
      jwt({ sub, exp, 'kubernetes.io': { pod: { name: 'p' }, node: { name: 'n1' } } }),
      'f',
    );
    assert.match(podBound.text, /bound to pod p on Node n1/);
    assert.match(podBound.warnings.join(), /bound to a Pod, not to a Node: node-policy\.yaml refuses it/);
    assert.throws(
      () => describeToken(jwt({ sub, exp: 1000 }), 'f'),
      /the token expired at 1970-01-01T00:16:40.000Z; mint a new one/,
    );
    assert.match(describeToken('static-token', 'f').text, /not a JWT/);
  });

  it("the daemon's loader refuses a kubeconfig whose token file is missing or empty, naming the file and the fix", async () => {
    const sub = mkdtempSync(join(dir, 'loader-'));
    const out = join(sub, 'kubeconfig');
    assert.equal(
      (await runCmd(['--server', api.url!, '--ca', ca, '--token-file', tokenFile, '--output', out])).code,
      0,
    );
    writeFileSync(join(sub, 'token'), '\n');
    await assert.rejects(
      loadKubeconfig(out),
      (e: Error) =>
        e instanceof KubeconfigError &&
        /kubeconfig .*: token file .*token: the file is empty: write the token with `wg-overlay kubeconfig --token-only/.test(
          e.message,
        ),
    );
    rmSync(join(sub, 'token'));
    await assert.rejects(loadKubeconfig(out), /token file .*token does not exist/);
    // A relative tokenFile is relative to the kubeconfig, as kubectl reads it.
    mkdirSync(join(sub, 'rel'));
    writeFileSync(join(sub, 'rel', 'tok'), TOKEN);
    writeFileSync(join(sub, 'rel', 'kubeconfig'), readFileSync(out, 'utf8').replace(/tokenFile: .*/, 'tokenFile: tok'));
    await (await loadKubeconfig(join(sub, 'rel', 'kubeconfig'))).makeApiClient(k8s.CoreV1Api).listNode();
  });

  it('is a command of the CLI: `wg-overlay kubeconfig --help`', async () => {
    const orig = process.stdout.write.bind(process.stdout);
    let text = '';
    process.stdout.write = ((chunk: string | Uint8Array) => {
      text += chunk.toString();
      return true;
    }) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['kubeconfig', '--help']);
    } finally {
      process.stdout.write = orig;
    }
    assert.equal(code, 0);
    assert.match(text, /--token-file FILE/);
  });
});
