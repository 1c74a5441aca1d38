/**
 * The route adapter without a host: the exact `ip` commands and `ip -batch` lines a route plan
 * becomes (replace vs exclusive add, deletes by own proto and device, both families), how
 * failures are told apart (an exclusive add that finds a route is a clash; anything else
 * throws; deletes tolerate failure; a dead batch falls back to one command each), and the
 * parsing of `ip -j route`.
 */
import assert from 'node:assert/strict';
import {
  CommandError,
  RecordingRunner,
  type CommandResult,
  type RunOptions,
} from '../../../service/src/exec/runner.js';
import type { RouteChange } from '../../../service/src/mesh/desired/diff.js';
import type { IpBatch } from '../../../service/src/host/ip-batch.js';
import { applyRouteChanges, readRoutes, ROUTE_PROTO } from '../../../service/src/host/routes.js';

const add = (dst: string, dev = 'wg0'): RouteChange => ({
  op: 'add',
  route: { dst, dev, via: 'a' },
  reason: `PodCIDR ${dst} of a`,
});
/** `dev` null: a route `ip` listed without a device. */
const del = (dst: string, dev: string | null = 'wg0'): RouteChange => ({
  op: 'delete',
  route: { dst, dev: dev ?? undefined, protocol: ROUTE_PROTO },
  reason: `no current peer owns ${dst}`,
});
const conflict = (dst: string): RouteChange => ({
  op: 'conflict',
  route: { dst, dev: 'wg0', via: 'a' },
  other: { dst, dev: 'eth0', protocol: 'static' },
  reason: "someone else's",
});

/** A runner whose `ip` commands fail with `stderr` when the command line contains `match`. */
function failing(rules: Array<[match: string, stderr: string]>): RecordingRunner & { opts: RunOptions[] } {
  const opts: RunOptions[] = [];
  const runner = new RecordingRunner((cmd, args, o): Partial<CommandResult> => {
    opts.push(o);
    const line = [cmd, ...args].join(' ');
    const rule = rules.find(([m]) => line.includes(m));
    return rule ? { exitCode: 2, stderr: rule[1] } : {};
  });
  return Object.assign(runner, { opts });
}

/** A stand-in for the `ip -batch` co-process: records the lines, answers errors by line index. */
class FakeBatch {
  readonly runs: string[][] = [];

  constructor(
    private readonly answer: (lines: readonly string[]) => Map<number, string> | Promise<Map<number, string>> = () =>
      new Map(),
  ) {}

  async run(lines: readonly string[]): Promise<Map<number, string>> {
    this.runs.push([...lines]);
    return this.answer(lines);
  }
}
const asBatch = (b: FakeBatch): IpBatch => b as unknown as IpBatch;

