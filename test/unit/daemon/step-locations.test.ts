/**
 * The reconcile step with `granularity = location` against a simulated host: a node that starts
 * while another member of its location holds the leader Lease waits for the Leases before its
 * first apply, so it never acts as the leader for a moment (no tunnel to another location, no
 * routes into wg0); when the Leases cannot be read it falls back to leaders by rank; a leader
 * change switches the routes in place.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../../../service/src/config/config.js';
import type { Leadership } from '../../../service/src/daemon/step-parts.js';
import type { LeaderWish, Liveness } from '../../../service/src/mesh/observations/leadership.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import { KILO_LOCATION } from '../../../service/src/mesh/annotations.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';
import { FakeHost } from '../../support/fakes/host.js';
import { KEYS, meshNode } from '../../support/fakes/fixtures.js';
import { reconcileWorld } from '../../support/fakes/world.js';
import type { ReconcileReport } from '../../../service/src/daemon/report.js';

const PRIV = generatePrivateKey();
const PUB = publicKeyFromPrivate(PRIV);
const east = { [KILO_LOCATION]: 'east' };
// a: this node, the senior reachable member of east (it would lead by rank); b: east too; c: west.
const A = meshNode('a', {
  ip: '192.0.2.11',
  created: 1,
  pods: ['10.244.1.0/24'],
  key: PUB,
  address: '100.64.2.11',
  endpoint: '192.0.2.11:51820',
  annotations: east,
});
const B = meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1], annotations: east });
const C = meshNode('c', {
  ip: '198.51.100.13',
  created: 3,
  pods: ['10.244.3.0/24'],
  key: KEYS[2],
  annotations: { [KILO_LOCATION]: 'west' },
});

/** Leases as a test sets them: whether they were read, and who they show alive or lapsed. */
class FakeLeadership implements Leadership {
  read = false;
  readonly alive = new Map<string, Set<string>>();
  readonly lapsed = new Map<string, Set<string>>();
  wishes: Array<LeaderWish | undefined> = [];
  liveness(): Liveness {
    return { alive: this.alive, lapsed: this.lapsed };
  }
  known(): boolean {
    return this.read;
  }
  want(wish: LeaderWish | undefined): void {
    this.wishes.push(wish);
  }
}

function world() {
  const config = defaultConfig();
  config.kubernetes.nodeName = 'a';
  config.wireguard.configFile = join(mkdtempSync(join(tmpdir(), 'wgo-recl-')), 'wg0.conf');
  config.wireguard.mtu = 1420;
  config.mesh.granularity = 'location';
  const host = new FakeHost();
  const leases = new FakeLeadership();
  const rec = reconcileWorld({
    host,
    log: memoryLogger(),
    identity: { name: 'a', privateKey: PRIV, publicKey: PUB },
    config,
    leadership: leases,
  });
  /** Runs one reconcile after `fn` (setting Nodes, or saying the Leases changed) and returns its report. */
  const step = async (
    fn: () => void = () => rec.schedule('a location leader Lease changed'),
  ): Promise<ReconcileReport> => {
    const done = rec.next();
    fn();
    return done;
  };
  /** How this node reaches west's pods. */
  const toWest = (): Array<string | undefined> =>
    host.routes.filter((r) => r.dst === '10.244.3.0/24').map((r) => r.gateway ?? r.dev);
  return { host, leases, rec, step, toWest };
}

describe('unit: reconcile step with location leaders', () => {
  it('a starting node waits for the Leases, then follows the leader alive: it never leads by rank before its own write', async () => {
    const { host, leases, rec, step, toWest } = world();
    leases.alive.set('location:east', new Set(['b']));
    await step(() => rec.setNodes([A, B, C]));
    assert.equal(rec.step.waiting, 'waiting for the location leader Leases from the API server');
    assert.deepEqual(host.mutations(), [], 'nothing applied before the Leases are known');
    assert.deepEqual(
      leases.wishes.at(-1),
      { location: 'location:east', leader: 'b', order: ['a', 'b'], lapsed: new Set(), someoneAlive: true },
      'the Leases are asked for: a ranks above the leader alive, so it will take the Lease',
    );
    leases.read = true;
    assert.ok((await step()).ok);
    assert.equal(rec.step.waiting, undefined);
    assert.equal(host.peers.size, 0, 'a member has no WireGuard peer');
    assert.ok(!host.mutations().some((c) => /^wg set wg0 peer/.test(c)));
    assert.ok(!host.routes.some((r) => r.dev === 'wg0'), 'no route into wg0');
    assert.deepEqual(toWest(), ['192.0.2.12'], 'west is reached through b');
    await rec.stop();
  });

  it('a leader change switches each route in place (ip route replace): no moment without a route, no re-read of the table', async () => {
    const { host, leases, rec, step, toWest } = world();
    leases.read = true;
    assert.ok((await step(() => rec.setNodes([A, B, C]))).ok);
    assert.deepEqual(toWest(), ['wg0'], 'a leads by rank');
    const mark = host.runner.calls.length;
    // a stopped writing its Lease (its API requests failed) and b took it: b leads.
    leases.lapsed.set('location:east', new Set(['a']));
    leases.alive.set('location:east', new Set(['b']));
    assert.ok((await step()).ok);
    const cmds = host.runner.calls.slice(mark);
    assert.ok(cmds.includes('ip -4 route replace 10.244.3.0/24 via 192.0.2.12 proto 77'), cmds.join('\n'));
    assert.ok(!cmds.some((c) => /route (add|del) 10\.244\.3\.0\/24/.test(c)), cmds.join('\n'));
    assert.ok(!cmds.some((c) => /^ip -j -4 route show/.test(c)), 'the table is not read again');
    assert.deepEqual(toWest(), ['192.0.2.12']);
    await rec.stop();
  });

  it('Leases that cannot be read (known, nobody alive) leave the leaders to their rank', async () => {
    const { host, leases, rec, step } = world();
    leases.read = true;
    assert.ok((await step(() => rec.setNodes([A, B, C]))).ok);
    assert.deepEqual([...host.peers.keys()], [KEYS[2]], 'a leads east by rank: one tunnel, to west');
    await rec.stop();
  });
});
