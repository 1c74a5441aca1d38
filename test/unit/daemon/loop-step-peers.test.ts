/**
 * The reconcile loop with external Peers against a simulated host: a valid Peer is added with
 * `wg set` (preshared key from a file) and routes for its allowedIPs, a change updates only it,
 * a deleted Peer is removed with its routes, an invalid one is skipped with its reason in the
 * log (once), and with waitForPeers the first apply waits for the Peer list.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../../../service/src/config/config.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { MeshNode, ExternalPeer } from '../../../service/src/mesh/types.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';
import { FakeHost } from '../../support/fakes/host.js';
import { reconcileWorld } from '../../support/fakes/world.js';
import type { ReconcileReport } from '../../../service/src/daemon/report.js';
import { KEYS, meshNode } from '../../support/fakes/fixtures.js';

const PRIV = generatePrivateKey();
const PUB = publicKeyFromPrivate(PRIV);
const A = meshNode('a', {
  ip: '192.0.2.11',
  created: 1,
  pods: ['10.244.1.0/24'],
  key: PUB,
  address: '100.64.2.11',
  endpoint: '192.0.2.11:51820',
});
const B = meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] });

function peer(name: string, o: Partial<ExternalPeer> = {}): ExternalPeer {
  return {
    name,
    createdAt: 0,
    allowedIPs: ['10.5.0.2/32'],
    publicKey: KEYS[3],
    presharedKey: undefined,
    persistentKeepalive: 25,
    endpoint: undefined,
    ...o,
  };
}

function world(opts: { waitForPeers?: boolean } = {}) {
  const config = defaultConfig();
  config.kubernetes.nodeName = 'a';
  config.wireguard.configFile = join(mkdtempSync(join(tmpdir(), 'wgo-recp-')), 'wg0.conf');
  config.wireguard.mtu = 1420;
  const host = new FakeHost();
  const log = memoryLogger();
  const rec = reconcileWorld({
    host,
    log,
    identity: { name: 'a', privateKey: PRIV, publicKey: PUB },
    config,
    waitForPeers: opts.waitForPeers ?? false,
  });
  const next = (): Promise<ReconcileReport> => rec.next();
  const step = async (fn: () => void): Promise<string[]> => {
    const mark = host.runner.calls.length;
    const done = next();
    fn();
    const r = await done;
    assert.ok(r.ok, r.error);
    return host.runner.calls.slice(mark).filter((c) => !/^wg show|^ip -j/.test(c));
  };
  return { host, rec, log, config, next, step };
}

async function meshUp(w: ReturnType<typeof world>, nodes: MeshNode[] = [A, B]): Promise<void> {
  await w.step(() => w.rec.setNodes(nodes));
}

describe('unit: reconcile loop with external Peers', () => {
  it('a new Peer is added with wg set and routes for its allowedIPs; a repeat runs nothing', async () => {
    const w = world();
    await meshUp(w);
    const cmds = await w.step(() => w.rec.setPeers([peer('laptop', { allowedIPs: ['10.5.0.2/32', 'fd05::2/128'] })]));
    // (`ip route add` on the fast path, `replace` after reading the table: either is right here)
    // (the nft transaction runs alongside: sorted)
    assert.deepEqual(
      cmds.map((c) => c.replace(' route replace ', ' route add ')).sort(),
      [
        `wg set wg0 peer ${KEYS[3]} persistent-keepalive 25 allowed-ips 10.5.0.2/32,fd05::2/128`,
        'ip -4 route add 10.5.0.2/32 dev wg0 proto 77',
        'ip -6 route add fd05::2/128 dev wg0 proto 77',
        `nft 'add element inet wg_overlay carried4 { 10.5.0.2/32 comment "laptop" }\n` +
          `add element inet wg_overlay carried6 { fd05::2/128 comment "laptop" }'`,
      ].sort(),
    );
    assert.deepEqual(w.host.peers.get(KEYS[3])?.allowedIPs, ['10.5.0.2/32', 'fd05::2/128']);
    assert.deepEqual(w.host.routes.map((r) => r.dst).sort(), ['10.244.2.0/24', '10.5.0.2/32', 'fd05::2/128']);
    assert.ok(
      w.log.lines.some((l) =>
        /added peer laptop \(no endpoint, allowed-ips 10\.5\.0\.2\/32,fd05::2\/128\) \(why: new Peer laptop\)/.test(l),
      ),
      w.log.lines.join('\n'),
    );
    // The same list again is not even scheduled.
    const before = w.host.runner.calls.length;
    w.rec.setPeers([peer('laptop', { allowedIPs: ['10.5.0.2/32', 'fd05::2/128'] })]);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(w.host.runner.calls.length, before);
  });

  it('a Peer with a preshared key and an endpoint: the key goes through a file, never the command line', async () => {
    const w = world();
    await meshUp(w);
    const cmds = await w.step(() =>
      w.rec.setPeers([
        peer('site', { presharedKey: KEYS[5], endpoint: { dns: undefined, ip: '198.51.100.7', port: 4500 } }),
      ]),
    );
    const set = cmds.find((c) => c.startsWith('wg set'))!;
    assert.match(
      set,
      new RegExp(
        `^wg set wg0 peer ${KEYS[3].replace(/[+/]/g, '\\$&')} endpoint 198\\.51\\.100\\.7:4500 ` +
          'persistent-keepalive 25 allowed-ips 10\\.5\\.0\\.2/32 preshared-key ',
      ),
    );
    assert.ok(!cmds.some((c) => c.includes(KEYS[5])), 'the preshared key is not on a command line');
    assert.ok(
      w.log.lines.every((l) => !l.includes(KEYS[5])),
      'nor in the log',
    );
  });

  it('a changed Peer updates only that peer; a deleted Peer is removed with its routes', async () => {
    const w = world();
    await meshUp(w);
    await w.step(() =>
      w.rec.setPeers([peer('laptop'), peer('phone', { publicKey: KEYS[4], allowedIPs: ['10.5.0.3/32'] })]),
    );
    const upd = await w.step(() =>
      w.rec.setPeers([
        peer('laptop', { persistentKeepalive: 10 }),
        peer('phone', { publicKey: KEYS[4], allowedIPs: ['10.5.0.3/32'] }),
      ]),
    );
    assert.deepEqual(upd, [`wg set wg0 peer ${KEYS[3]} persistent-keepalive 10 allowed-ips 10.5.0.2/32`]);
    const del = await w.step(() => w.rec.setPeers([peer('laptop', { persistentKeepalive: 10 })]));
    // The Peer's range stays blocked (kept) after it is deleted.
    assert.deepEqual(
      [...del].sort(),
      [
        `wg set wg0 peer ${KEYS[4]} remove`,
        'ip -4 route del 10.5.0.3/32 proto 77 dev wg0',
        "nft 'delete element inet wg_overlay carried4 { 10.5.0.3/32 }\n" +
          `add element inet wg_overlay kept4 { 10.5.0.3/32 comment "phone" }'`,
      ].sort(),
    );
    assert.ok(w.log.lines.some((l) => /removed peer phone \(why: phone is gone or no longer valid\)/.test(l)));
    assert.equal(w.host.peers.size, 2);
  });

  it('an invalid Peer is skipped with its reason in the log, once, and applies nothing', async () => {
    const w = world();
    await meshUp(w);
    const cmds = await w.step(() => w.rec.setPeers([peer('my-device', { publicKey: 'YOUR_PUBLIC_KEY_HERE' })]));
    assert.deepEqual(cmds, []);
    const line =
      /^<4>Peer skipped: my-device: invalid public key "YOUR_PUBLIC_KEY_HERE": expected 44 characters of base64 encoding 32 bytes/;
    assert.equal(w.log.lines.filter((l) => line.test(l)).length, 1, w.log.lines.join('\n'));
    assert.deepEqual(
      w.rec.step.desired?.skipped.filter((s) => s.kind === 'peer').map((s) => s.reason),
      ['invalid-public-key'],
    );
    await w.step(() => w.rec.schedule('resync', true));
    assert.equal(w.log.lines.filter((l) => line.test(l)).length, 1, 'not repeated on a resync');
  });

  it("a Peer that takes a Node's PodCIDR is skipped and the Node keeps its route", async () => {
    const w = world();
    await meshUp(w);
    await w.step(() =>
      w.rec.setPeers([peer('thief', { createdAt: Date.UTC(2027, 0, 1), allowedIPs: ['10.244.2.0/24'] })]),
    );
    assert.ok(
      w.log.lines.some((l) =>
        /Peer skipped: thief: allowedIPs 10\.244\.2\.0\/24 overlaps 10\.244\.2\.0\/24 of older Node b/.test(l),
      ),
    );
    assert.deepEqual(
      w.host.routes.map((r) => r.dst),
      ['10.244.2.0/24'],
    );
    assert.equal(w.host.peers.size, 1);
  });

  it('with waitForPeers the first apply waits for the Peer list, then brings up nodes and Peers at once', async () => {
    const w = world({ waitForPeers: true });
    const r = w.next();
    w.rec.setNodes([A, B]);
    const first = await r;
    assert.deepEqual(first.changes, []);
    assert.equal(w.host.link.exists, false, 'nothing applied before the Peer list');
    assert.equal(w.rec.step.waiting, 'waiting for the Peer list from the API server');
    assert.equal(w.rec.step.view.externalPeersListed, false);
    await w.step(() => w.rec.setPeers([peer('laptop')]));
    assert.equal(w.rec.step.view.externalPeersListed, true);
    assert.equal(w.rec.step.waiting, undefined);
    assert.deepEqual([...w.host.peers.keys()].sort(), [KEYS[1], KEYS[3]].sort());
  });
});
