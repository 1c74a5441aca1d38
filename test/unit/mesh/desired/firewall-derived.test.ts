/**
 * The fail-closed rule set derived from the one before (one change costs what it changed) is the
 * rule set computed in full from the same cluster: over a random sequence of Node changes (a
 * PodCIDR added, moved or dropped, a Node deleted or added, a key withdrawn, an endpoint moved),
 * step by step, with what is carried, kept, open and dialled compared as sets.
 */
import assert from 'node:assert/strict';
import { ClusterView } from '../../../../service/src/mesh/cluster-view.js';
import { firewallDelta, type DesiredFirewall } from '../../../../service/src/mesh/desired/firewall.js';
import { planNode } from '../../../../service/src/mesh/desired/plan.js';
import type { DesiredState, MeshNode, MeshSettings } from '../../../../service/src/mesh/types.js';
import { MESH_SETTINGS, meshNode } from '../../../support/fakes/fixtures.js';

const SETTINGS: MeshSettings = {
  ...MESH_SETTINGS,
  failClosed: {},
  localGuard: { apiAddresses: ['203.0.113.10'], onLink: [] },
};
const key = (i: number): string => Buffer.alloc(32, i + 1).toString('base64');

/** Node `n<i>`: InternalIP 192.0.2.i (or 198.51.100.i once moved), PodCIDR 10.244.i.0/24 (or `pods`). */
function node(i: number, o: { pods?: string[]; key?: boolean; moved?: boolean } = {}): MeshNode {
  return meshNode(`n${i}`, {
    ip: o.moved ? `198.51.100.${i}` : `192.0.2.${i}`,
    created: i,
    pods: o.pods ?? [`10.244.${i}.0/24`],
    ...(o.key === false ? {} : { key: key(i) }),
  });
}

/** A rule set as sets of text (order aside: a derived one lists what came last at the end). */
function text(fw: DesiredFirewall): Record<string, string[]> {
  return {
    blocked: fw.blocked.map((b) => `${b.reason} ${b.dst} ${b.owner} ${b.what}`).sort(),
    hops: [...fw.hops],
    endpoints: [...fw.endpoints],
    exempt: fw.exempt.map((e) => `${e.kind} ${e.dst} ${e.node ?? ''} ${e.what}`),
  };
}

/** A small deterministic random source. */
function random(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % n;
  };
}

describe('unit: the fail-closed rule set derived from the one before', () => {
  it('equals the rule set computed in full, change after change, and says what changed', () => {
    const self = { name: 'n1', publicKey: key(1) };
    const view = new ClusterView({ self });
    const nodes = new Map<number, MeshNode>();
    for (let i = 1; i <= 30; i++) nodes.set(i, node(i));
    view.setNodes([...nodes.values()]);
    view.setExternalPeers([]);
    let previous: DesiredState = planNode({ view, self, settings: SETTINGS }).desired;
    const rand = random(7);
    let derived = 0;
    for (let step = 0; step < 200; step++) {
      const i = 2 + rand(40);
      const what = rand(6);
      const old = nodes.get(i);
      let next: MeshNode | undefined;
      if (what === 0) next = node(i, { pods: [`10.244.${i}.0/24`, `10.245.${step}.0/24`] });
      else if (what === 1) next = undefined;
      else if (what === 2) next = node(i, { key: false, pods: [`10.246.${i}.0/24`] });
      else if (what === 3) next = node(i, { moved: true, pods: old?.podCIDRs.slice() ?? [`10.244.${i}.0/24`] });
      else if (what === 4) next = node(i, { pods: [] });
      else next = node(i);
      if (next) {
        nodes.set(i, next);
        view.upsertNode(next);
      } else {
        nodes.delete(i);
        view.removeNode(i === 1 ? 'none' : `n${i}`);
      }
      const desired = planNode({ view, self, settings: SETTINGS, previous }).desired;
      const fw = desired.firewall!;
      // In full: the same cluster in a fresh view, with the same rule set before.
      const full = planNode({
        view: ClusterView.of([...nodes.values()], [], self),
        self,
        settings: SETTINGS,
        firewallBefore: previous.firewall,
      }).desired.firewall!;
      assert.deepEqual(text(fw), text(full), `step ${step}: node n${i}, change ${what}`);
      const delta = firewallDelta(fw);
      if (fw === previous.firewall) assert.deepEqual(text(fw), text(previous.firewall));
      else if (delta) {
        derived++;
        assert.equal(delta.from, previous.firewall);
        const before = new Set(text(previous.firewall!).blocked);
        const after = new Set(text(fw).blocked);
        const line = (b: DesiredFirewall['blocked'][number]): string => `${b.reason} ${b.dst} ${b.owner} ${b.what}`;
        for (const b of delta.removed)
          assert.ok(before.has(line(b)) && !after.has(line(b)), `step ${step}: -${line(b)}`);
        for (const b of delta.added) assert.ok(after.has(line(b)) && !before.has(line(b)), `step ${step}: +${line(b)}`);
        const gone = [...before].filter((l) => !after.has(l)).sort();
        const came = [...after].filter((l) => !before.has(l)).sort();
        assert.deepEqual(delta.removed.map(line).sort(), gone, `step ${step}`);
        assert.deepEqual(delta.added.map(line).sort(), came, `step ${step}`);
      }
      previous = desired;
    }
    // Most steps were derived, not computed in full.
    assert.ok(derived > 100, `${derived} derived`);
  });

  it('an unchanged rule set is the very same object, and a Node without a key is found without a scan', () => {
    const self = { name: 'n1', publicKey: key(1) };
    const view = ClusterView.of([node(1), node(2), node(3, { key: false })], [], self);
    const first = planNode({ view, self, settings: SETTINGS }).desired;
    assert.deepEqual(
      first.firewall!.exempt.filter((e) => e.kind === 'not-in-mesh').map((e) => e.dst),
      ['10.244.3.0/24'],
    );
    assert.deepEqual([...view.namesWithKey('')], ['n3']);
    view.upsertNode({ ...node(2), annotations: { ...node(2).annotations, unrelated: 'x' } });
    const second = planNode({ view, self, settings: SETTINGS, previous: first }).desired;
    assert.equal(second.firewall, first.firewall);
    view.upsertNode(node(3));
    assert.deepEqual([...view.namesWithKey('')], []);
    const third = planNode({ view, self, settings: SETTINGS, previous: second }).desired;
    assert.equal(
      third.firewall!.exempt.find((e) => e.kind === 'not-in-mesh'),
      undefined,
    );
    assert.ok(third.firewall!.blocked.some((b) => b.dst === '10.244.3.0/24' && b.reason === 'carried'));
  });
});
