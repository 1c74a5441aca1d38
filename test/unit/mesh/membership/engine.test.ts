/**
 * The incremental engine against the full computation: over seeded random sequences of thousands
 * of Node adds, updates and deletes (and Peer list changes), mixing ordinary nodes with conflicting
 * keys, overlapping and refused PodCIDRs, claimed and colliding overlay addresses, changing
 * addresses and endpoints, the engine's membership, addresses and verdicts equal
 * `decideMembership` on the same lists after every step — with and without a viewing node. The
 * desired state derived from the previous one (only the changed Nodes' entries replaced) equals
 * the one built in full, and its deltas name exactly the peers and routes that changed.
 */
import assert from 'node:assert/strict';
import { ANNOTATION_OVERLAY_ADDRESS6 } from '../../../../service/src/mesh/annotations.js';
import { desiredFor, NotReadyError } from '../../../../service/src/mesh/desired/desired.js';
import { MeshEngine } from '../../../../service/src/mesh/membership/engine.js';
import { decideMembership, type Membership } from '../../../../service/src/mesh/membership/membership.js';
import type {
  DesiredState,
  ExternalPeer,
  ListDelta,
  MembershipSettings,
  MeshNode,
  MeshSettings,
} from '../../../../service/src/mesh/types.js';
import { KEYS, MESH_SETTINGS, meshNode } from '../../../support/fakes/fixtures.js';
import { rng } from '../../../support/fakes/random.js';

const SETTINGS: MembershipSettings = {
  overlayCidr: '100.64.0.0/10',
  listenPort: 51820,
  protectedRanges: ['198.51.100.1/32'],
};

/** A comparable form of a membership. */
function view(m: Membership): unknown {
  const sorted = (x: ReadonlyMap<string, string> | undefined) => [...(x ?? [])].sort(([a], [b]) => (a < b ? -1 : 1));
  return {
    members: m.members,
    peers: m.externalPeers,
    addresses: sorted(m.addresses),
    addresses6: sorted(m.addresses6),
    skipped: m.skipped,
  };
}

