/**
 * The wg-quick file format: render/parse round trips, deterministic output, what the parser
 * accepts (wg-quick's liberties, `wg showconf` output), its errors with line numbers, the
 * managed-file header, the `wg setconf` form, and the guarded file write.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MANAGED_HEADER,
  isManaged,
  parseWgQuick,
  renderWgQuick,
  stripWgQuick,
  writeWgQuickFile,
  type WgQuickConfig,
} from '../../../service/src/wireguard/wgquick.js';
import { KEYS } from '../../support/fakes/fixtures.js';

const PRIV = 'ULVgDp2xu3OLoT1bIS61I/5hzQ/0CVCKPZB5x7sFE3k=';
const PSK = 'AFvjt2FItXMiGUVpj03acezkmkZShaPglIVT+7Nlrls=';
const [K1, K2, K3, K4] = KEYS;

/** A small realistic config. */
function sample(): WgQuickConfig {
  return {
    iface: { privateKey: PRIV, address: ['100.64.0.1/10'], listenPort: 51820, mtu: 1420, table: 'off', extra: [] },
    peers: [
      {
        name: 'node-b',
        publicKey: K1,
        endpoint: '192.0.2.12:51820',
        allowedIPs: ['100.64.0.2/32', '10.244.2.0/24'],
        persistentKeepalive: 25,
      },
      { name: 'node-c', publicKey: K2, endpoint: '192.0.2.13:51820', allowedIPs: ['100.64.0.3/32'] },
    ],
  };
}

