/**
 * The nft adapter against the simulated host: a restart adopts the table (one read, no change),
 * an element changed by hand is repaired by replacing the whole table in one transaction, a table
 * of another layout is replaced, `fail_closed = off` deletes the table and the saved script, and
 * nobody else's table is ever touched. A rule set derived from the one the table holds changes
 * only its changed elements, and in a large mesh the saved script is written a moment later.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIREWALL_FILE, FirewallAdapter } from '../../../service/src/host/firewall-adapter.js';
import { elementsOf } from '../../../service/src/host/nft-rules.js';
import { ClusterView } from '../../../service/src/mesh/cluster-view.js';
import { firewallDelta, type DesiredFirewall } from '../../../service/src/mesh/desired/firewall.js';
import { planNode } from '../../../service/src/mesh/desired/plan.js';
import type { DesiredState, MeshNode } from '../../../service/src/mesh/types.js';
import { FakeHost } from '../../support/fakes/host.js';
import { MESH_SETTINGS, meshNode } from '../../support/fakes/fixtures.js';

const key = (i: number): string => Buffer.alloc(32, i + 1).toString('base64');
const meshOf = (i: number, pods = [`10.244.${i}.0/24`]): MeshNode =>
  meshNode(`n${i}`, { ip: `192.0.2.${i}`, created: i, pods, key: key(i) });

/** A cluster of 30 Nodes seen from n1, planned with fail_closed on: each change is derived from the plan before. */
function cluster(): { view: ClusterView; plan: (previous?: DesiredState) => DesiredState } {
  const self = { name: 'n1', publicKey: key(1) };
  const view = ClusterView.of(
    Array.from({ length: 30 }, (_, i) => meshOf(i + 1)),
    [],
    self,
  );
  const settings = { ...MESH_SETTINGS, failClosed: {}, localGuard: { apiAddresses: ['203.0.113.10'], onLink: [] } };
  return { view, plan: (previous) => planNode({ view, self, settings, previous }).desired };
}

/** A rule set blocking the overlay and `ranges` (`dst owner`). */
function ruleSet(...ranges: string[]): DesiredFirewall {
  return {
    enabled: true,
    iface: 'wg0',
    blocked: ['100.64.0.0/10 overlay', ...ranges].map((r) => ({
      dst: r.split(' ')[0]!,
      reason: 'carried',
      owner: r.split(' ')[1]!,
      what: '',
    })),
    hops: [],
    endpoints: ['192.0.2.12:51820'],
    exempt: [{ dst: '203.0.113.10/32', kind: 'api-server', what: '' }],
  };
}

const elements = (host: FakeHost, set: string): string[] => [...(host.nft?.sets.get(set) ?? [])].sort();

