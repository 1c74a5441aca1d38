/**
 * The nft adapter against the simulated host: a restart adopts the table (one read, no change),
 * an element changed by hand is repaired by replacing the whole table in one transaction, a table
 * of another layout is replaced, `fail_closed = off` deletes the table and the saved script, and
 * nobody else's table is ever touched.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIREWALL_FILE, FirewallAdapter } from '../../../service/src/host/firewall-adapter.js';
import type { DesiredFirewall } from '../../../service/src/mesh/desired/firewall.js';
import { FakeHost } from '../../support/fakes/host.js';

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
});
