/**
 * The adapters given a delta (how the desired list differs from an earlier one): when that
 * earlier list is the one they applied last, they run exactly the commands the full diff would,
 * without walking the mesh; when it is not (a failed or skipped apply, a resync), they ignore the
 * delta and diff the whole list.
 */
import assert from 'node:assert/strict';
import { PeerAdapter } from '../../../service/src/host/peer-adapter.js';
import { RouteAdapter } from '../../../service/src/host/route-adapter.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { DesiredPeer, DesiredRoute, ListDelta } from '../../../service/src/mesh/types.js';
import { FakeHost } from '../../support/fakes/host.js';
import { KEYS } from '../../support/fakes/fixtures.js';

const peer = (name: string, key: string, pods: string[]): DesiredPeer => ({
  kind: 'node',
  name,
  publicKey: key,
  endpoint: `192.0.2.${name.charCodeAt(0)}:51820`,
  allowedIPs: [`100.64.2.${name.charCodeAt(0)}/32`, ...pods],
  persistentKeepalive: 0,
});
const route = (via: string, dst: string): DesiredRoute => ({ dst, dev: 'wg0', via });

function host(): FakeHost {
  const h = new FakeHost();
  h.link = { exists: true, up: true, mtu: 1420, addresses: ['100.64.2.11/10'] };
  return h;
}

const delta = <T>(from: readonly T[], removed: T[], added: T[]): ListDelta<T> => ({ from, removed, added });

describe('unit: adapters given a delta from the list they applied last', () => {
  it('peers: a change, a rekey and a removal cost what the full diff costs, and a wrong base is ignored', async () => {
    const B = peer('b', KEYS[1], ['10.244.1.0/24']);
    const C = peer('c', KEYS[2], ['10.244.2.0/24']);
    const D = peer('d', KEYS[3], ['10.244.3.0/24']);
    const first = [B, C, D];
    const viaDelta = host();
    const viaFull = host();
    const a = new PeerAdapter(viaDelta.runner, 'wg0');
    const f = new PeerAdapter(viaFull.runner, 'wg0');
    await a.set(first);
    await f.set(first);
    // b gets a second PodCIDR, c a new key, d leaves.
    const B2 = { ...B, allowedIPs: [...B.allowedIPs, '10.245.1.0/24'] };
    const C2 = { ...C, publicKey: KEYS[4]! };
    const second = [B2, C2];
    const markA = viaDelta.runner.calls.length;
    const markF = viaFull.runner.calls.length;
    const rd = await a.set(second, delta(first, [B, C, D], [B2, C2]));
    const rf = await f.set(second);
    assert.deepEqual(viaDelta.runner.calls.slice(markA), viaFull.runner.calls.slice(markF));
    assert.deepEqual(rd.changes, rf.changes);
    assert.deepEqual([...viaDelta.peers.keys()].sort(), [KEYS[1], KEYS[4]].sort());
    assert.match(rd.changes.map((c) => c.why).join('\n'), /c published a new public key/);
    // An empty delta from the last list runs nothing.
    const mark = viaDelta.runner.calls.length;
    await a.set(second, delta(second, [], []));
    assert.deepEqual(viaDelta.runner.calls.slice(mark), []);
    // A delta from a list that was never applied is ignored: the whole list is diffed.
    const third = [B2, C2, D];
    await a.set(third, delta(first, [], []));
    assert.ok(viaDelta.peers.has(KEYS[3]), 'd is back although the delta did not say so');
  });

  it('routes: an added and a removed PodCIDR cost what the full diff costs, and a wrong base is ignored', async () => {
    const h = host();
    const full = host();
    const a = new RouteAdapter(h.runner, memoryLogger());
    const f = new RouteAdapter(full.runner, memoryLogger());
    const first = [route('b', '10.244.1.0/24'), route('c', '10.244.2.0/24')];
    await a.set(first);
    await f.set(first);
    const added = route('b', '10.245.1.0/24');
    const second = [first[0]!, added];
    const mark = h.runner.calls.length;
    const markF = full.runner.calls.length;
    const rd = await a.set(second, delta(first, [first[1]!], [added]));
    const rf = await f.set(second);
    assert.deepEqual(h.runner.calls.slice(mark), full.runner.calls.slice(markF));
    assert.deepEqual(rd.changes, rf.changes);
    assert.deepEqual(h.routes.map((r) => r.dst).sort(), full.routes.map((r) => r.dst).sort());
    // Same dst in a new object: no command.
    const again = [{ ...first[0]! }, added];
    const m2 = h.runner.calls.length;
    await a.set(again, delta(second, [first[0]!], [again[0]!]));
    assert.deepEqual(h.runner.calls.slice(m2), []);
    // A delta whose base was not the last list: ignored, the whole list is diffed.
    const third = [...again, route('d', '10.244.4.0/24')];
    await a.set(third, delta(first, [], []));
    assert.ok(h.routes.some((r) => r.dst === '10.244.4.0/24'));
  });
});