describe('unit: the nft adapter', () => {
  it('a restart adopts the table: one read, no change, and the blocked ranges with their owners', async () => {
    const host = new FakeHost();
    const dir = mkdtempSync(join(tmpdir(), 'wgo-fw-'));
    await new FirewallAdapter(host.runner, dir).set(ruleSet('10.244.2.0/24 b'));
    const mark = host.runner.calls.length;
    const again = new FirewallAdapter(host.runner, dir);
    const before = await again.adopt();
    assert.deepEqual(before?.blocked.map((b) => `${b.reason} ${b.dst} ${b.owner}`).sort(), [
      'carried 10.244.2.0/24 b',
      'carried 100.64.0.0/10 overlay',
    ]);
    assert.deepEqual(await again.set(ruleSet('10.244.2.0/24 b')), []);
    assert.deepEqual(host.runner.calls.slice(mark), ['nft -j list table inet wg_overlay']);
  });

  it('an element deleted by hand: the next change replaces the whole table from the saved script', async () => {
    const host = new FakeHost();
    const dir = mkdtempSync(join(tmpdir(), 'wgo-fw-'));
    const a = new FirewallAdapter(host.runner, dir);
    await a.set(ruleSet('10.244.2.0/24 b', '10.244.3.0/24 c'));
    host.nft!.sets.get('carried4')!.delete('10.244.3.0/24 comment "c"');
    await a.set(ruleSet('10.244.2.0/24 b', '10.244.4.0/24 d'));
    assert.deepEqual(elements(host, 'carried4'), [
      '10.244.2.0/24 comment "b"',
      '10.244.4.0/24 comment "d"',
      '100.64.0.0/10 comment "overlay"',
    ]);
    assert.equal(host.runner.calls.at(-1), `nft -f ${join(dir, FIREWALL_FILE)}`);
  });

  it('a table of another layout is replaced whole; fail_closed = off deletes it and the saved script; other tables stay', async () => {
    const host = new FakeHost();
    const dir = mkdtempSync(join(tmpdir(), 'wgo-fw-'));
    host.nft = { iface: 'wg9', sets: new Map([['carried4', new Set(['10.9.0.0/16'])]]) };
    const a = new FirewallAdapter(host.runner, dir);
    const changes = await a.set(ruleSet('10.244.2.0/24 b'));
    assert.match(changes[0]!.what, /replaced/);
    assert.equal(host.nft.iface, 'wg0');
    assert.deepEqual(elements(host, 'carried4'), ['10.244.2.0/24 comment "b"', '100.64.0.0/10 comment "overlay"']);
    assert.match(readFileSync(join(dir, FIREWALL_FILE), 'utf8'), /^table inet wg_overlay$/m);
    await a.set({ ...ruleSet(), enabled: false });
    assert.equal(host.nft, undefined);
    assert.equal(existsSync(join(dir, FIREWALL_FILE)), false);
    assert.deepEqual([...host.nftOthers], ['inet filter']);
    assert.ok(host.runner.calls.every((c) => !c.startsWith('nft') || /wg_overlay|fail-closed\.nft/.test(c)));
  });

  it('a rule set derived from the applied one: only its changed elements, in one transaction', async () => {
    const host = new FakeHost();
    const dir = mkdtempSync(join(tmpdir(), 'wgo-fw-'));
    const a = new FirewallAdapter(host.runner, dir);
    const c = cluster();
    const first = c.plan();
    await a.set(first.firewall!);
    const mark = host.runner.calls.length;
    c.view.upsertNode(meshOf(5, ['10.244.5.0/24', '10.245.0.0/24']));
    c.view.removeNode('n7');
    const second = c.plan(first);
    assert.equal(firewallDelta(second.firewall!)?.from, first.firewall);
    const changes = await a.set(second.firewall!);
    // n7's range moves from carried4 to kept4 (its machine may still be up), its endpoint goes.
    assert.deepEqual(host.runner.calls.slice(mark), [
      "nft 'delete element inet wg_overlay carried4 { 10.244.7.0/24 }\n" +
        'delete element inet wg_overlay endpoints4 { 192.0.2.7 . 51820 }\n' +
        'add element inet wg_overlay carried4 { 10.245.0.0/24 comment "n5" }\n' +
        'add element inet wg_overlay kept4 { 10.244.7.0/24 comment "n7" }\'',
    ]);
    assert.deepEqual(
      changes.map((x) => x.what),
      [
        'fail-closed set carried4: +10.245.0.0/24 (n5) -10.244.7.0/24 (n7)',
        'fail-closed set kept4: +10.244.7.0/24 (n7)',
        'fail-closed set endpoints4: -192.0.2.7 . 51820',
      ],
    );
    assert.deepEqual(host.nft!.sets, elementsOf(second.firewall!));
  });

  it('in a large mesh the saved script is written a moment later, at once before nft loads it, and by flush()', async () => {
    const host = new FakeHost();
    const dir = mkdtempSync(join(tmpdir(), 'wgo-fw-'));
    const file = join(dir, FIREWALL_FILE);
    const a = new FirewallAdapter(host.runner, dir, () => 60_000);
    const c = cluster();
    const first = c.plan();
    await a.set(first.firewall!);
    assert.match(readFileSync(file, 'utf8'), /10\.244\.5\.0\/24/); // a new table: written before nft loads it
    c.view.upsertNode(meshOf(5, ['10.244.5.0/24', '10.245.0.0/24']));
    const second = c.plan(first);
    await a.set(second.firewall!);
    assert.ok(elements(host, 'carried4').includes('10.245.0.0/24 comment "n5"'));
    assert.doesNotMatch(readFileSync(file, 'utf8'), /10\.245\.0\.0/);
    await a.flush();
    assert.match(readFileSync(file, 'utf8'), /10\.245\.0\.0\/24 comment "n5"/);
    // A transaction the table refuses (changed by hand): the script is written first, then loaded.
    host.nft!.sets.get('carried4')!.delete('10.244.9.0/24 comment "n9"');
    c.view.upsertNode(meshOf(9, []));
    await a.set(c.plan(second).firewall!);
    assert.equal(host.runner.calls.at(-1), `nft -f ${file}`);
    assert.match(readFileSync(file, 'utf8'), /kept4 \{ 10\.244\.9\.0\/24 comment "n9"/);
  });
});
