/**
 * The fail-closed drop counters as the daemon reads them: the first read is the baseline, later
 * increases are counted by family and reason, a table loaded anew counts from zero, and the
 * journal gets one line naming the ranges when drops start, then at most one a minute.
 */
import assert from 'node:assert/strict';
import { RecordingRunner } from '../../../service/src/exec/runner.js';
import { FirewallDrops } from '../../../service/src/daemon/firewall-drops.js';
import { memoryLogger } from '../../../service/src/log/logger.js';

/** nft's JSON for the named counters (packets by name) and for one set's elements with their counters. */
const countersJson = (c: Record<string, number>): string =>
  JSON.stringify({
    nftables: Object.entries(c).map(([name, packets]) => ({
      counter: { family: 'inet', name, packets, bytes: 84 * packets },
    })),
  });
const setJson = (elements: Record<string, number>): string =>
  JSON.stringify({
    nftables: [
      {
        set: {
          name: 'kept4',
          flags: ['interval'],
          elem: Object.entries(elements).map(([cidr, packets]) => {
            const [addr, len] = cidr.split('/');
            return {
              elem: { val: { prefix: { addr, len: Number(len) } }, comment: 'node-b', counter: { packets, bytes: 0 } },
            };
          }),
        },
      },
    ],
  });

describe('unit: the fail-closed drop counters', () => {
  it('counts increases by family and reason after a baseline, names the ranges once when drops start', async () => {
    let counters: Record<string, number> = { carried4: 7, kept4: 0, kept6: 0 };
    let elements: Record<string, number> = { '10.244.2.0/24': 0 };
    const runner = new RecordingRunner((_cmd, args) =>
      args[2] === 'counters' ? { stdout: countersJson(counters) } : { stdout: setJson(elements) },
    );
    const log = memoryLogger();
    let now = 1_000_000;
    const counted: string[] = [];
    const drops = new FirewallDrops({
      runner,
      log,
      everyMs: 10_000,
      now: () => now,
      blocked: () => [
        { dst: '10.244.2.0/24', reason: 'kept', owner: 'node-b', what: 'PodCIDR of node-b (no longer in the mesh)' },
      ],
      onDrops: (family, reason, packets) => counted.push(`${family} ${reason} ${packets}`),
    });
    await drops.poll(); // baseline: the 7 packets dropped before this daemon are not counted
    assert.deepEqual(counted, []);
    counters = { carried4: 7, kept4: 40, kept6: 0 };
    elements = { '10.244.2.0/24': 40 };
    now += 10_000;
    await drops.poll();
    assert.deepEqual(counted, ['ipv4 kept 40']);
    const warnings = (): string[] => log.lines.filter((l) => l.includes('fail closed: dropped'));
    assert.equal(warnings().length, 1);
    assert.match(
      warnings()[0]!,
      /dropped 40 packet\(s\) to 10\.244\.2\.0\/24 \(PodCIDR of node-b \(no longer in the mesh\)\)/,
    );
    // Drops going on: counted, but no second line within the minute.
    counters = { carried4: 7, kept4: 50, kept6: 0 };
    now += 10_000;
    await drops.poll();
    assert.deepEqual(counted, ['ipv4 kept 40', 'ipv4 kept 10']);
    assert.equal(warnings().length, 1);
    // A table loaded anew (counters from 0): its packets are new drops.
    counters = { carried4: 0, kept4: 3, kept6: 0 };
    now += 60_000;
    await drops.poll();
    assert.deepEqual(counted, ['ipv4 kept 40', 'ipv4 kept 10', 'ipv4 kept 3']);
    assert.equal(warnings().length, 2, 'one more line after a minute');
    assert.equal(drops.report().total, 3);
  });

  it('no table (fail_closed = off): nothing counted, nothing logged', async () => {
    const runner = new RecordingRunner(() => ({ exitCode: 1, stderr: 'Error: No such file or directory' }));
    const log = memoryLogger();
    const drops = new FirewallDrops({
      runner,
      log,
      everyMs: 10_000,
      blocked: () => undefined,
      onDrops: () => assert.fail(),
    });
    await drops.poll();
    await drops.poll();
    assert.deepEqual(log.lines, []);
    assert.equal(drops.report().total, 0);
  });
});
