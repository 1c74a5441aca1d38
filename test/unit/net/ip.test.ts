/**
 * The IP arithmetic as a table: which texts are addresses (IPv4 exactly as node:net's isIPv4
 * decides), their canonical forms (RFC 5952 for IPv6), CIDRs and netmasks.
 */
import assert from 'node:assert/strict';
import { isIPv4 } from 'node:net';
import { formatCidr, formatIp, parseCidr, parseIp, prefixMask } from '../../../service/src/net/ip.js';

describe('unit: IP addresses and CIDRs', () => {
  const v4Texts = [
    '0.0.0.0',
    '255.255.255.255',
    '192.0.2.1',
    ' 192.0.2.1 ',
    '01.2.3.4',
    '1.2.3.04',
    '0.0.0.00',
    '256.1.1.1',
    '1.2.3.999',
    '1.2.3',
    '1.2.3.4.5',
    '1..2.3',
    '.1.2.3',
    '1.2.3.4.',
    '1.2.3.-4',
    '1.2.3.4a',
    '1.2.3.4/8',
    '',
    '1234.1.1.1',
  ];
  for (const text of v4Texts) {
    it(`IPv4 ${JSON.stringify(text)}: an address exactly when isIPv4 says so`, () => {
      const ip = parseIp(text);
      assert.equal(ip?.family === 4, isIPv4(text.trim()));
      if (ip) assert.equal(formatIp(ip), text.trim());
    });
  }

  const canonical: [string, string | undefined][] = [
    ['2001:db8::1', '2001:db8::1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::', '::'],
    ['::1', '::1'],
    ['fd00:0:0:1::', 'fd00:0:0:1::'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2:3:4:5:6'],
    ['2001:db8::0:1', '2001:db8::1'],
    ['::ffff:192.0.2.1', '::ffff:c000:201'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['fe80::1%eth0', undefined],
    ['2001:db8::1::2', undefined],
    ['2001:db8:1:2:3:4:5:6:7', undefined],
    ['gggg::1', undefined],
  ];
  for (const [text, want] of canonical) {
    it(`IPv6 ${text} → ${want ?? 'not an address'}`, () => {
      const ip = parseIp(text);
      assert.equal(ip ? formatIp(ip) : undefined, want);
    });
  }

  const cidrs: [string, string | undefined][] = [
    ['10.244.1.7/24', '10.244.1.0/24'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['192.0.2.1/32', '192.0.2.1/32'],
    ['192.0.2.0/33', undefined],
    ['2001:db8::1/64', '2001:db8::/64'],
    ['2001:db8::/129', undefined],
    ['10.0.0.0', undefined],
  ];
  for (const [text, want] of cidrs) {
    it(`CIDR ${text} → ${want ?? 'invalid'}`, () => {
      const c = parseCidr(text);
      assert.equal(c ? formatCidr(c) : undefined, want);
    });
  }

  it('netmasks of every prefix length', () => {
    assert.equal(prefixMask(4, 0), 0n);
    assert.equal(prefixMask(4, 24), 0xffffff00n);
    assert.equal(prefixMask(4, 32), 0xffffffffn);
    assert.equal(prefixMask(6, 64), 0xffffffffffffffffn << 64n);
    for (let p = 0; p <= 128; p += 1) assert.equal(prefixMask(6, p).toString(2).replace(/0+$/, '').length, p);
  });

  it('round-trips every IPv6 address of a sample through text', () => {
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 65536;
    for (let i = 0; i < 2_000; i += 1) {
      const groups = Array.from({ length: 8 }, () => (next() % 3 === 0 ? 0 : next()));
      const value = groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
      assert.equal(parseIp(formatIp({ family: 6, value }))?.value, value);
    }
  });
});
