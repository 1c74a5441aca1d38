/**
 * The NAT rules, table-driven: what is read from a Node's discovered-endpoints annotation (hostile
 * input: only address:port outside reserved ranges, IPv4-mapped addresses unmapped, bounded), when
 * a reported endpoint may be dialled (the Node itself, or two other Nodes, report it), what a node
 * notes from its device, what it publishes (bounded), and the keepalive of a node behind NAT.
 */
import assert from 'node:assert/strict';
import { ANNOTATION_DISCOVERED, MAX_ANNOTATION_LENGTH } from '../../../../service/src/mesh/annotations.js';
import {
  MAX_OBSERVATIONS,
  NAT_KEEPALIVE_SECONDS,
  natKeepalive,
  ObservationIndex,
  observationsText,
  observeArrivals,
  parseObservations,
} from '../../../../service/src/mesh/observations/nat.js';
import type { PeerStatus } from '../../../../service/src/mesh/observations/device.js';
import type { DesiredPeer } from '../../../../service/src/mesh/types.js';
import { KEYS, meshNode } from '../../../support/fakes/fixtures.js';

const observer = (name: string, created: number, text: string) =>
  meshNode(name, { created, annotations: { [ANNOTATION_DISCOVERED]: text } });

describe('unit: NAT — observations read from other Nodes', () => {
  const rows: Array<[string, unknown, Array<[string, string]>]> = [
    ['an address and port', { b: '203.0.113.7:40123' }, [['b', '203.0.113.7:40123']]],
    ['IPv6, canonical', { b: '[2001:DB8:0::7]:51820' }, [['b', '[2001:db8::7]:51820']]],
    ['a name is not an address', { b: 'evil.example:1' }, []],
    ['loopback', { b: '127.0.0.1:51820' }, []],
    ['IPv4-mapped loopback, unmapped first', { b: '[::ffff:127.0.0.1]:51820' }, []],
    ['IPv4-mapped public address, unmapped', { b: '[::ffff:203.0.113.9]:51820' }, [['b', '203.0.113.9:51820']]],
    ['link-local (the metadata service)', { b: '169.254.169.254:80' }, []],
    ['not a string', { b: 42 }, []],
    ['no port', { b: '203.0.113.7' }, []],
    ['a report about the observer itself is kept', { x: '203.0.113.9:1' }, [['x', '203.0.113.9:1']]],
  ];
  for (const [what, value, expected] of rows) {
    it(`reads: ${what}`, () =>
      assert.deepEqual([...parseObservations(observer('x', 1, JSON.stringify(value)))], expected));
  }

  it('reads nothing from what is not a JSON object, and at most MAX_OBSERVATIONS entries', () => {
    assert.deepEqual([...parseObservations(observer('y', 1, 'not json'))], []);
    assert.deepEqual([...parseObservations(observer('y', 1, '["203.0.113.7:1"]'))], []);
    const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`n${i}`, `203.0.113.${i % 250}:1`]));
    assert.equal(parseObservations(observer('y', 1, JSON.stringify(many))).size, MAX_OBSERVATIONS);
  });
});

describe('unit: NAT — which reported endpoints are dialled', () => {
  const rows: Array<{ what: string; reports: Array<[string, number, Record<string, string>]>; accepted: string[] }> = [
    { what: 'one other Node alone: not dialled', reports: [['x', 1, { b: '203.0.113.7:1' }]], accepted: [] },
    {
      what: 'two other Nodes agree: dialled',
      reports: [
        ['x', 1, { b: '203.0.113.7:1' }],
        ['y', 2, { b: '203.0.113.7:1' }],
      ],
      accepted: ['203.0.113.7:1'],
    },
    {
      what: 'two other Nodes disagree: neither',
      reports: [
        ['x', 1, { b: '203.0.113.7:1' }],
        ['y', 2, { b: '203.0.113.8:1' }],
      ],
      accepted: [],
    },
    {
      what: 'the Node about itself: dialled',
      reports: [['b', 3, { b: '203.0.113.9:1' }]],
      accepted: ['203.0.113.9:1'],
    },
    {
      what: 'a hostile Node pointing others at somebody else: not dialled, whatever its age',
      reports: [['evil', 0, { b: '198.51.100.66:51820', c: '198.51.100.66:51820' }]],
      accepted: [],
    },
  ];
  for (const row of rows) {
    it(row.what, () => {
      const idx = new ObservationIndex();
      for (const [name, created, seen] of row.reports) idx.update(observer(name, created, JSON.stringify(seen)));
      assert.deepEqual(idx.accepted('b'), row.accepted);
    });
  }

  it('reports say who reported what (senior first), and follow updates and deletes', () => {
    const idx = new ObservationIndex();
    idx.update(observer('young', 5, JSON.stringify({ b: '203.0.113.7:1' })));
    idx.update(observer('old', 1, JSON.stringify({ b: '203.0.113.7:1' })));
    idx.update(observer('odd', 3, JSON.stringify({ b: '203.0.113.8:1' })));
    assert.deepEqual(idx.reports('b'), [
      { endpoint: '203.0.113.7:1', reporters: ['old', 'young'], accepted: true },
      { endpoint: '203.0.113.8:1', reporters: ['odd'], accepted: false },
    ]);
    idx.update(observer('old', 1, '{}'));
    assert.deepEqual(idx.accepted('b'), []);
    assert.deepEqual(idx.reported('b'), ['203.0.113.7:1', '203.0.113.8:1']);
    idx.remove('young');
    idx.remove('odd');
    assert.deepEqual(idx.reports('b'), []);
  });
});

