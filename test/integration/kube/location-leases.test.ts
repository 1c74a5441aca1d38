/**
 * Location leader Leases against the Kubernetes API test server, with three nodes' Lease parts in
 * one location: the first candidate takes the Lease and keeps it by renewing; when it stops, every
 * node sees the Lease run out and the next candidate takes it within the Lease's duration plus one
 * step; the old holder, back, does not take it back; two candidates racing for a free Lease end
 * with exactly one holder (the API server's optimistic concurrency decides); a node the topology
 * makes leader over a live holder takes the Lease over; a node knows the holders only once it
 * listed the Leases (or failed to).
 */
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { leaseName, leasesApi, LocationLeases } from '../../../service/src/kube/location-leases.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import { KubeApiServer } from '../../kube-api/server.js';
import { until as waitUntil } from '../../support/wait.js';

const LOCATION = 'location:aws';
const CANDIDATES = ['n1', 'n2', 'n3'];

const until = (cond: () => boolean, what: string, ms = 10_000): Promise<void> => waitUntil(cond, what, ms, 20);

describe('integration: location leader Leases against the API test server', function () {
  this.timeout(30_000);
  let server: KubeApiServer;
  let kc: k8s.KubeConfig;
  const parts: LocationLeases[] = [];

  /** A node's Lease part that wants to lead LOCATION in the order CANDIDATES (minus `without`). */
  function node(self: string, without: string[] = []): LocationLeases {
    const p = new LocationLeases({
      api: leasesApi(kc, 'wg-overlay'),
      namespace: 'wg-overlay',
      self,
      leaseSeconds: 2,
      log: memoryLogger(),
      onChange: () => undefined,
      stepMs: 300,
    });
    p.start();
    p.want({ location: LOCATION, candidates: CANDIDATES.filter((c) => !without.includes(c)) });
    parts.push(p);
    return p;
  }
  const holder = (): string | undefined =>
    (
      server.resource('leases', 'coordination.k8s.io').get(leaseName(LOCATION), 'wg-overlay')?.spec as
        { holderIdentity?: string } | undefined
    )?.holderIdentity;

  beforeEach(async () => {
    server = new KubeApiServer();
    await server.start();
    kc = new k8s.KubeConfig();
    kc.loadFromString(JSON.stringify(server.kubeconfig()));
  });
  afterEach(async () => {
    for (const p of parts.splice(0)) p.stop();
    await server?.stop();
  });

  it('the first candidate takes the Lease and keeps it; every node sees it as the live holder', async () => {
    const [a, b, c] = [node('n1'), node('n2'), node('n3')];
    await until(() => holder() === 'n1', 'n1 to hold the Lease');
    await until(() => [a, b, c].every((p) => p.holders().get(LOCATION) === 'n1'), 'every node to see n1');
    const rv = () =>
      server.resource('leases', 'coordination.k8s.io').get(leaseName(LOCATION), 'wg-overlay')?.metadata
        ?.resourceVersion;
    const before = rv();
    await new Promise((r) => setTimeout(r, 2_500)); // longer than the Lease: only renewals keep it
    assert.notEqual(rv(), before, 'renewed');
    assert.equal(holder(), 'n1');
    assert.equal(b.holders().get(LOCATION), 'n1');
  });

  it('when the holder stops, the next candidate takes over within the duration and a step; the old holder back does not take it back', async () => {
    const a = node('n1');
    const b = node('n2');
    await until(() => holder() === 'n1' && b.holders().get(LOCATION) === 'n1', 'n1 to lead');
    const stopped = Date.now();
    a.stop();
    // The others now see n1's Lease run out; their topology leaves n1 out of the candidates.
    await until(() => b.lapsed().get(LOCATION) === 'n1', 'n1 seen as lapsed', 5_000);
    b.want({ location: LOCATION, candidates: ['n2', 'n3'] });
    await until(() => holder() === 'n2', 'n2 to take the Lease', 5_000);
    const took = Date.now() - stopped;
    assert.ok(took < 2_000 + 300 + 1_500, `took over after ${took} ms`);
    const back = node('n1', ['n1']);
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(holder(), 'n2', 'the returning node does not take the Lease back');
    assert.equal(back.holders().get(LOCATION), 'n2');
  });

  it('a node knows who holds the Leases only once it listed them; a list that fails leaves leaders to their rank, with one warning', async () => {
    const ok = node('n1');
    assert.equal(ok.known(), false, 'not known before the list arrived');
    await until(() => ok.known(), 'the Leases to be listed');
    server.failNext(1, 403, { match: (q) => q.method === 'GET' && q.path.endsWith('/leases') && !q.watch });
    const log = memoryLogger();
    const denied = new LocationLeases({
      api: leasesApi(kc, 'wg-overlay'),
      namespace: 'wg-overlay',
      self: 'n2',
      leaseSeconds: 2,
      log,
      onChange: () => undefined,
      stepMs: 300,
    });
    parts.push(denied);
    denied.want({ location: LOCATION, candidates: CANDIDATES });
    await until(() => denied.known(), 'the failed list to count as known');
    assert.equal(
      log.lines.filter((l) => /cannot list the location leader Leases in namespace wg-overlay/.test(l)).length,
      1,
      log.lines.join('\n'),
    );
  });

  it('a node the topology makes leader over a live holder (a better rank) takes the Lease over at once; the holder stops renewing', async () => {
    const late = node('n3', ['n1', 'n2']); // alone in its view: takes the vacant Lease
    await until(() => holder() === 'n3', 'n3 to take the Lease');
    const better = node('n1');
    better.want({ location: LOCATION, candidates: CANDIDATES, leader: 'n1' });
    late.want({ location: LOCATION, candidates: CANDIDATES, leader: 'n1' });
    const asked = Date.now();
    await until(() => holder() === 'n1', 'n1 to take the Lease over', 3_000);
    assert.ok(Date.now() - asked < 1_500, `took ${Date.now() - asked} ms`);
    await new Promise((r) => setTimeout(r, 2_500)); // longer than the Lease: n3 does not write it back
    assert.equal(holder(), 'n1');
    assert.equal(late.holders().get(LOCATION), 'n1');
  });

  it('two candidates racing for a free Lease: exactly one holds it', async () => {
    // Both think they are first.
    const x = new LocationLeases({
      api: leasesApi(kc, 'wg-overlay'),
      namespace: 'wg-overlay',
      self: 'n1',
      leaseSeconds: 2,
      log: memoryLogger(),
      onChange: () => undefined,
      stepMs: 300,
    });
    const y = new LocationLeases({
      api: leasesApi(kc, 'wg-overlay'),
      namespace: 'wg-overlay',
      self: 'n2',
      leaseSeconds: 2,
      log: memoryLogger(),
      onChange: () => undefined,
      stepMs: 300,
    });
    parts.push(x, y);
    x.want({ location: LOCATION, candidates: ['n1'] });
    y.want({ location: LOCATION, candidates: ['n2'] });
    await until(() => holder() !== undefined, 'a holder');
    await new Promise((r) => setTimeout(r, 2_500));
    const h = holder();
    assert.ok(h === 'n1' || h === 'n2');
    await until(() => x.holders().get(LOCATION) === h && y.holders().get(LOCATION) === h, 'both to agree');
  });
});
