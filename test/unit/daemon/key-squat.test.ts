/**
 * Key squatting against a simulated host: a duplicate public key goes to the senior claimant on
 * every node (the pure rule), so a younger node whose key an older Node publishes (a cloned
 * machine, or a Node copying keys) is never silently left out: it takes a new key pair, saves it,
 * publishes it and recreates its interface with it, naming the older Node in a warning; a Node
 * that copies the new key too is named in an error, and no second key is taken within ten minutes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../../../service/src/config/config.js';
import { KeyKeeper } from '../../../service/src/daemon/key-keeper.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import { ANNOTATION_PUBLIC_KEY } from '../../../service/src/mesh/annotations.js';
import { ClusterView } from '../../../service/src/mesh/cluster-view.js';
import { keyTakenBy } from '../../../service/src/mesh/desired/plan.js';
import {
  generatePrivateKey,
  PRIVATE_KEY_FILE,
  publicKeyFromPrivate,
  rotatePrivateKey,
} from '../../../service/src/wireguard/keys.js';
import { FakeHost } from '../../support/fakes/host.js';
import { KEYS, meshNode } from '../../support/fakes/fixtures.js';
import { reconcileWorld } from '../../support/fakes/world.js';

const PRIV = generatePrivateKey();
const PUB = publicKeyFromPrivate(PRIV);

describe('unit: key squatting — the rule', () => {
  const self = { name: 'a', publicKey: PUB };
  const rows: Array<[string, number, string, string | undefined]> = [
    ['an older Node publishes this node’s key', 1, PUB, 'old'],
    ['a younger Node publishes it (it is the one left out)', 9, PUB, undefined],
    ['an older Node with another key', 1, KEYS[3], undefined],
  ];
  for (const [what, created, key, expected] of rows) {
    it(what, () => {
      const view = ClusterView.of(
        [
          meshNode('a', { ip: '192.0.2.11', created: 5, key: PUB }),
          meshNode('old', { ip: '192.0.2.12', created, key }),
        ],
        [],
      );
      assert.equal(keyTakenBy(view, self), expected);
    });
  }
});

describe('unit: key squatting — the daemon takes a new key', () => {
  it('an older Node publishing this node’s key: a new key is saved, published and put on the interface; a second copy is named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wgo-squat-'));
    const config = defaultConfig();
    config.kubernetes.nodeName = 'a';
    config.wireguard.configFile = join(dir, 'wg0.conf');
    config.wireguard.mtu = 1420;
    const log = memoryLogger();
    const host = new FakeHost();
    const identity = { name: 'a', privateKey: PRIV, publicKey: PUB };
    const patches: Array<Record<string, string | null>> = [];
    let now = 1_000_000;
    const keys = new KeyKeeper({ identity, stateDir: dir, rotate: rotatePrivateKey, log, now: () => now });
    const rec = reconcileWorld({
      host,
      log,
      identity,
      config,
      keys,
      publisher: { patchAnnotations: async (_n, a) => void patches.push(a) },
    });
    const me = meshNode('a', { ip: '192.0.2.11', created: 5, pods: ['10.244.1.0/24'], key: PUB });
    const old = meshNode('old', { ip: '192.0.2.12', created: 1, pods: ['10.244.2.0/24'], key: PUB });
    let done = rec.next();
    rec.setNodes([me, old]);
    assert.ok((await done).ok);
    assert.notEqual(identity.publicKey, PUB, 'a new key');
    assert.equal(readFileSync(join(dir, PRIVATE_KEY_FILE), 'utf8').trim(), identity.privateKey, 'saved');
    assert.equal(patches.at(-1)?.[ANNOTATION_PUBLIC_KEY], identity.publicKey, 'published');
    assert.equal(host.privateKey, identity.privateKey, 'the interface has it');
    assert.equal(
      host.peers.get(PUB)?.allowedIPs.includes('10.244.2.0/24'),
      true,
      'old is a peer under the key it holds',
    );
    assert.match(
      log.lines.join('\n'),
      /Node old, older than this node, publishes this node's public key .*took a new key pair/,
    );
    // old copies the new key too, a minute later: named, and no key is taken again so soon.
    now += 60_000;
    const newKey = identity.publicKey;
    done = rec.next();
    rec.setNodes([
      { ...me, annotations: { [ANNOTATION_PUBLIC_KEY]: newKey } },
      { ...old, annotations: { [ANNOTATION_PUBLIC_KEY]: newKey } },
    ]);
    await done;
    assert.equal(identity.publicKey, newKey);
    assert.match(log.lines.join('\n'), /Node old publishes this node's new public key too: it is copying keys/);
    await rec.stop();
  });
});
