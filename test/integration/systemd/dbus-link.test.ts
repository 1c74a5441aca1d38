/**
 * The systemd D-Bus link against a real private dbus-daemon and the stand-in Manager: jobs that
 * succeed or fail, a bus killed mid-job (the call fails at once, the next one reconnects), calls
 * and jobs that never finish (bounded by the timeouts), thousands of other jobs' JobRemoved signals
 * (nothing kept), close() with a call pending, and connect() without a bus.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dbus from 'dbus-next';
import { memoryLogger } from '../../../service/src/log/logger.js';
import { SystemdUnits, UnitError, type SystemdUnitsOptions } from '../../../service/src/systemd/units.js';
import {
  privateBusConfig,
  startFakeSystemd,
  type FakeSystemd,
  type FakeSystemdOptions,
} from '../../support/fakes/systemd.js';
import { NAME_PREFIX } from '../../support/namespaces/netns.js';
import { requireTools, spawnProcess, type TestProcess } from '../../support/process.js';
import { until as waitUntil } from '../../support/wait.js';

/** Settles `p` and says how long it took. */
async function timed<T>(p: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const t0 = Date.now();
  try {
    const value = await p;
    return { ms: Date.now() - t0, value };
  } catch (error) {
    return { ms: Date.now() - t0, error };
  }
}

/** Asserts a UnitError for `unit` and `call` whose message matches `re`, and returns it. */
function assertUnitError(err: unknown, unit: string, call: string, re: RegExp): UnitError {
  assert.ok(err instanceof UnitError, `expected a UnitError, got ${String(err)}`);
  assert.equal(err.unit, unit);
  assert.equal(err.call, call);
  assert.match(err.message, re);
  assert.ok(err.message.includes(unit), `the message names the unit: ${err.message}`);
  return err;
}

/** Waits until `cond` holds (polling). */
const until = (what: string, cond: () => boolean, ms = 5_000): Promise<void> => waitUntil(cond, what, ms, 5);

