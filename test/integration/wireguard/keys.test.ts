/**
 * Our X25519 key code against the real `wg` tool in both directions, and the persistent key
 * file as `wg` sees it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  generatePrivateKey,
  isValidKey,
  loadOrCreatePrivateKey,
  publicKeyFromPrivate,
} from '../../../service/src/wireguard/keys.js';
import { requireTools, run } from '../../support/process.js';

/** `wg pubkey` of a private key. */
async function wgPubkey(priv: string): Promise<string> {
  return (await run('wg', ['pubkey'], { input: `${priv}\n` })).stdout.trim();
}

describe('integration: wireguard keys vs the wg tool', function () {
  this.timeout(30_000);

  before(async () => {
    await requireTools(['wg']);
  });

  it('derives the same public key as `wg pubkey` for keys from `wg genkey` (10 keys)', async () => {
    for (let i = 0; i < 10; i++) {
      const priv = (await run('wg', ['genkey'])).stdout.trim();
      assert.ok(isValidKey(priv), 'wg genkey output is a valid key');
      assert.equal(publicKeyFromPrivate(priv), await wgPubkey(priv));
    }
  });

  it('generates keys that `wg pubkey` accepts and maps to our public key (10 keys)', async () => {
    for (let i = 0; i < 10; i++) {
      const priv = generatePrivateKey();
      const pub = await wgPubkey(priv);
      assert.ok(isValidKey(pub));
      assert.equal(publicKeyFromPrivate(priv), pub);
    }
  });

  it('agrees with `wg pubkey` on unclamped private keys too', async () => {
    for (const fill of [0xff, 0x00, 0x5a]) {
      const priv = Buffer.alloc(32, fill).toString('base64');
      assert.equal(publicKeyFromPrivate(priv), await wgPubkey(priv));
    }
  });

  describe('loadOrCreatePrivateKey', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'wgo-keys-int-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('creates a 0600 key file that `wg pubkey` reads, and reloads the same key', async () => {
      const stateDir = join(dir, 'var-lib-wg-overlay');
      const created = await loadOrCreatePrivateKey(stateDir);
      assert.equal(created.created, true);
      const path = join(stateDir, 'private.key');
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal(await wgPubkey(await readFile(path, 'utf8')), created.publicKey);
      const again = await loadOrCreatePrivateKey(stateDir);
      assert.equal(again.created, false);
      assert.equal(again.privateKey, created.privateKey);
      assert.equal(again.publicKey, created.publicKey);
    });

    it('loads a key written by `wg genkey`', async () => {
      const priv = (await run('wg', ['genkey'])).stdout;
      await writeFile(join(dir, 'private.key'), priv, { mode: 0o600 });
      const k = await loadOrCreatePrivateKey(dir);
      assert.equal(k.privateKey, priv.trim());
      assert.equal(k.publicKey, await wgPubkey(priv.trim()));
    });

    it('rejects a corrupt key file with the path in the message and no content', async () => {
      const priv = (await run('wg', ['genkey'])).stdout.trim();
      const corrupt = priv.slice(0, 30);
      const path = join(dir, 'private.key');
      await writeFile(path, `${corrupt}\n`, { mode: 0o600 });
      await assert.rejects(loadOrCreatePrivateKey(dir), (err: Error) => {
        assert.ok(err.message.includes(path), err.message);
        assert.ok(!err.message.includes(corrupt), 'message must not contain key material');
        assert.ok(!String(err.stack).includes(corrupt));
        return true;
      });
    });
  });
});
