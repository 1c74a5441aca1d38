/**
 * A rotated token file is used without a restart: the daemon's own Node watch and publisher, made
 * once from a kubeconfig written by `wg-overlay kubeconfig`, keep working after
 * `wg-overlay kubeconfig --token-only` replaces the token and the old one is revoked: API calls at
 * once, the watch when it reconnects (as it does after the API server ends a watch).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { kubeconfigCommand } from '../../../service/src/cli/kubeconfig.js';
import { loadKubeconfig } from '../../../service/src/kube/kubeconfig.js';
import { ApiNodePublisher } from '../../../service/src/kube/node-publisher.js';
import { nodeSource, nodesApi } from '../../../service/src/kube/node-source.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { MeshNode } from '../../../service/src/mesh/types.js';
import { KubeApiServer } from '../../kube-api/server.js';
import { until as waitUntil } from '../../support/wait.js';

const sink = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

const until = (cond: () => boolean, what: string, ms = 10_000): Promise<void> => waitUntil(cond, what, ms, 20);

describe('integration: kube: token rotation without a restart', function () {
  this.timeout(30_000);
  let server: KubeApiServer;
  let dir: string;

  before(async () => {
    server = new KubeApiServer({ token: 'rotation-admin' });
    await server.start();
    server.createNode({ metadata: { name: 'n1' } });
    dir = mkdtempSync(join(tmpdir(), 'wgo-rotation-'));
    writeFileSync(join(dir, 'ca.crt'), server.caPem!);
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the Node watch and the publisher switch to the new token; the old one, revoked, is never sent again', async () => {
    const first = server.createServiceAccountToken({ namespace: 'wg-overlay', name: 'wg-overlay', boundNode: 'n1' });
    const second = server.createServiceAccountToken({ namespace: 'wg-overlay', name: 'wg-overlay', boundNode: 'n1' });
    writeFileSync(join(dir, 'first'), first.token);
    writeFileSync(join(dir, 'second'), second.token);
    const kubeconfig = join(dir, 'kubeconfig');
    assert.equal(
      await kubeconfigCommand(
        [
          '--server',
          server.url!,
          '--ca',
          join(dir, 'ca.crt'),
          '--token-file',
          join(dir, 'first'),
          '--output',
          kubeconfig,
        ],
        sink(),
        sink(),
      ),
      0,
    );

    const kc = await loadKubeconfig(kubeconfig);
    const source = nodeSource(nodesApi(kc), memoryLogger(), { mode: 'watch' });
    const publisher = new ApiNodePublisher(kc);
    let nodes: MeshNode[] = [];
    source.start({
      onList: (l) => {
        nodes = l;
      },
      onChange: (name, node) => {
        nodes = [...nodes.filter((n) => n.name !== name), ...(node ? [node] : [])];
      },
      onState: () => undefined,
    });
    try {
      await until(() => nodes.length === 1 && server.watchCount === 1, 'the first list and watch');
      await publisher.patchAnnotations('n1', { 'wg-overlay.io/endpoint': '192.0.2.1:51820' });
      const mark = server.requests.length;

      assert.equal(
        await kubeconfigCommand(
          ['--token-only', '--token-file', join(dir, 'second'), '--output', kubeconfig],
          sink(),
          sink(),
        ),
        0,
      );
      server.revokeToken(first.token);
      await publisher.patchAnnotations('n1', { 'wg-overlay.io/endpoint': '192.0.2.2:51820' });
      assert.equal(server.getNode('n1')?.metadata?.annotations?.['wg-overlay.io/endpoint'], '192.0.2.2:51820');

      // The API server ends watches from time to time; the reconnection carries the new token.
      const dropped = server.requests.length;
      server.dropWatches();
      // (An open watch has no status yet: it is still being answered.)
      await until(
        () => server.watchCount === 1 && server.requests.slice(dropped).some((r) => r.query.includes('watch=true')),
        'the watch to reconnect',
      );
      server.createNode({ metadata: { name: 'n2' } });
      await until(() => nodes.length === 2, 'the new Node through the new watch');

      const after = server.requests.slice(mark).filter((r) => r.path.startsWith('/api/v1/nodes'));
      assert.ok(after.length >= 2);
      assert.deepEqual(
        [...new Set(after.map((r) => r.credentialId))],
        [`JTI=${second.id}`],
        'every request since the rotation used the new token',
      );
      assert.ok(after.every((r) => r.status !== 401));
    } finally {
      await source.stop();
    }
  });
});