describe('unit: NAT — what a node notes and publishes', () => {
  const now = 1_000_000_000;
  const peer = (name: string, key: string, endpoint: string): DesiredPeer => ({
    kind: 'node',
    name,
    publicKey: key,
    endpoint,
    allowedIPs: [],
    persistentKeepalive: 0,
  });
  const seen = (key: string, endpoint: string, handshakeAgo: number): PeerStatus => ({
    publicKey: key,
    hasPresharedKey: false,
    endpoint,
    allowedIPs: [],
    latestHandshake: handshakeAgo < 0 ? 0 : now / 1000 - handshakeAgo,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 0,
  });

  it('notes peers that arrive from elsewhere with a fresh handshake (180 s), sorted by name', () => {
    const peers = [peer('c', KEYS[2]!, '192.0.2.13:51820'), peer('b', KEYS[1]!, '192.0.2.12:51820')];
    const device = [
      seen(KEYS[2]!, '203.0.113.3:40000', 10),
      seen(KEYS[1]!, '203.0.113.2:40000', 10),
      seen(KEYS[3]!, '203.0.113.4:40000', 10),
    ];
    assert.deepEqual(observeArrivals(device, peers, now), { b: '203.0.113.2:40000', c: '203.0.113.3:40000' });
    assert.deepEqual(observeArrivals([seen(KEYS[1]!, '203.0.113.2:40000', 200)], peers, now), {}, 'stale handshake');
    assert.deepEqual(observeArrivals([seen(KEYS[1]!, '192.0.2.12:51820', 10)], peers, now), {}, 'its own address');
    assert.deepEqual(observeArrivals([seen(KEYS[1]!, '203.0.113.2:1', -1)], peers, now), {}, 'never handshook');
  });

  it('publishes the first entries by name that fit the annotation bound, nothing when there is none', () => {
    assert.equal(observationsText({}), undefined);
    assert.equal(
      observationsText({ b: '203.0.113.2:1', a: '203.0.113.1:1' }),
      '{"a":"203.0.113.1:1","b":"203.0.113.2:1"}',
    );
    const many = Object.fromEntries(
      Array.from({ length: 60 }, (_, i) => [`node-${String(i).padStart(3, '0')}`, `[2001:db8::${i}]:51820`]),
    );
    const text = observationsText(many)!;
    assert.ok(text.length <= MAX_ANNOTATION_LENGTH, `${text.length}`);
    const kept = Object.keys(JSON.parse(text) as object);
    assert.deepEqual(kept, Object.keys(many).slice(0, kept.length));
    assert.equal(parseObservations(observer('me', 1, text)).size, kept.length, 'other nodes read all of it');
  });

  const self = meshNode('n', { ip: '10.0.0.5', external: ['198.51.100.5'] });
  const keepalive: Array<[string, string[], number, { keepalive: number; behindNat?: string[] }]> = [
    ['seen from its own address', ['10.0.0.5:51820'], 0, { keepalive: 0 }],
    ['seen from its ExternalIP', ['198.51.100.5:40000'], 0, { keepalive: 0 }],
    [
      'seen from elsewhere',
      ['203.0.113.5:40000'],
      0,
      { keepalive: NAT_KEEPALIVE_SECONDS, behindNat: ['203.0.113.5:40000'] },
    ],
    ['seen from elsewhere, keepalive configured', ['203.0.113.5:40000'], 10, { keepalive: 10 }],
    ['not seen at all', [], 0, { keepalive: 0 }],
  ];
  for (const [what, seenFrom, configured, expected] of keepalive) {
    it(`keepalive behind NAT: ${what}`, () => assert.deepEqual(natKeepalive(self, seenFrom, configured), expected));
  }
});
