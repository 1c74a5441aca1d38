/**
 * The IPv6 overlay of a dual-stack mesh, table-driven: every Node gets a stable address in
 * `[overlay] cidr6` by the same rules as its IPv4 one — published claims honoured oldest first,
 * candidates from its address, collisions probing forward, a younger Node never taking an older
 * one's address, invalid claims refused with the reason, exhaustion an error for the Nodes left
 * without one (which stay in the mesh over IPv4) — and `cidr6 = auto` is one /48 per cluster CA.
 */
import assert from 'node:assert/strict';
import { autoOverlay6 } from '../../../../service/src/config/mesh-settings.js';
import { ANNOTATION_OVERLAY_ADDRESS6 } from '../../../../service/src/mesh/annotations.js';
import { desiredFor } from '../../../../service/src/mesh/desired/desired.js';
import { MeshEngine } from '../../../../service/src/mesh/membership/engine.js';
import { decideMembership } from '../../../../service/src/mesh/membership/membership.js';
import type { MeshNode, MembershipSettings } from '../../../../service/src/mesh/types.js';
import { KEYS, MESH_SETTINGS, meshNode } from '../../../support/fakes/fixtures.js';

const OVERLAY6 = 'fd12:3456:789a::/48';
const SETTINGS: MembershipSettings = { overlayCidr: '100.64.0.0/10', overlayCidr6: OVERLAY6, listenPort: 51820 };

/** A Node with an InternalIP (or several), a key, and optionally a published IPv6 overlay claim. */
function node(name: string, created: number, ip: string | string[], claim6?: string): MeshNode {
  const n = meshNode(name, { ip, created, pods: [], key: KEYS[created % KEYS.length] });
  if (claim6 !== undefined) n.annotations[ANNOTATION_OVERLAY_ADDRESS6] = claim6;
  return n;
}

/** name → IPv6 overlay address, and the IPv6 problems by name. */
function decide(nodes: MeshNode[], settings: MembershipSettings = SETTINGS) {
  const m = decideMembership(nodes, [], settings);
  const problems = m.skipped
    .filter((s) => s.message.startsWith('IPv6 overlay:'))
    .map((s) => [s.name, s.reason, s.whole]);
  return { addresses: Object.fromEntries([...(m.addresses6 ?? [])].sort()), problems, members: m.members };
}

