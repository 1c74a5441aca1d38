/**
 * WireGuard keys without the wg tool: base64 validation, clamping of generated keys, public key
 * derivation against known vectors (RFC 7748 and `wg pubkey`), and load-or-create of the key file.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile, chmod, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  generatePrivateKey,
  isValidKey,
  loadOrCreatePrivateKey,
  publicKeyFromPrivate,
} from '../../../service/src/wireguard/keys.js';

describe('unit: wireguard keys', () => {
  describe('isValidKey', () => {
    const cases: Array<[string, string, boolean]> = [
      ['wg genkey output', 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=', true],
      ['all zero bytes', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', true],
      ['with + and /', '5+o6pZ2Os9n724mt7Wfd1LE6v2r2z0ikSSxEfDl17Ec=', true],
      ['empty', '', false],
      ['missing padding', 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k', false],
      ['one char short', 'LVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=', false],
      ['one char long', 'UULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=', false],
      ['31 bytes', Buffer.alloc(31, 7).toString('base64'), false],
      ['33 bytes', Buffer.alloc(33, 7).toString('base64'), false],
      ['base64url alphabet', 'ULVgDp2xu3OLoT1bIS61I_5hzQ_0CVCKPZB5x7sFE3k=', false],
      ['non-canonical trailing bits', 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3l=', false],
      ['surrounding whitespace', ' ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=', false],
      ['trailing newline', 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=\n', false],
      ['inner whitespace', 'ULVgDp2xu3OLoT1bIS61I/5hz /0CVCKPZB5x7sFE3k=', false],
      ['hex', '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0', false],
    ];
    for (const [name, key, expected] of cases) {
      it(`${expected ? 'accepts' : 'rejects'} ${name}`, () => {
        assert.equal(isValidKey(key), expected);
      });
    }
  });

  describe('publicKeyFromPrivate', () => {
    it('matches the RFC 7748 section 6.1 vector (Alice)', () => {
      // 77076d0a...2c2a -> 8520f009...4e6a
      assert.equal(
        publicKeyFromPrivate('dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo='),
        'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=',
      );
    });
    it('matches `wg pubkey` for a `wg genkey` key', () => {
      assert.equal(
        publicKeyFromPrivate('ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k='),
        'ziPXUFdxjmv5S6UgL4tDinmagPv/XJtUmk1eS1dCbg8=',
      );
    });
    it('rejects an invalid key without echoing it', () => {
      const bad = 'not-a-key-but-a-secret-looking-string';
      assert.throws(
        () => publicKeyFromPrivate(bad),
        (err: Error) => !err.message.includes(bad),
      );
    });
  });

  describe('generatePrivateKey', () => {
    it('returns distinct, valid, clamped keys whose public keys are valid', () => {
      const seen = new Set<string>();
      for (let i = 0; i < 50; i++) {
        const k = generatePrivateKey();
        assert.ok(isValidKey(k), k);
        const raw = Buffer.from(k, 'base64');
        assert.equal(raw[0]! & 7, 0, 'low 3 bits of byte 0 cleared');
        assert.equal(raw[31]! & 0x80, 0, 'top bit of byte 31 cleared');
        assert.equal(raw[31]! & 0x40, 0x40, 'bit 254 set');
        assert.ok(isValidKey(publicKeyFromPrivate(k)));
        seen.add(k);
      }
      assert.equal(seen.size, 50);
    });
  });

  describe('loadOrCreatePrivateKey', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'wgo-keys-unit-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('creates the state dir (0700) and a 0600 key file, then reloads the same key', async () => {
      const stateDir = join(dir, 'state', 'nested');
      const first = await loadOrCreatePrivateKey(stateDir);
      assert.equal(first.created, true);
      assert.equal(first.fixedMode, false);
      assert.ok(isValidKey(first.privateKey));
      assert.equal(first.publicKey, publicKeyFromPrivate(first.privateKey));
      assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
      const path = join(stateDir, 'private.key');
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal(await readFile(path, 'utf8'), `${first.privateKey}\n`);
      assert.deepEqual(await readdir(stateDir), ['private.key'], 'no temp files left');

      const second = await loadOrCreatePrivateKey(stateDir);
      assert.deepEqual(second, { ...first, created: false });
    });

    it('accepts a key file written by hand with surrounding whitespace', async () => {
      await writeFile(join(dir, 'private.key'), '\n  ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=  \r\n\n', {
        mode: 0o600,
      });
      const k = await loadOrCreatePrivateKey(dir);
      assert.deepEqual(k, {
        privateKey: 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=',
        publicKey: 'ziPXUFdxjmv5S6UgL4tDinmagPv/XJtUmk1eS1dCbg8=',
        created: false,
        fixedMode: false,
      });
    });

    it('fixes a world-readable key file to 0600 and says so', async () => {
      const path = join(dir, 'private.key');
      await writeFile(path, 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=\n');
      await chmod(path, 0o644);
      const k = await loadOrCreatePrivateKey(dir);
      assert.equal(k.fixedMode, true);
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await loadOrCreatePrivateKey(dir)).fixedMode, false);
    });

    const corrupt: Array<[string, string]> = [
      ['truncated', 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCK'],
      ['two keys', 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=\n5+o6pZ2Os9n724mt7Wfd1LE6v2r2z0ikSSxEfDl17Ec='],
      ['empty', ''],
      ['garbage', 'secret-ish garbage \u0000\u0001'],
    ];
    for (const [name, content] of corrupt) {
      it(`rejects a ${name} key file naming the path but not the content, and leaves it alone`, async () => {
        const path = join(dir, 'private.key');
        await writeFile(path, content, { mode: 0o600 });
        await assert.rejects(loadOrCreatePrivateKey(dir), (err: Error) => {
          assert.ok(err.message.includes(path), err.message);
          for (const piece of content.split(/\s+/).filter((p) => p.length >= 8)) {
            assert.ok(!err.message.includes(piece), `message leaks file content: ${err.message}`);
          }
          return true;
        });
        assert.equal(await readFile(path, 'utf8'), content);
      });
    }

    it('gives concurrent first starts one and the same key', async () => {
      const results = await Promise.all([1, 2, 3, 4].map(() => loadOrCreatePrivateKey(dir)));
      const keys = new Set(results.map((r) => r.privateKey));
      assert.equal(keys.size, 1);
      assert.equal(results.filter((r) => r.created).length, 1);
      assert.deepEqual(await readdir(dir), ['private.key']);
    });

    it('reports a key path that is a directory with the path in the message', async () => {
      const { mkdir } = await import('node:fs/promises');
      await mkdir(join(dir, 'private.key'));
      await assert.rejects(loadOrCreatePrivateKey(dir), (err: Error) => err.message.includes(join(dir, 'private.key')));
    });
  });
});