describe('unit: wg-quick config format', () => {
  describe('round trip parse(render(x)) == x', () => {
    const cases: Array<[string, WgQuickConfig]> = [
      ['a typical node', sample()],
      ['no peers', { iface: { privateKey: PRIV, address: ['100.64.0.1/10'], extra: [] }, peers: [] }],
      [
        'no address, no port (the wg setconf shape)',
        { iface: { privateKey: PRIV, address: [], extra: [] }, peers: [] },
      ],
      [
        'dual stack addresses and IPv6 endpoints',
        {
          iface: { privateKey: PRIV, address: ['100.64.0.1/10', 'fd00:64::1/64'], listenPort: 51821, extra: [] },
          peers: [
            {
              name: 'v6-peer',
              publicKey: K1,
              endpoint: '[2001:db8::1]:51820',
              allowedIPs: ['fd00:64::2/128', '2001:db8:244::/64'],
            },
            {
              name: 'v6-peer-2',
              publicKey: K2,
              endpoint: '[2001:db8::2]:1',
              allowedIPs: ['100.64.0.3/32'],
              persistentKeepalive: 0,
            },
          ],
        },
      ],
      [
        'peers without endpoint, name, allowed IPs; with preshared key and hostname endpoint',
        {
          iface: { privateKey: PRIV, address: ['100.64.0.1/32'], extra: [] },
          peers: [
            { publicKey: K3, allowedIPs: [] },
            { publicKey: K1, presharedKey: PSK, allowedIPs: ['100.64.0.9/32'] },
            {
              name: 'dns',
              publicKey: K2,
              endpoint: 'node-b.example.com:51820',
              allowedIPs: ['100.64.0.2/32'],
              persistentKeepalive: 25,
            },
          ],
        },
      ],
      [
        'extra keys kept verbatim and in order',
        {
          iface: {
            privateKey: PRIV,
            address: ['100.64.0.1/10'],
            table: '1234',
            extra: [
              ['FwMark', '0xca6c'],
              ['PostUp', 'ip rule add fwmark 0xca6c table main'],
              ['SaveConfig', 'false'],
              ['DNS', '192.0.2.53'],
            ],
          },
          peers: [],
        },
      ],
      [
        'peer names with spaces, punctuation and #',
        {
          iface: { privateKey: PRIV, address: ['100.64.0.1/10'], extra: [] },
          peers: [
            { name: 'a node (zone 1) #7', publicKey: K1, allowedIPs: ['100.64.0.2/32'] },
            { name: 'ünïcode-ノード', publicKey: K2, allowedIPs: ['100.64.0.3/32'] },
          ],
        },
      ],
      [
        'same name twice: ordered by public key',
        {
          iface: { privateKey: PRIV, address: ['100.64.0.1/10'], extra: [] },
          peers: [K1, K2, K3, K4].sort().map((k) => ({ name: 'same', publicKey: k, allowedIPs: [] })),
        },
      ],
    ];
    for (const [name, cfg] of cases) {
      it(name, () => {
        const text = renderWgQuick(cfg);
        assert.deepEqual(parseWgQuick(text, 'test'), cfg);
        assert.equal(renderWgQuick(parseWgQuick(text)), text);
      });
    }
  });

  describe('render', () => {
    it('produces the exact expected text', () => {
      assert.equal(
        renderWgQuick(sample()),
        [
          MANAGED_HEADER,
          '# Changes are overwritten; edit /etc/wg-overlay/wg-overlay.conf instead.',
          '',
          '[Interface]',
          'Address = 100.64.0.1/10',
          'ListenPort = 51820',
          `PrivateKey = ${PRIV}`,
          'MTU = 1420',
          'Table = off',
          '',
          '[Peer]',
          '# node-b',
          `PublicKey = ${K1}`,
          'AllowedIPs = 100.64.0.2/32, 10.244.2.0/24',
          'Endpoint = 192.0.2.12:51820',
          'PersistentKeepalive = 25',
          '',
          '[Peer]',
          '# node-c',
          `PublicKey = ${K2}`,
          'AllowedIPs = 100.64.0.3/32',
          'Endpoint = 192.0.2.13:51820',
          '',
        ].join('\n'),
      );
    });

    it('is independent of the order of peers and of the keys in the input objects', () => {
      const a = sample();
      const b: WgQuickConfig = {
        peers: [...a.peers]
          .reverse()
          .map((p) => Object.fromEntries(Object.entries(p).reverse()) as unknown as WgQuickConfig['peers'][number]),
        iface: Object.fromEntries(Object.entries(a.iface).reverse()) as unknown as WgQuickConfig['iface'],
      };
      assert.equal(renderWgQuick(b), renderWgQuick(a));
    });

    it('orders peers by name (unnamed first) then public key, keeping AllowedIPs order', () => {
      const cfg: WgQuickConfig = {
        iface: { privateKey: PRIV, address: [], extra: [] },
        peers: [
          { name: 'b', publicKey: K1, allowedIPs: ['10.244.9.0/24', '10.244.1.0/24'] },
          { name: 'a', publicKey: K2, allowedIPs: [] },
          { publicKey: K3, allowedIPs: [] },
        ],
      };
      const order = parseWgQuick(renderWgQuick(cfg)).peers.map((p) => p.name ?? '-');
      assert.deepEqual(order, ['-', 'a', 'b']);
      assert.match(renderWgQuick(cfg), /AllowedIPs = 10\.244\.9\.0\/24, 10\.244\.1\.0\/24/);
    });

    it('does not modify its input', () => {
      const cfg = sample();
      cfg.peers.reverse();
      const copy = structuredClone(cfg);
      renderWgQuick(cfg);
      assert.deepEqual(cfg, copy);
    });

    const invalid: Array<[string, (c: WgQuickConfig) => void, RegExp]> = [
      [
        'invalid private key, without echoing it',
        (c) => (c.iface.privateKey = 'secret-value'),
        /PrivateKey: not a valid key/,
      ],
      ['invalid public key', (c) => (c.peers[0]!.publicKey = 'nope'), /PublicKey/],
      ['a newline in a name', (c) => (c.peers[0]!.name = 'x\n[Peer]'), /name: contains a line break/],
      ['a line break in an endpoint', (c) => (c.peers[0]!.endpoint = '192.0.2.1:1\nPublicKey = x'), /Endpoint/],
      ['an endpoint without port', (c) => (c.peers[0]!.endpoint = '192.0.2.1'), /Endpoint/],
      ['an unbracketed IPv6 endpoint', (c) => (c.peers[0]!.endpoint = '2001:db8::1:51820'), /Endpoint/],
      ['a bad CIDR', (c) => (c.peers[0]!.allowedIPs = ['10.0.0.0/33']), /AllowedIPs/],
      [
        'a comma inside an AllowedIPs entry',
        (c) => (c.peers[0]!.allowedIPs = ['10.0.0.0/8, 10.1.0.0/16']),
        /AllowedIPs/,
      ],
      ['a bad port', (c) => (c.iface.listenPort = 70000), /ListenPort/],
      ['an unknown extra key', (c) => c.iface.extra.push(['Bogus', '1']), /Bogus/],
      [
        'PrivateKey in extra',
        (c) => c.iface.extra.push(['PrivateKey', PRIV]),
        /PrivateKey: not a key allowed in extra/,
      ],
      ['a comment sign in an extra value', (c) => c.iface.extra.push(['PostUp', 'echo # hi']), /PostUp/],
    ];
    for (const [name, mutate, re] of invalid) {
      it(`refuses ${name}`, () => {
        const cfg = sample();
        mutate(cfg);
        assert.throws(
          () => renderWgQuick(cfg),
          (err: Error) => re.test(err.message) && !err.message.includes('secret-value'),
        );
      });
    }
  });

  describe('parse', () => {
    it('accepts what wg-quick accepts: case, spacing, comments, repeated and comma-listed values, CRLF', () => {
      const text = [
        '# a hand-written file',
        '',
        '[interface]',
        'address=100.64.0.1/10',
        '  ADDRESS = fd00:64::1/64 ,  ',
        `privatekey =${PRIV}   # trailing comment`,
        'ListenPort = 51820',
        'mtu = 1420',
        'fwmark = 0x1',
        '',
        '[PEER]',
        `PublicKey=${K1}`,
        'AllowedIPs = 100.64.0.2/32,10.244.2.0/24',
        'allowedips = 10.244.3.0/24',
        'Endpoint = [2001:db8::1]:51820',
        'PersistentKeepalive = off',
        '[Peer]',
        `PublicKey = ${K2}\r`,
        '\tAllowedIPs = 100.64.0.3/32 \r',
        'PersistentKeepalive = 15',
        '',
      ].join('\n');
      assert.deepEqual(parseWgQuick(text), {
        iface: {
          privateKey: PRIV,
          address: ['100.64.0.1/10', 'fd00:64::1/64'],
          listenPort: 51820,
          mtu: 1420,
          extra: [['fwmark', '0x1']],
        },
        peers: [
          {
            publicKey: K1,
            allowedIPs: ['100.64.0.2/32', '10.244.2.0/24', '10.244.3.0/24'],
            endpoint: '[2001:db8::1]:51820',
          },
          { publicKey: K2, allowedIPs: ['100.64.0.3/32'], persistentKeepalive: 15 },
        ],
      });
    });

    it('parses `wg showconf` output', () => {
      const text = [
        '[Interface]',
        'ListenPort = 51820',
        'FwMark = 0xca6c',
        `PrivateKey = ${PRIV}`,
        '',
        '[Peer]',
        `PublicKey = ${K1}`,
        `PresharedKey = ${PSK}`,
        'AllowedIPs = 100.64.0.2/32, 10.244.2.0/24',
        'Endpoint = 192.0.2.12:51820',
        'PersistentKeepalive = 25',
        '',
      ].join('\n');
      const cfg = parseWgQuick(text, 'wg showconf');
      assert.equal(cfg.iface.listenPort, 51820);
      assert.deepEqual(cfg.iface.extra, [['FwMark', '0xca6c']]);
      assert.deepEqual(cfg.peers, [
        {
          publicKey: K1,
          presharedKey: PSK,
          allowedIPs: ['100.64.0.2/32', '10.244.2.0/24'],
          endpoint: '192.0.2.12:51820',
          persistentKeepalive: 25,
        },
      ]);
    });

    it('takes a comment directly after [Peer] as the name, and only there', () => {
      const text = [
        '[Interface]',
        `PrivateKey = ${PRIV}`,
        '[Peer]',
        '#   spaced name  ',
        `PublicKey = ${K1}`,
        '[Peer]',
        '',
        '# not a name',
        `PublicKey = ${K2}`,
        '# trailing',
        '',
      ].join('\n');
      assert.deepEqual(
        parseWgQuick(text).peers.map((p) => p.name),
        ['spaced name', undefined],
      );
    });

    it('lets a repeated single-valued key take the last value, as wg-quick does', () => {
      const text = `[Interface]\nPrivateKey = ${PRIV}\nListenPort = 1\nListenPort = 2\n`;
      assert.equal(parseWgQuick(text).iface.listenPort, 2);
    });

    const errors: Array<[string, string, RegExp]> = [
      [
        'a key before any section',
        `ListenPort = 1\n[Interface]\nPrivateKey = ${PRIV}\n`,
        /^f\.conf line 1: "ListenPort" outside of any section/,
      ],
      [
        'an unknown section',
        `[Interface]\nPrivateKey = ${PRIV}\n\n[Peers]\n`,
        /^f\.conf line 4: unknown section \[Peers\]/,
      ],
      [
        'a line without =',
        `[Interface]\nPrivateKey = ${PRIV}\nListenPort 51820\n`,
        /^f\.conf line 3: expected "Key = Value"/,
      ],
      [
        'an unknown interface key',
        `[Interface]\nPrivateKey = ${PRIV}\nListenPrt = 1\n`,
        /^f\.conf line 3: unknown \[Interface\] key "ListenPrt"/,
      ],
      [
        'an unknown peer key',
        `[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${K1}\nEndPoint2 = x\n`,
        /^f\.conf line 5: unknown \[Peer\] key "EndPoint2"/,
      ],
      [
        'a bad public key',
        `[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = abc\n`,
        /^f\.conf line 4: PublicKey: "abc" is not a valid key/,
      ],
      [
        'a bad CIDR',
        `[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${K1}\nAllowedIPs = 10.0.0.0/8, 300.1.1.1/32\n`,
        /^f\.conf line 5: AllowedIPs: "300\.1\.1\.1\/32"/,
      ],
      ['a bad port', `[Interface]\nPrivateKey = ${PRIV}\nListenPort = 65536\n`, /^f\.conf line 3: ListenPort: "65536"/],
      [
        'a bad keepalive',
        `[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${K1}\nPersistentKeepalive = -1\n`,
        /^f\.conf line 5: PersistentKeepalive/,
      ],
      [
        'a bad endpoint',
        `[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${K1}\nEndpoint = 2001:db8::1:51820\n`,
        /^f\.conf line 5: Endpoint/,
      ],
      [
        'a peer without public key',
        `[Interface]\nPrivateKey = ${PRIV}\n\n[Peer]\nAllowedIPs = 10.0.0.0/8\n`,
        /^f\.conf line 4: \[Peer\] has no PublicKey/,
      ],
      [
        'an interface without private key',
        `# x\n[Interface]\nListenPort = 1\n`,
        /^f\.conf line 2: \[Interface\] has no PrivateKey/,
      ],
      ['no interface section', `# nothing\n`, /^f\.conf: no \[Interface\] section/],
    ];
    for (const [name, text, re] of errors) {
      it(`reports ${name} with source and line number`, () => {
        assert.throws(
          () => parseWgQuick(text, 'f.conf'),
          (err: Error) => {
            assert.match(err.message, re);
            return true;
          },
        );
      });
    }

    it('does not put an invalid private key into the error', () => {
      const secret = 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA';
      assert.throws(
        () => parseWgQuick(`[Interface]\nPrivateKey = ${secret}\n`, 'f.conf'),
        (err: Error) => /line 2: PrivateKey/.test(err.message) && !err.message.includes(secret),
      );
    });
  });

  describe('isManaged', () => {
    const cases: Array<[string, string, boolean]> = [
      ['rendered output', renderWgQuick(sample()), true],
      ['header after blank lines and spaces', `\n\n   ${MANAGED_HEADER}  \n[Interface]\n`, true],
      ['header with CRLF', `${MANAGED_HEADER}\r\n[Interface]\r\n`, true],
      ['empty file', '', false],
      ['only whitespace', ' \n\t\n', false],
      ['a hand-written file', '[Interface]\nPrivateKey = x\n', false],
      ['header not on the first line', `# my wg0\n${MANAGED_HEADER}\n`, false],
      ['a similar comment', '# managed by wg-overlay-ng\n', false],
    ];
    for (const [name, text, expected] of cases) {
      it(`${expected ? 'recognizes' : 'rejects'} ${name}`, () => assert.equal(isManaged(text), expected));
    }
  });

  describe('stripWgQuick', () => {
    it('drops wg-quick-only lines and keeps the rest of the rendered text', () => {
      const cfg = sample();
      cfg.iface.extra = [
        ['FwMark', '0x10'],
        ['DNS', '192.0.2.53'],
        ['PostUp', 'true'],
      ];
      const full = renderWgQuick(cfg).split('\n');
      const expected = full.filter((l) => !/^(Address|MTU|Table|DNS|PostUp) =/.test(l)).join('\n');
      assert.equal(stripWgQuick(cfg), expected);
      const parsed = parseWgQuick(stripWgQuick(cfg));
      assert.deepEqual(parsed.peers, cfg.peers);
      assert.deepEqual(parsed.iface, { privateKey: PRIV, address: [], listenPort: 51820, extra: [['FwMark', '0x10']] });
    });
  });

  describe('writeWgQuickFile', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'wgo-wgquick-unit-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('creates the parent (0700) and the file (0600), then skips identical content', async () => {
      const path = join(dir, 'wireguard', 'wg0.conf');
      assert.deepEqual(await writeWgQuickFile(path, sample()), { changed: true });
      assert.equal((await stat(join(dir, 'wireguard'))).mode & 0o777, 0o700);
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal(await readFile(path, 'utf8'), renderWgQuick(sample()));
      const before = await stat(path);
      assert.deepEqual(await writeWgQuickFile(path, sample()), { changed: false });
      assert.equal((await stat(path)).ino, before.ino, 'not rewritten');
      const next = sample();
      next.peers.pop();
      assert.deepEqual(await writeWgQuickFile(path, next), { changed: true });
      assert.equal(await readFile(path, 'utf8'), renderWgQuick(next));
      assert.deepEqual(await readdir(join(dir, 'wireguard')), ['wg0.conf']);
    });

    it('restores mode 0600 on an identical file', async () => {
      const path = join(dir, 'wg0.conf');
      await writeWgQuickFile(path, sample());
      await chmod(path, 0o644);
      assert.deepEqual(await writeWgQuickFile(path, sample()), { changed: false });
      assert.equal((await stat(path)).mode & 0o777, 0o600);
    });

    it('refuses to overwrite a file wg-overlay did not write', async () => {
      const path = join(dir, 'wg0.conf');
      const foreign = `[Interface]\nPrivateKey = ${PRIV}\n`;
      await writeFile(path, foreign, { mode: 0o600 });
      await assert.rejects(writeWgQuickFile(path, sample()), (err: Error) => {
        assert.match(
          err.message,
          new RegExp(`${path.replace(/[.]/g, '\\.')}.*not written by wg-overlay.*move it away`),
        );
        assert.ok(!err.message.includes(PRIV));
        return true;
      });
      assert.equal(await readFile(path, 'utf8'), foreign);
    });

    it('overwrites a managed file edited by hand', async () => {
      const path = join(dir, 'wg0.conf');
      await writeFile(path, `${MANAGED_HEADER}\n[Interface]\nPrivateKey = ${PRIV}\n`);
      assert.deepEqual(await writeWgQuickFile(path, sample()), { changed: true });
    });
  });
});