describe('integration: systemd D-Bus link (private dbus-daemon, stand-in Manager)', function () {
  this.timeout(30_000);
  let dir: string;
  let socket: string;
  let address: string;
  let daemon: TestProcess | undefined;
  let fake: FakeSystemd | undefined;
  let calls: string[];
  let units: SystemdUnits | undefined;
  let log: ReturnType<typeof memoryLogger>;

  /** Starts dbus-daemon at the (same) socket path. */
  const startBus = async (): Promise<void> => {
    daemon = spawnProcess('dbus-daemon', [`--config-file=${join(dir, 'bus.conf')}`, '--nofork', '--print-address'], {
      label: 'dbus',
    });
    await daemon.waitForOutput(/unix:path=/);
  };
  /** Serves the stand-in Manager on the bus. */
  const startFake = async (opts: FakeSystemdOptions = {}): Promise<void> => {
    fake = await startFakeSystemd(address, { report: (l) => calls.push(l), ...opts });
  };
  const link = async (opts: SystemdUnitsOptions = {}): Promise<SystemdUnits> => {
    units = await SystemdUnits.connect(log, {
      busAddress: address,
      callTimeoutMs: 1_000,
      jobTimeoutMs: 2_000,
      ...opts,
    });
    assert.ok(units, `connected to the stand-in: ${log.lines.join('\n')}`);
    return units;
  };
  const warnings = (): string[] => log.lines.filter((l) => l.startsWith('<4>'));

  before(async () => {
    await requireTools(['dbus-daemon']);
    // wgo-<pid>-<n>-: removed by the helpers' stale cleanup if this run is killed.
    dir = await mkdtemp(join(tmpdir(), `${NAME_PREFIX}-${process.pid}-0-dbus-`));
    socket = join(dir, 'system_bus_socket');
    address = `unix:path=${socket}`;
    await writeFile(join(dir, 'bus.conf'), privateBusConfig(socket));
  });

  beforeEach(async () => {
    calls = [];
    log = memoryLogger();
    await startBus();
  });

  afterEach(async () => {
    units?.close();
    units = undefined;
    fake?.close();
    fake = undefined;
    await daemon?.stop('SIGKILL');
    daemon = undefined;
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('restartUnit and startUnit resolve once their jobs end "done"', async () => {
    await startFake({ jobDelayMs: 20 });
    const u = await link();
    await u.restartUnit('test-ok.service');
    await u.startUnit('test-ok.service');
    assert.deepEqual(calls, ['Subscribe', 'RestartUnit test-ok.service', 'StartUnit test-ok.service']);
    assert.equal(u.trackedJobs, 0);
    assert.deepEqual(warnings(), []);
  });

  it('a JobRemoved sent right behind the reply (same tick) is not missed', async () => {
    await startFake({ jobDelayMs: 0 });
    const u = await link({ jobTimeoutMs: 2_000 });
    const t0 = Date.now();
    for (let i = 0; i < 100; i += 1) await (i % 2 ? u.startUnit('test-ok.service') : u.restartUnit('test-ok.service'));
    assert.ok(Date.now() - t0 < 2_000, `100 jobs took ${Date.now() - t0} ms (no wait ran into the job timeout)`);
    assert.equal(u.trackedJobs, 0);
  });

  it('a job ending "failed" rejects with a UnitError naming the unit and the call', async () => {
    await startFake();
    const u = await link();
    const r = await timed(u.restartUnit('test-fail.service'));
    const err = assertUnitError(
      r.error,
      'test-fail.service',
      'RestartUnit',
      /^RestartUnit test-fail\.service: job ended with result "failed"/,
    );
    assert.equal(err.name, 'UnitError');
    const s = await timed(u.startUnit('test-fail.service'));
    assertUnitError(
      s.error,
      'test-fail.service',
      'StartUnit',
      /^StartUnit test-fail\.service: job ended with result "failed"/,
    );
    assert.equal(u.trackedJobs, 0);
  });

  it('dbus-daemon killed while a job runs: the call fails at once; after a bus restart the next call goes through a new connection', async () => {
    await startFake({ jobDelayMs: 60_000 });
    const u = await link({ callTimeoutMs: 2_000, jobTimeoutMs: 5_000 });
    const waiting = timed(u.restartUnit('test-ok.service')); // the stand-in delays the job
    const unanswered = timed(u.startUnit('test-noreply.service')); // and never answers this call
    await until(
      'the stand-in to get both calls',
      () => calls.includes('RestartUnit test-ok.service') && calls.includes('StartUnit test-noreply.service'),
    );
    await new Promise((r) => setTimeout(r, 50)); // the reply is in: the link waits for the job
    assert.equal(u.trackedJobs, 1);
    const killedAt = Date.now();
    await daemon!.stop('SIGKILL');
    const [r, n] = await Promise.all([waiting, unanswered]);
    assertUnitError(
      r.error,
      'test-ok.service',
      'RestartUnit',
      /^RestartUnit test-ok\.service: D-Bus connection lost while waiting for job \/org\/freedesktop\/systemd1\/job\/1$/,
    );
    assertUnitError(
      n.error,
      'test-noreply.service',
      'StartUnit',
      /^StartUnit test-noreply\.service: D-Bus connection lost before the reply$/,
    );
    assert.ok(
      Date.now() - killedAt < 1_000,
      `failed ${Date.now() - killedAt} ms after the kill (timeouts: call 2 s, job 5 s)`,
    );
    assert.equal(u.trackedJobs, 0);
    assert.equal(warnings().length, 1, log.lines.join('\n'));
    assert.match(warnings()[0]!, /lost the connection to systemd \(.*\); 2 pending unit call\(s\) failed/);
    fake!.close();

    // While the bus is down, calls fail fast (connect), and add no warning.
    for (const verb of ['restartUnit', 'startUnit'] as const) {
      const down = await timed(u[verb]('test-ok.service'));
      assertUnitError(down.error, 'test-ok.service', 'connect', /no usable D-Bus connection/);
      assert.ok(down.ms < 1_500, `failed after ${down.ms} ms`);
    }
    assert.equal(warnings().length, 1, log.lines.join('\n'));

    await startBus();
    await startFake({ jobDelayMs: 20 });
    const again = await timed(u.restartUnit('test-ok.service'));
    assert.equal(again.error, undefined, String(again.error));
    assert.ok(again.ms < 1_000, `took ${again.ms} ms`);
    assert.deepEqual(calls.filter((c) => c === 'Subscribe').length, 2, 'subscribed again on the new connection');
    assert.ok(log.lines.some((l) => /connected to systemd again/.test(l)));
    assert.equal(warnings().length, 1);
  });

  it('a RestartUnit that is never answered rejects after the call timeout; the link keeps working', async () => {
    await startFake();
    const u = await link({ callTimeoutMs: 500 });
    const r = await timed(u.restartUnit('test-noreply.service'));
    assertUnitError(
      r.error,
      'test-noreply.service',
      'RestartUnit',
      /^RestartUnit test-noreply\.service: no reply within 500 ms$/,
    );
    assert.ok(r.ms >= 450 && r.ms < 1_500, `rejected after ${r.ms} ms`);
    await u.restartUnit('test-ok.service');
    assert.deepEqual(warnings(), []);
  });

  it('a job that never ends rejects after the job timeout (call + job bound the whole call)', async () => {
    await startFake();
    const u = await link({ callTimeoutMs: 500, jobTimeoutMs: 700 });
    const r = await timed(u.startUnit('test-nojob.service'));
    assertUnitError(
      r.error,
      'test-nojob.service',
      'StartUnit',
      /job \/org\/freedesktop\/systemd1\/job\/\d+ did not finish within 700 ms/,
    );
    assert.ok(r.ms >= 650 && r.ms < 1_200 + 200, `rejected after ${r.ms} ms`);
    assert.equal(u.trackedJobs, 0);
  });

  it('10,000 JobRemoved signals for jobs it did not start: none is kept, even for the unit it is restarting', async () => {
    await startFake({ jobDelayMs: 500 });
    const u = await link({ jobTimeoutMs: 10_000 });
    // An independent listener proves the signals really went out on the bus.
    const observer = dbus.sessionBus({ busAddress: address });
    observer.on('error', () => undefined);
    let seen = 0;
    observer.on('message', (m: dbus.Message) => {
      if (m.member === 'JobRemoved') seen += 1;
    });
    await observer.call(
      new dbus.Message({
        destination: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'AddMatch',
        signature: 's',
        body: ["type='signal',member='JobRemoved'"],
      }),
    );
    try {
      let max = 0;
      const sampler = setInterval(() => {
        max = Math.max(max, u.trackedJobs);
      }, 1);
      const own = u.restartUnit('test-ok.service');
      await until('the stand-in to get RestartUnit', () => calls.includes('RestartUnit test-ok.service'));
      fake!.emitForeignJobs(5_000, 'test-ok.service'); // the very unit with a call of ours in flight
      fake!.emitForeignJobs(5_000, 'other.service');
      // The stand-in sends our job's JobRemoved after these (500 ms later), and the bus keeps a
      // sender's order, so once `own` resolves the link has handled all 10,000.
      await own;
      clearInterval(sampler);
      await until('the observer to see all signals', () => seen >= 10_001, 10_000);
      assert.equal(u.trackedJobs, 0);
      assert.ok(max <= 1, `at most our own job was tracked (max ${max})`);
    } finally {
      observer.disconnect();
    }
  });

  it('close() with calls pending rejects them at once; later calls fail at once; close is idempotent', async () => {
    await startFake();
    const u = await link({ callTimeoutMs: 5_000, jobTimeoutMs: 10_000 });
    const job = timed(u.startUnit('test-nojob.service'));
    const call = timed(u.restartUnit('test-noreply.service'));
    await until(
      'both calls to reach the stand-in',
      () => calls.includes('StartUnit test-nojob.service') && calls.includes('RestartUnit test-noreply.service'),
    );
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    u.close();
    u.close();
    const [j, c] = await Promise.all([job, call]);
    assert.ok(Date.now() - t0 < 250, `rejected ${Date.now() - t0} ms after close()`);
    assertUnitError(
      j.error,
      'test-nojob.service',
      'StartUnit',
      /^StartUnit test-nojob\.service: closed while waiting for job \/org\/freedesktop\/systemd1\/job\/\d+$/,
    );
    assertUnitError(
      c.error,
      'test-noreply.service',
      'RestartUnit',
      /^RestartUnit test-noreply\.service: closed before the reply$/,
    );
    const after = await timed(u.restartUnit('test-ok.service'));
    assertUnitError(after.error, 'test-ok.service', 'RestartUnit', /closed/);
    assert.ok(after.ms < 50);
    assert.equal(u.trackedJobs, 0);
    assert.deepEqual(warnings(), [], 'closing is not a connection loss');
  });

  describe('connect() without systemd', () => {
    let server: Server | undefined;
    const clients: Socket[] = [];
    let hungUp = 0;
    afterEach(async () => {
      for (const c of clients) c.destroy();
      clients.length = 0;
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
      server = undefined;
    });

    it('resolves undefined at once when nothing listens at the address', async () => {
      const r = await timed(SystemdUnits.connect(log, { busAddress: `unix:path=${join(dir, 'nothing-here')}` }));
      assert.equal(r.value, undefined);
      assert.ok(r.ms < 500, `took ${r.ms} ms`);
      assert.match(log.lines.join('\n'), /<7>no systemd on the system bus \(.*ENOENT/);
    });

    it('resolves undefined at once on a bus where no systemd is', async () => {
      const r = await timed(SystemdUnits.connect(log, { busAddress: address }));
      assert.equal(r.value, undefined);
      assert.ok(r.ms < 500, `took ${r.ms} ms`);
      assert.match(log.lines.join('\n'), /no systemd on the system bus \(.*Subscribe/);
    });

    it('resolves undefined within about 2 s when the socket accepts but never answers', async () => {
      const path = join(dir, 'silent.sock');
      server = createServer((c) => {
        clients.push(c);
        c.on('close', () => {
          hungUp += 1;
        }).resume();
      });
      await new Promise<void>((r) => server!.listen(path, r));
      const r = await timed(SystemdUnits.connect(log, { busAddress: `unix:path=${path}` }));
      assert.equal(r.value, undefined);
      assert.ok(r.ms >= 1_900 && r.ms < 3_000, `took ${r.ms} ms`);
      await until('the link to hang up', () => clients.length === 1 && hungUp === 1, 1_000);
    });
  });
});
