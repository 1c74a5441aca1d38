/**
 * External-peer discovery (Kilo's Peers) against the Kubernetes API test server: without the Peer
 * CRD the watch source reports `absent` and an empty list, warns once and looks again slowly (never
 * fatal); once the CRD appears it lists and watches Peers, follows creates, changes and deletes,
 * survives dropped watches, and warns with an RBAC hint on 403. The list source (discovery = list)
 * never watches.
 * The watch source gives up on a start that never gets an answer and starts over, instead of
 * waiting minutes for the kernel to time the connection out.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import {
  externalPeerSource,
  externalPeersApi,
  listExternalPeers,
} from '../../../service/src/kube/external-peer-source.js';
import type { SourceState } from '../../../service/src/kube/source.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { ExternalPeer } from '../../../service/src/mesh/types.js';
import { KILO_PEER_RESOURCE, KubeApiServer, type KubeObject } from '../../kube-api/server.js';
import { KEYS } from '../../support/fakes/fixtures.js';
import { until } from '../../support/wait.js';

function externalPeer(name: string, ip: string, key: string = KEYS[3]): KubeObject {
  return {
    apiVersion: 'kilo.squat.ai/v1alpha1',
    kind: 'Peer',
    metadata: { name },
    spec: { allowedIPs: [`${ip}/32`], publicKey: key, persistentKeepalive: 25 },
  };
}

/** Records what a source reports. */
function recorder() {
  const states: SourceState[] = [];
  let list: ExternalPeer[] | undefined;
  return {
    states,
    get externalPeers() {
      return list;
    },
    names: () => (list ?? []).map((p) => p.name).sort(),
    handler: {
      onList: (p: ExternalPeer[]) => {
        list = p;
      },
      onState: (s: SourceState) => {
        states.push(s);
      },
    },
  };
}