describe('unit: IPv6 overlay addresses (dual-stack)', () => {
  const rows: Array<{
    what: string;
    nodes: MeshNode[];
    want: Record<string, string>;
    problems?: unknown[];
    settings?: MembershipSettings;
  }> = [
    {
      what: 'the candidate is the IPv4 InternalIP in the low bits of the IPv6 overlay',
      nodes: [node('a', 1, '192.0.2.11'), node('b', 2, '192.0.2.12')],
      want: { a: 'fd12:3456:789a::c000:20b', b: 'fd12:3456:789a::c000:20c' },
    },
    {
      what: 'an IPv6-only node: the low 64 bits of its IPv6 InternalIP',
      nodes: [node('v6', 1, '2001:db8::abcd:1')],
      want: { v6: 'fd12:3456:789a::abcd:1' },
    },
    {
      what: 'a published claim is honoured (sticky), whatever the candidate',
      nodes: [node('a', 1, '192.0.2.11', 'fd12:3456:789a::42'), node('b', 2, '192.0.2.12')],
      want: { a: 'fd12:3456:789a::42', b: 'fd12:3456:789a::c000:20c' },
    },
    {
      what: 'the same candidate for two nodes: the older keeps it, the younger probes forward',
      nodes: [node('old', 1, '192.0.2.11'), node('young', 2, '192.0.2.11')],
      want: { old: 'fd12:3456:789a::c000:20b', young: 'fd12:3456:789a::c000:20c' },
    },
    {
      what: "a younger node claiming an older node's address does not get it",
      nodes: [node('old', 1, '192.0.2.11', 'fd12:3456:789a::7'), node('thief', 2, '192.0.2.12', 'fd12:3456:789a::7')],
      want: { old: 'fd12:3456:789a::7', thief: 'fd12:3456:789a::c000:20c' },
      problems: [['thief', 'overlay-address-taken', false]],
    },
    {
      what: 'claims outside the IPv6 overlay, not addresses, or its network address are refused',
      nodes: [
        node('out', 1, '192.0.2.11', 'fd99::1'),
        node('junk', 2, '192.0.2.12', 'not-an-ip'),
        node('net', 3, '192.0.2.13', 'fd12:3456:789a::'),
      ],
      want: { out: 'fd12:3456:789a::c000:20b', junk: 'fd12:3456:789a::c000:20c', net: 'fd12:3456:789a::c000:20d' },
      problems: [
        ['out', 'invalid-overlay-address', false],
        ['junk', 'invalid-overlay-address', false],
        ['net', 'invalid-overlay-address', false],
      ],
    },
    {
      what: 'exhaustion: the nodes left without an IPv6 address stay in the mesh over IPv4',
      nodes: [node('a', 1, '192.0.2.11'), node('b', 2, '192.0.2.12'), node('c', 3, '192.0.2.13')],
      settings: { ...SETTINGS, overlayCidr6: 'fd12:3456:789a::/126' },
      want: { a: 'fd12:3456:789a::1', b: 'fd12:3456:789a::2' },
      problems: [['c', 'no-overlay-address', false]],
    },
  ];
  for (const row of rows) {
    it(row.what, () => {
      const got = decide(row.nodes, row.settings);
      assert.deepEqual(got.addresses, row.want);
      assert.deepEqual(got.problems, row.problems ?? []);
      assert.equal(got.members.length, row.nodes.length, 'every node is a member');
    });
  }

  it('stays put when other nodes come and go (sticky through the engine too)', () => {
    const engine = new MeshEngine(SETTINGS);
    const a = node('a', 1, '192.0.2.11');
    engine.upsertNode(a);
    const first = engine.result().addresses6!.get('a');
    engine.upsertNode(node('b', 0, '192.0.2.11')); // an older node with the same candidate joins
    const withB = engine.result();
    // a published nothing yet, so the older b takes the candidate; once a publishes, it keeps its address.
    assert.equal(withB.addresses6!.get('b'), first);
    const published = {
      ...a,
      annotations: { ...a.annotations, [ANNOTATION_OVERLAY_ADDRESS6]: withB.addresses6!.get('a')! },
    };
    engine.upsertNode(published);
    engine.removeNode('b');
    engine.upsertNode(node('c', 3, '192.0.2.11'));
    assert.equal(engine.result().addresses6!.get('a'), withB.addresses6!.get('a'));
    assert.deepEqual(
      [...engine.result().addresses6!].sort(),
      [...decideMembership([published, node('c', 3, '192.0.2.11')], [], SETTINGS).addresses6!].sort(),
    );
  });

  it('desired state: the interface gets both addresses, every peer a /32 and a /128, and this node publishes its IPv6 address', () => {
    const nodes = [node('a', 1, '192.0.2.11'), node('b', 2, '192.0.2.12')];
    const self = { name: 'a', publicKey: KEYS[1]! };
    const settings = { ...MESH_SETTINGS, ...SETTINGS };
    const d = desiredFor({
      self,
      selfNode: nodes[0],
      membership: decideMembership(nodes, [], settings, self),
      settings,
    });
    assert.equal(d.iface.address6, 'fd12:3456:789a::c000:20b/48');
    assert.deepEqual(d.peers[0]!.allowedIPs, ['100.64.2.12/32', 'fd12:3456:789a::c000:20c/128']);
    assert.equal(d.publish[ANNOTATION_OVERLAY_ADDRESS6], 'fd12:3456:789a::c000:20b');
  });

  it('cidr6 = auto: a unique local /48 from the cluster CA, the same for the same CA, another for another', () => {
    const pem =
      '-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mt\n-----END CERTIFICATE-----\n';
    const a = autoOverlay6(pem);
    assert.match(a, /^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48$/);
    assert.equal(autoOverlay6(pem.replace(/\n/g, '\r\n')), a, 'line endings do not matter');
    assert.notEqual(autoOverlay6(pem.replace('MIIB', 'MIIC')), a);
  });
});
