/**
 * The peers adapter when `wg set` refuses a peer: the batch is retried peer by peer, every good
 * peer lands, the bad one is reported and left as it was, the same input runs nothing until the
 * next resync retries the bad one — and a later good change of the bad peer goes through at once.
 */
import assert from 'node:assert/strict';
import { PeerAdapter } from '../../../service/src/host/peer-adapter.js';
import type { DesiredPeer } from '../../../service/src/mesh/types.js';
import { FakeHost } from '../../support/fakes/host.js';
import { KEYS } from '../../support/fakes/fixtures.js';

const peer = (name: string, key: string, endpoint: string, ip: string): DesiredPeer => ({
  kind: 'node',
  name,
  publicKey: key,
  endpoint,
  allowedIPs: [`${ip}/32`],
  persistentKeepalive: 0,
});
const B = peer('b', KEYS[1], '192.0.2.12:51820', '100.64.2.12');
const C = peer('c', KEYS[2], '192.0.2.13:51820', '100.64.2.13');
const D = peer('d', KEYS[3], '192.0.2.14:51820', '100.64.2.14');

function host(): FakeHost {
  const h = new FakeHost();
  h.link = { exists: true, up: true, mtu: 1420, addresses: ['100.64.2.11/10'] };
  return h;
}

describe('unit: peers adapter with a peer wg refuses', () => {
  it('applies every good peer one by one after the batch is refused, and reports the bad one', async () => {
    const h = host();
    h.refusePeers.add(KEYS[2]);
    const a = new PeerAdapter(h.runner, 'wg0');
    const r = await a.set([B, C, D]);
    assert.deepEqual([...h.peers.keys()].sort(), [KEYS[1], KEYS[3]].sort());
    assert.deepEqual(
      r.refused.map((x) => x.name),
      ['c'],
    );
    assert.match(r.refused[0]!.error, /Name or service not known/);
    assert.deepEqual(
      r.changes.map((c) => c.what.split(' (')[0]),
      ['added peer b', 'added peer d'],
    );
    const sets = h.runner.calls.filter((c) => c.startsWith('wg set'));
    assert.equal(sets.length, 4, 'one refused batch, then one command per peer');
    assert.ok(
      sets.every((c) => c.length < 400),
      'no command line is unbounded',
    );
  });

  it('the same input runs nothing while the bad peer is unchanged; a resync retries it; a good change lands at once', async () => {
    const h = host();
    h.refusePeers.add(KEYS[2]);
    const a = new PeerAdapter(h.runner, 'wg0');
    await a.set([B, C, D]);
    let mark = h.runner.calls.length;
    const again = await a.set([B, C, D]);
    assert.deepEqual(h.runner.calls.slice(mark), [], 'no retry on every event');
    assert.deepEqual(again.refused, []);
    // Another peer's change is one command, not a retry of the bad one.
    const B2 = { ...B, allowedIPs: ['100.64.2.12/32', '10.244.2.0/24'] };
    mark = h.runner.calls.length;
    await a.set([B2, C, D]);
    assert.deepEqual(h.runner.calls.slice(mark).filter((c) => c.startsWith('wg set')).length, 1);
    // The periodic resync tries the bad one again; once wg takes it, it is there.
    h.refusePeers.clear();
    a.invalidate();
    const r = await a.set([B2, C, D]);
    assert.deepEqual(r.refused, []);
    assert.ok(h.peers.has(KEYS[2]));
  });
});

describe('unit: wg set at 10,000 dual-stack peers', () => {
  it("goes out in commands well under the kernel's argument limits (no E2BIG), and every peer lands", async () => {
    const h = host();
    const peers: DesiredPeer[] = Array.from({ length: 10_000 }, (_, i) => {
      const key = Buffer.alloc(32, 0);
      key.writeUInt32BE(i + 1, 0);
      return {
        kind: 'node',
        name: `node-${i}`,
        publicKey: key.toString('base64'),
        endpoint: `198.18.${i >> 8}.${i & 255}:51820`,
        allowedIPs: [
          `10.${100 + (i >> 8)}.${i & 255}.0/24`,
          `100.64.${i >> 8}.${i & 255}/32`,
          `fd00:10:${(i >> 8).toString(16)}:${(i & 255).toString(16)}::/64`,
        ],
        persistentKeepalive: 0,
      };
    });
    const r = await new PeerAdapter(h.runner, 'wg0').set(peers);
    assert.deepEqual(r.refused, []);
    assert.equal(h.peers.size, 10_000);
    const sets = h.runner.calls.filter((c) => c.startsWith('wg set'));
    const total = sets.reduce((n, c) => n + c.length, 0);
    assert.ok(
      total > 1.5 * 1024 * 1024,
      `as one command it would be ${total} bytes, most of ARG_MAX (2 MiB with the environment)`,
    );
    for (const c of sets) assert.ok(c.length < 300 * 1024, `a command of ${c.length} bytes`);
    assert.ok(sets.length > 1 && sets.length < 20, `${sets.length} commands`);
  });
});