describe('unit: routes', () => {
  describe('applyRouteChanges, one ip command per change', () => {
    it('replace for adds, del with proto and device, -4/-6 by family; conflicts run nothing', async () => {
      const runner = new RecordingRunner();
      const clashes = await applyRouteChanges(runner, [
        add('10.244.1.0/24'),
        conflict('10.244.5.0/24'),
        add('fd00:1::/64'),
        del('10.244.9.0/24'),
        del('fd00:9::/64', 'wg1'),
        del('10.0.0.1/32', null),
      ]);
      assert.deepEqual(clashes, []);
      assert.deepEqual(runner.calls, [
        'ip -4 route replace 10.244.1.0/24 dev wg0 proto 77',
        'ip -6 route replace fd00:1::/64 dev wg0 proto 77',
        'ip -4 route del 10.244.9.0/24 proto 77 dev wg0',
        'ip -6 route del fd00:9::/64 proto 77 dev wg1',
        'ip -4 route del 10.0.0.1/32 proto 77',
      ]);
    });

    it('exclusive: add instead of replace', async () => {
      const runner = new RecordingRunner();
      assert.deepEqual(
        await applyRouteChanges(runner, [add('10.244.1.0/24'), add('fd00:1::/64'), del('10.244.9.0/24')], {
          exclusive: true,
        }),
        [],
      );
      assert.deepEqual(runner.calls, [
        'ip -4 route add 10.244.1.0/24 dev wg0 proto 77',
        'ip -6 route add fd00:1::/64 dev wg0 proto 77',
        'ip -4 route del 10.244.9.0/24 proto 77 dev wg0',
      ]);
    });

    it('nothing to do: no command', async () => {
      const runner = new RecordingRunner();
      assert.deepEqual(await applyRouteChanges(runner, []), []);
      assert.deepEqual(await applyRouteChanges(runner, [conflict('10.244.5.0/24')], { exclusive: true }), []);
      assert.deepEqual(runner.calls, []);
    });

    it('exclusive: "File exists" is a clash, reported by destination, and the rest still runs', async () => {
      const runner = failing([
        ['10.244.1.0/24', 'RTNETLINK answers: File exists\n'],
        ['fd00:1::/64', 'RTNETLINK answers: File exists\n'],
      ]);
      const clashes = await applyRouteChanges(
        runner,
        [add('10.244.1.0/24'), add('10.244.2.0/24'), add('fd00:1::/64')],
        { exclusive: true },
      );
      assert.deepEqual(clashes, ['10.244.1.0/24', 'fd00:1::/64']);
      assert.equal(runner.calls.length, 3);
    });

    it("exclusive: any other failure of an add throws with ip's message, and stops there", async () => {
      const runner = failing([['10.244.1.0/24', 'Cannot find device "wg0"\n']]);
      await assert.rejects(
        applyRouteChanges(runner, [add('10.244.1.0/24'), add('10.244.2.0/24')], { exclusive: true }),
        { message: 'ip -4 route add 10.244.1.0/24 dev wg0: Cannot find device "wg0"' },
      );
      assert.deepEqual(runner.calls, ['ip -4 route add 10.244.1.0/24 dev wg0 proto 77']);
    });

    it('exclusive: a failure without a message names the exit status', async () => {
      const runner = failing([['fd00:1::/64', '']]);
      await assert.rejects(applyRouteChanges(runner, [add('fd00:1::/64')], { exclusive: true }), {
        message: 'ip -6 route add fd00:1::/64 dev wg0: exit 2',
      });
    });

    it('replace: a failure throws (even "File exists", which replace cannot cause)', async () => {
      for (const stderr of ['RTNETLINK answers: Network is unreachable', 'RTNETLINK answers: File exists']) {
        const runner = failing([['10.244.1.0/24', stderr]]);
        await assert.rejects(
          applyRouteChanges(runner, [add('10.244.1.0/24'), add('10.244.2.0/24')]),
          (err: unknown) => err instanceof CommandError && err.message.includes(stderr),
        );
        assert.equal(runner.calls.length, 1);
      }
    });

    it('deletes tolerate failure (a route already gone is fine), in both modes', async () => {
      for (const exclusive of [false, true]) {
        const runner = failing([['route del', 'RTNETLINK answers: No such process']]);
        assert.deepEqual(
          await applyRouteChanges(runner, [del('10.244.9.0/24'), del('fd00:9::/64'), add('10.244.1.0/24')], {
            exclusive,
          }),
          [],
        );
        assert.equal(runner.calls.length, 3);
        assert.deepEqual(
          runner.opts.map((o) => o.allowFailure),
          [true, true, exclusive],
          'deletes may always fail; adds only when exclusive',
        );
      }
    });
  });

  describe('applyRouteChanges through the ip -batch co-process', () => {
    it('one batch with the exact lines, conflicts left out; no ip process', async () => {
      const runner = new RecordingRunner();
      const batch = new FakeBatch();
      const clashes = await applyRouteChanges(
        runner,
        [
          add('10.244.1.0/24'),
          conflict('10.244.5.0/24'),
          add('fd00:1::/64'),
          del('10.244.9.0/24'),
          del('10.0.0.1/32', null),
        ],
        { exclusive: true, batch: asBatch(batch) },
      );
      assert.deepEqual(clashes, []);
      assert.deepEqual(batch.runs, [
        [
          'route add 10.244.1.0/24 dev wg0 proto 77',
          'route add fd00:1::/64 dev wg0 proto 77',
          'route del 10.244.9.0/24 proto 77 dev wg0',
          'route del 10.0.0.1/32 proto 77',
        ],
      ]);
      assert.deepEqual(runner.calls, []);
    });

    it('without exclusive, the batch replaces', async () => {
      const batch = new FakeBatch();
      await applyRouteChanges(new RecordingRunner(), [add('10.244.1.0/24')], { batch: asBatch(batch) });
      assert.deepEqual(batch.runs, [['route replace 10.244.1.0/24 dev wg0 proto 77']]);
    });

    it('nothing to do: the batch is not used', async () => {
      const batch = new FakeBatch();
      assert.deepEqual(
        await applyRouteChanges(new RecordingRunner(), [conflict('10.244.5.0/24')], {
          exclusive: true,
          batch: asBatch(batch),
        }),
        [],
      );
      assert.deepEqual(batch.runs, []);
    });

    it('"File exists" on a line is a clash for that line\'s destination (indices count without conflicts)', async () => {
      const batch = new FakeBatch(() => new Map([[1, 'RTNETLINK answers: File exists']]));
      const runner = new RecordingRunner();
      const clashes = await applyRouteChanges(
        runner,
        [conflict('10.244.5.0/24'), add('10.244.1.0/24'), add('10.244.2.0/24'), add('10.244.3.0/24')],
        { exclusive: true, batch: asBatch(batch) },
      );
      assert.deepEqual(clashes, ['10.244.2.0/24']);
      assert.deepEqual(runner.calls, []);
    });

    it('a failed delete line is fine', async () => {
      const batch = new FakeBatch(() => new Map([[0, 'RTNETLINK answers: No such process']]));
      assert.deepEqual(
        await applyRouteChanges(new RecordingRunner(), [del('10.244.9.0/24'), add('10.244.1.0/24')], {
          exclusive: true,
          batch: asBatch(batch),
        }),
        [],
      );
    });

    it("any other failure of an add line throws with ip's message", async () => {
      const batch = new FakeBatch(
        () =>
          new Map([
            [0, 'RTNETLINK answers: File exists'],
            [1, 'Cannot find device "wg0"'],
          ]),
      );
      await assert.rejects(
        applyRouteChanges(new RecordingRunner(), [add('10.244.1.0/24'), add('fd00:1::/64')], {
          exclusive: true,
          batch: asBatch(batch),
        }),
        { message: 'ip route add fd00:1::/64 dev wg0: Cannot find device "wg0"' },
      );
    });

    it('a batch that fails as a whole: one ip command per change instead, with clashes still reported', async () => {
      const batch = new FakeBatch(() => Promise.reject(new Error('ip -batch exited (SIGKILL)')));
      const runner = failing([['10.244.2.0/24', 'RTNETLINK answers: File exists']]);
      const clashes = await applyRouteChanges(
        runner,
        [
          add('10.244.1.0/24'),
          add('10.244.2.0/24'),
          conflict('10.244.5.0/24'),
          add('fd00:1::/64'),
          del('10.244.9.0/24'),
        ],
        { exclusive: true, batch: asBatch(batch) },
      );
      assert.equal(batch.runs.length, 1);
      assert.deepEqual(clashes, ['10.244.2.0/24']);
      assert.deepEqual(runner.calls, [
        'ip -4 route add 10.244.1.0/24 dev wg0 proto 77',
        'ip -4 route add 10.244.2.0/24 dev wg0 proto 77',
        'ip -6 route add fd00:1::/64 dev wg0 proto 77',
        'ip -4 route del 10.244.9.0/24 proto 77 dev wg0',
      ]);
    });

    it('the fallback still throws on a real failure', async () => {
      const batch = new FakeBatch(() => Promise.reject(new Error('ip -batch: spawn ip ENOENT')));
      const runner = failing([['10.244.1.0/24', 'Cannot find device "wg0"']]);
      await assert.rejects(
        applyRouteChanges(runner, [add('10.244.1.0/24')], { exclusive: true, batch: asBatch(batch) }),
        /ip -4 route add 10\.244\.1\.0\/24 dev wg0: Cannot find device "wg0"/,
      );
    });
  });

  describe('readRoutes', () => {
    const V4 = [
      {
        dst: 'default',
        gateway: '192.0.2.1',
        dev: 'eth0',
        protocol: 'dhcp',
        prefsrc: '192.0.2.11',
        metric: 100,
        flags: [],
      },
      { dst: '10.244.1.0/24', dev: 'wg0', protocol: '77', scope: 'link', flags: [] },
      { dst: '10.0.0.1', dev: 'eth0', protocol: 'static', scope: 'link', flags: [] },
      { dst: '192.0.2.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '192.0.2.11', flags: [] },
      { dst: '10.244.7.0/24', dev: 'eth1', scope: 'link', flags: [] }, // proto boot: ip -j leaves it out
      { type: 'unicast', dst: '10.244.8.0/24', dev: 'eth1', protocol: 4, flags: [] },
      {
        dst: '10.244.6.0/24',
        protocol: 'bgp',
        nexthops: [
          { gateway: '192.0.2.2', dev: 'eth0' },
          { gateway: '192.0.2.3', dev: 'eth0' },
        ],
        flags: [],
      },
      { type: 'blackhole', dst: '10.96.0.0/12', protocol: 'static', flags: [] },
      { type: 'unreachable', dst: '10.97.0.0/16', flags: [] },
      { type: 'prohibit', dst: '10.98.0.0/16', flags: [] },
    ];
    const V6 = [
      { dst: 'fd00:1::/64', dev: 'wg0', protocol: '77', metric: 1024, pref: 'medium' },
      { dst: 'fd00::1', dev: 'eth0', protocol: 'static', metric: 1024, pref: 'medium' },
      { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel', metric: 256, pref: 'medium' },
      { type: 'unreachable', dst: 'fd00:dead::/32', dev: 'lo', metric: 1024, pref: 'medium' },
      { dst: 'default', gateway: 'fe80::1', dev: 'eth0', protocol: 'ra', metric: 1024, pref: 'medium' },
    ];

    it('both families of the main table; default and host routes as CIDRs; non-unicast skipped', async () => {
      const runner = new RecordingRunner((_cmd, args) => ({
        stdout: `${JSON.stringify(args.includes('-4') ? V4 : V6)}\n`,
      }));
      assert.deepEqual(await readRoutes(runner), [
        { dst: '0.0.0.0/0', dev: 'eth0', gateway: '192.0.2.1', protocol: 'dhcp' },
        { dst: '10.244.1.0/24', dev: 'wg0', protocol: '77' },
        { dst: '10.0.0.1/32', dev: 'eth0', protocol: 'static' },
        { dst: '192.0.2.0/24', dev: 'eth0', protocol: 'kernel' },
        { dst: '10.244.7.0/24', dev: 'eth1', protocol: '' },
        { dst: '10.244.8.0/24', dev: 'eth1', protocol: '4' },
        { dst: '10.244.6.0/24', dev: undefined, protocol: 'bgp' },
        { dst: 'fd00:1::/64', dev: 'wg0', protocol: '77' },
        { dst: 'fd00::1/128', dev: 'eth0', protocol: 'static' },
        { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel' },
        { dst: '::/0', dev: 'eth0', gateway: 'fe80::1', protocol: 'ra' },
      ]);
      assert.deepEqual(runner.calls, ['ip -j -4 route show table main', 'ip -j -6 route show table main']);
    });

    it('empty output (no routes of a family) is an empty list', async () => {
      const runner = new RecordingRunner((_cmd, args) => ({ stdout: args.includes('-4') ? '[]\n' : '' }));
      assert.deepEqual(await readRoutes(runner), []);
    });

    it('a failing ip is an error, not an empty table', async () => {
      const runner = new RecordingRunner(() => ({ exitCode: 1, stderr: 'Cannot open netlink socket' }));
      await assert.rejects(readRoutes(runner), CommandError);
    });
  });
});