function randomNode(r: () => number, name: string, created: number): MeshNode {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const i = Math.floor(r() * 40);
  const pods = pick([
    [`10.244.${i}.0/24`],
    [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`],
    ['10.244.0.0/16'],
    [`10.244.${i}.128/25`],
    ['not-a-cidr'],
    ['128.0.0.0/1'],
    [`192.0.2.${i}/32`],
    [],
  ]);
  const ip = pick([
    `192.0.2.${i}`,
    `192.0.2.${i + 1}`,
    `198.51.100.${i}`,
    '198.51.100.1',
    `10.244.${i}.9`,
    `10.244.${(i + 1) % 40}.9`,
  ]);
  return meshNode(name, {
    ip,
    created,
    pods,
    ...(r() < 0.9 ? { key: pick([...KEYS, 'garbage', '']) } : {}),
    ...(r() < 0.6
      ? { address: pick([`100.64.2.${i}`, `100.64.2.${i % 5}`, '100.64.0.0', 'nope', `100.64.${i}.7`]) }
      : {}),
    ...(r() < 0.3 ? { endpoint: pick([`${ip}:51820`, 'x.example:1', '198.51.100.9:51820']) } : {}),
    ...(r() < 0.4
      ? {
          annotations: {
            [ANNOTATION_OVERLAY_ADDRESS6]: pick([
              `fd12:3456:789a::${i}`,
              `fd12:3456:789a::${i % 5}`,
              'fd12:3456:789a::',
              'nope',
              'fd99::1',
            ]),
          },
        }
      : {}),
  });
}

function randomPeers(r: () => number): ExternalPeer[] {
  const n = Math.floor(r() * 4);
  return Array.from({ length: n }, (_, i) => ({
    name: `peer-${i}`,
    createdAt: Date.UTC(2026, 0, 1) + Math.floor(r() * 30) * 60_000,
    allowedIPs: [r() < 0.5 ? `10.5.${i}.0/24` : `10.244.${Math.floor(r() * 40)}.0/24`],
    publicKey: KEYS[Math.floor(r() * KEYS.length)]!,
    presharedKey: undefined,
    persistentKeepalive: undefined,
    endpoint: undefined,
  }));
}

/** `from` with `delta` applied (by object identity), as a multiset check against `to`. */
function assertDelta<T>(delta: ListDelta<T>, to: readonly T[], what: string): void {
  const have = new Map<T, number>();
  for (const x of delta.from) have.set(x, (have.get(x) ?? 0) + 1);
  for (const x of delta.removed) {
    assert.ok((have.get(x) ?? 0) > 0, `${what}: removed an object that was not there`);
    have.set(x, have.get(x)! - 1);
  }
  for (const x of delta.added) have.set(x, (have.get(x) ?? 0) + 1);
  const want = new Map<T, number>();
  for (const x of to) want.set(x, (want.get(x) ?? 0) + 1);
  for (const [x, n] of have) assert.equal(n, want.get(x) ?? 0, `${what}: the delta does not lead to the list`);
  for (const [x, n] of want) assert.equal(n, have.get(x) ?? 0, `${what}: the delta does not lead to the list`);
}

describe('unit: the incremental membership engine equals the full computation', () => {
  for (const [seed, self, six] of [
    [1, false, false],
    [2, true, false],
    [3, false, true],
    [42, true, true],
    [2026, false, false],
  ] as const) {
    it(`seed ${seed}${self ? ', from a node' : ''}${six ? ', dual-stack' : ''}: 1,500 random adds, updates, deletes, Peer changes`, function () {
      this.timeout(60_000);
      const r = rng(seed);
      const selfId = self ? { name: 'n0', publicKey: KEYS[0] } : undefined;
      const settings: MembershipSettings = six ? { ...SETTINGS, overlayCidr6: 'fd12:3456:789a::/120' } : SETTINGS;
      const engine = new MeshEngine(settings, selfId);
      const nodes = new Map<string, MeshNode>();
      let peers: ExternalPeer[] = [];
      for (let step = 0; step < 1500; step += 1) {
        const roll = r();
        const name = `n${Math.floor(r() * 30)}`;
        if (roll < 0.55) {
          const n = randomNode(
            r,
            name,
            nodes.get(name)?.createdAt !== undefined ? Math.floor(r() * 3) : Math.floor(r() * 60),
          );
          nodes.set(name, n);
          engine.upsertNode(n);
        } else if (roll < 0.85) {
          nodes.delete(name);
          engine.removeNode(name);
        } else if (roll < 0.95) {
          peers = randomPeers(r);
          engine.setExternalPeers(peers);
        } else {
          // A re-list: most Nodes as they were, some gone, some changed or new, in one call.
          const next = new Map<string, MeshNode>();
          for (const [k, n] of nodes) if (r() < 0.8) next.set(k, n);
          for (let j = Math.floor(r() * 6); j > 0; j -= 1) {
            const k = `n${Math.floor(r() * 30)}`;
            next.set(k, randomNode(r, k, nodes.get(k)?.createdAt ?? Math.floor(r() * 60)));
          }
          nodes.clear();
          for (const [k, n] of next) nodes.set(k, n);
          engine.setNodes([...nodes.values()]);
        }
        const want = decideMembership([...nodes.values()], peers, settings, selfId);
        assert.deepEqual(view(engine.result()), view(want), `step ${step}`);
      }
    });
  }

  for (const seed of [7, 99, 2027]) {
    it(`seed ${seed}: desired state derived change by change equals the full one, and its deltas say what changed`, function () {
      this.timeout(60_000);
      const r = rng(seed);
      const settings: MeshSettings = { ...MESH_SETTINGS, ...SETTINGS };
      const self = { name: 'n0', publicKey: KEYS[0]! };
      const engine = new MeshEngine(settings, self);
      const nodes = new Map<string, MeshNode>();
      const put = (n: MeshNode): void => {
        nodes.set(n.name, n);
        engine.upsertNode(n);
      };
      put(
        meshNode('n0', { ip: '192.0.2.200', created: 0, pods: ['10.250.0.0/24'], key: KEYS[0], address: '100.64.9.9' }),
      );
      let previous: DesiredState | undefined;
      let derived = 0;
      for (let step = 0; step < 1500; step += 1) {
        const name = `n${1 + Math.floor(r() * 40)}`;
        const roll = r();
        if (roll < 0.6) put(randomNode(r, name, Math.floor(r() * 60)));
        else if (roll < 0.9) {
          nodes.delete(name);
          engine.removeNode(name);
        } else if (roll < 0.95) engine.setExternalPeers(randomPeers(r));
        // else: no change at all
        const membership = engine.result();
        let got: DesiredState;
        try {
          got = desiredFor({ self, selfNode: nodes.get('n0'), membership, settings, previous });
        } catch (err) {
          if (!(err instanceof NotReadyError)) throw err;
          previous = undefined;
          continue;
        }
        const full = desiredFor({ self, selfNode: nodes.get('n0'), membership, settings });
        assert.deepEqual(
          { peers: got.peers, routes: got.routes, warnings: got.warnings },
          { peers: full.peers, routes: full.routes, warnings: full.warnings },
          `step ${step}`,
        );
        if (got.peersDelta) {
          derived += 1;
          assert.equal(got.peersDelta.from, previous!.peers);
          assertDelta(got.peersDelta, got.peers, `step ${step} peers`);
          assertDelta(got.routesDelta!, got.routes, `step ${step} routes`);
        }
        previous = got;
      }
      assert.ok(derived > 300, `many steps are derived (${derived} of 1,500)`);
    });
  }

  it('3,000 Nodes that publish no claim in either overlay (older daemons): one change judges one Node, a re-list judges each once', () => {
    const engine = new MeshEngine({ ...SETTINGS, overlayCidr6: 'fd12:3456:789a::/48' });
    const key = (i: number): string =>
      Buffer.from([i & 255, i >> 8, ...new Array<number>(29).fill(7), 1]).toString('base64');
    const node = (i: number, pod = `10.${100 + (i >> 8)}.${i & 255}.0/24`): MeshNode =>
      meshNode(`n${i}`, { ip: `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`, created: i, pods: [pod], key: key(i) });
    const all = Array.from({ length: 3000 }, (_, i) => node(i));
    engine.setNodes(all);
    const first = engine.result();
    assert.equal(first.members.length, 3000);
    assert.equal(first.addresses.size, 3000);
    assert.equal(first.addresses6?.size, 3000);
    assert.equal(engine.judged, 3000, 'the first list judges every Node once');
    engine.upsertNode(node(17, '10.250.0.0/24'));
    const after = engine.result();
    assert.equal(engine.judged, 3001, 'a PodCIDR change re-judges only that Node');
    assert.deepEqual([...after.changes!.nodes], ['n17']);
    engine.removeNode('n18');
    assert.equal(engine.judged, 3001, 'a removal of a Node in conflict with nobody judges nobody');
    assert.equal(engine.result().members.length, 2999);
  });

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