describe('integration: external-peer discovery (kilo.squat.ai Peers)', function () {
  this.timeout(30_000);
  let server: KubeApiServer;
  let kc: k8s.KubeConfig;

  beforeEach(async () => {
    server = new KubeApiServer({ token: 'peer-token' });
    await server.start();
    kc = new k8s.KubeConfig();
    kc.loadFromString(JSON.stringify(server.kubeconfig()));
  });
  afterEach(async () => {
    await server?.stop();
  });

  it('without the CRD: absent, an empty list and one warning; then the CRD appears and Peers are watched', async () => {
    const log = memoryLogger();
    const rec = recorder();
    const source = externalPeerSource(externalPeersApi(kc), log, { mode: 'watch' }, 300);
    source.start(rec.handler);
    try {
      await until(() => rec.states.includes('absent'), 'absent');
      assert.deepEqual(rec.externalPeers, []);
      await new Promise((r) => setTimeout(r, 800)); // a few slow retries
      assert.equal(log.lines.filter((l) => /Peer CRD is not installed/.test(l)).length, 1, 'warned once');
      assert.ok(log.lines.find((l) => /Peer CRD is not installed/.test(l))!.startsWith('<4>'), 'at warning');
      assert.ok(rec.states.filter((s) => s === 'absent').length >= 2, 'retried');

      // The admin applies crd-peer.yaml and a Peer.
      const externalPeers = server.registerResource(KILO_PEER_RESOURCE);
      externalPeers.create(externalPeer('laptop', '10.5.0.2'));
      await until(() => rec.states.at(-1) === 'up' && rec.names().join() === 'laptop', 'the Peer list');
      assert.deepEqual(rec.names().length === 1 && (rec.externalPeers as ExternalPeer[])[0]!.allowedIPs, [
        '10.5.0.2/32',
      ]);
      assert.ok(log.lines.some((l) => /peer watch: watching kilo\.squat\.ai Peers/.test(l)));

      // Changes arrive through the watch.
      externalPeers.create(externalPeer('phone', '10.5.0.3', KEYS[4]));
      await until(() => rec.names().join() === 'laptop,phone', 'a created Peer');
      externalPeers.patch('phone', 'merge', { spec: { persistentKeepalive: 10 } });
      await until(
        () => rec.externalPeers?.find((p) => p.name === 'phone')?.persistentKeepalive === 10,
        'a changed Peer',
      );
      externalPeers.delete('laptop');
      await until(() => rec.names().join() === 'phone', 'a deleted Peer');

      // A dropped watch is restarted; nothing is lost.
      server.dropWatches();
      externalPeers.create(externalPeer('tablet', '10.5.0.4', KEYS[5]));
      await until(() => rec.names().join() === 'phone,tablet', 'a Peer created after the watch dropped', 10_000);
    } finally {
      await source.stop();
    }
  });

  it('a 403 is reported as down with a hint about the RBAC rules; the last known Peers stay', async () => {
    server.registerResource(KILO_PEER_RESOURCE).create(externalPeer('laptop', '10.5.0.2'));
    const log = memoryLogger();
    const rec = recorder();
    const source = externalPeerSource(externalPeersApi(kc), log, { mode: 'watch' }, 300);
    source.start(rec.handler);
    try {
      await until(() => rec.names().join() === 'laptop', 'the Peer list');
      server.failNext(2, 403, { match: (r) => r.path.includes('/peers') });
      server.dropWatches();
      const forbidden = new RegExp(
        String.raw`^<4>peer watch: listing kilo\.squat\.ai Peers is forbidden \(HTTP 403.*\): ` +
          String.raw`give wg-overlay's ClusterRole the verbs list and watch on peers\.kilo\.squat\.ai`,
      );
      await until(() => log.lines.some((l) => forbidden.test(l)), 'the warning with the RBAC hint');
      assert.ok(rec.states.includes('down'));
      assert.equal(rec.names().join(), 'laptop', 'the last known Peers stay');
      await until(() => rec.states.at(-1) === 'up', 'up again', 15_000);
    } finally {
      await source.stop();
    }
  });

  it('the list source (discovery = list) lists on an interval and never watches', async () => {
    const rec = recorder();
    const log = memoryLogger();
    const source = externalPeerSource(externalPeersApi(kc), log, { mode: 'list', intervalMs: 200 });
    source.start(rec.handler);
    try {
      await until(() => rec.states.includes('absent'), 'absent');
      const externalPeers = server.registerResource(KILO_PEER_RESOURCE);
      externalPeers.create(externalPeer('laptop', '10.5.0.2'));
      await until(() => rec.names().join() === 'laptop', 'the Peer list');
      assert.equal(rec.states.at(-1), 'up');
      assert.ok(
        !server.requests.some((q) => q.path.includes('/peers') && /watch=(1|true)/.test(q.query)),
        'no watch request',
      );
    } finally {
      await source.stop();
    }
  });

  it('listExternalPeers (the CLI) says when the CRD is absent', async () => {
    assert.deepEqual(await listExternalPeers(externalPeersApi(kc)), { externalPeers: [], absent: true });
    server.registerResource(KILO_PEER_RESOURCE).create(externalPeer('laptop', '10.5.0.2'));
    const r = await listExternalPeers(externalPeersApi(kc));
    assert.equal(r.absent, false);
    assert.deepEqual(
      r.externalPeers.map((p) => p.name),
      ['laptop'],
    );
  });

  describe('a start that never gets an answer', () => {
    let plain: KubeApiServer;
    let proxy: http.Server;
    let swallowed = 0;
    let swallow = 0;

    beforeEach(async () => {
      plain = new KubeApiServer({ tls: false, token: 'plain-token' });
      await plain.start();
      // In front of the API: the first `swallow` requests are accepted and never answered.
      const target = new URL(plain.url!);
      proxy = http.createServer((req, res) => {
        if (swallowed < swallow) {
          swallowed += 1;
          return;
        }
        const up = http.request(
          { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
          (r) => {
            res.writeHead(r.statusCode ?? 502, r.headers);
            res.flushHeaders(); // a watch sends its headers at once, its events later
            r.pipe(res);
          },
        );
        up.on('error', () => res.destroy());
        req.pipe(up);
      });
      await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    });
    afterEach(async () => {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await plain.stop();
    });

    const kubeconfig = (): k8s.KubeConfig => {
      const cfg = plain.kubeconfig() as { clusters: Array<{ cluster: { server: string } }> };
      cfg.clusters[0]!.cluster.server = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const c = new k8s.KubeConfig();
      c.loadFromString(JSON.stringify(cfg));
      return c;
    };

    it('a Peer list that never answers times out and the watch starts over', async () => {
      swallowed = 0;
      swallow = 1;
      plain.registerResource(KILO_PEER_RESOURCE).create(externalPeer('laptop', '10.5.0.2'));
      const log = memoryLogger();
      const rec = recorder();
      const source = externalPeerSource(externalPeersApi(kubeconfig(), 300), log, { mode: 'watch' }, 60_000);
      source.start(rec.handler);
      try {
        await until(
          () => rec.names().join() === 'laptop' && rec.states.includes('up'),
          'the Peer list after starting over',
        );
        assert.equal(swallowed, 1);
        assert.ok(
          log.lines.some((l) =>
            /peer watch: listing kilo\.squat\.ai Peers failed \(GET \/apis\/kilo\.squat\.ai\/v1alpha1\/peers: no answer within 0 s\)/.test(
              l,
            ),
          ),
          log.lines.join('\n'),
        );
        assert.deepEqual(rec.states, ['down', 'up'], 'the timed-out list is a failure, then it recovers');
      } finally {
        await source.stop();
      }
    });
  });
});
