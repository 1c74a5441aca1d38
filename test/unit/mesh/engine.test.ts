/**
 * The incremental engine against the full computation: over seeded random sequences of thousands
 * of Node adds, updates and deletes (and Peer list changes), mixing ordinary nodes with conflicting
 * keys, overlapping and refused PodCIDRs, claimed and colliding overlay addresses, changing
 * addresses and endpoints, the engine's membership, addresses and verdicts equal
 * `decideMembership` on the same lists after every step — with and without a viewing node.
 */
import assert from 'node:assert/strict';
import { MeshEngine } from '../../../service/src/mesh/engine.js';
import { decideMembership, type Membership } from '../../../service/src/mesh/membership.js';
import type { ExternalPeer, MembershipSettings, MeshNode } from '../../../service/src/mesh/types.js';
import { KEYS, meshNode } from '../../support/fixtures.js';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SETTINGS: MembershipSettings = { overlayCidr: '100.64.0.0/10', listenPort: 51820, protectedAddresses: ['198.51.100.1'] };

/** A comparable form of a membership. */
function view(m: Membership): unknown {
  return { members: m.members, peers: m.externalPeers, addresses: [...m.addresses].sort(([a], [b]) => (a < b ? -1 : 1)), skipped: m.skipped };
}

function randomNode(r: () => number, name: string, created: number): MeshNode {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const i = Math.floor(r() * 40);
  const pods = pick([[`10.244.${i}.0/24`], [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`], ['10.244.0.0/16'], [`10.244.${i}.128/25`], ['not-a-cidr'], ['128.0.0.0/1'], [`192.0.2.${i}/32`], []]);
  const ip = pick([`192.0.2.${i}`, `192.0.2.${i + 1}`, `198.51.100.${i}`, '198.51.100.1', `10.244.${i}.9`, `10.244.${(i + 1) % 40}.9`]);
  return meshNode(name, {
    ip,
    created,
    pods,
    ...(r() < 0.9 ? { key: pick([...KEYS, 'garbage', '']) } : {}),
    ...(r() < 0.6 ? { address: pick([`100.64.2.${i}`, `100.64.2.${i % 5}`, '100.64.0.0', 'nope', `100.64.${i}.7`]) } : {}),
    ...(r() < 0.3 ? { endpoint: pick([`${ip}:51820`, 'x.example:1', '198.51.100.9:51820']) } : {}),
  });
}

function randomPeers(r: () => number): ExternalPeer[] {
  const n = Math.floor(r() * 4);
  return Array.from({ length: n }, (_, i) => ({
    name: `peer-${i}`, createdAt: Date.UTC(2026, 0, 1) + Math.floor(r() * 30) * 60_000, allowedIPs: [r() < 0.5 ? `10.5.${i}.0/24` : `10.244.${Math.floor(r() * 40)}.0/24`],
    publicKey: KEYS[Math.floor(r() * KEYS.length)]!, presharedKey: undefined, persistentKeepalive: undefined, endpoint: undefined,
  }));
}

describe('unit: the incremental membership engine equals the full computation', () => {
  for (const [seed, self] of [[1, false], [2, true], [3, false], [42, true], [2026, false]] as const) {
    it(`seed ${seed}${self ? ', seen from a node' : ''}: 1,500 random adds, updates, deletes and Peer changes`, function () {
      this.timeout(60_000);
      const r = rng(seed);
      const selfId = self ? { name: 'n0', publicKey: KEYS[0] } : undefined;
      const engine = new MeshEngine(SETTINGS, selfId);
      const nodes = new Map<string, MeshNode>();
      let peers: ExternalPeer[] = [];
      for (let step = 0; step < 1500; step += 1) {
        const roll = r();
        const name = `n${Math.floor(r() * 30)}`;
        if (roll < 0.55) {
          const n = randomNode(r, name, nodes.get(name)?.createdAt !== undefined ? Math.floor(r() * 3) : Math.floor(r() * 60));
          nodes.set(name, n);
          engine.upsertNode(n);
        } else if (roll < 0.85) {
          nodes.delete(name);
          engine.removeNode(name);
        } else if (roll < 0.95) {
          peers = randomPeers(r);
          engine.setExternalPeers(peers);
        } else {
          const list = [...nodes.values()];
          engine.setNodes(list);
        }
        const want = decideMembership([...nodes.values()], peers, SETTINGS, selfId);
        assert.deepEqual(view(engine.result()), view(want), `step ${step}`);
      }
    });
  }

  it('an unchanged Node is no work, and unchanged members keep their objects', () => {
    const engine = new MeshEngine(SETTINGS);
    const a = meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] });
    const b = meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] });
    engine.setNodes([a, b]);
    const before = engine.result();
    assert.equal(engine.upsertNode({ ...a, annotations: { ...a.annotations } }), false);
    engine.upsertNode({ ...b, podCIDRs: ['10.244.3.0/24'] });
    const after = engine.result();
    assert.equal(after.members[0], before.members[0], 'a keeps its object');
    assert.notEqual(after.members[1], before.members[1]);
  });
});
