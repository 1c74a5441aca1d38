/**
 * The Daemon object against a fake environment (simulated host, in-memory sources): it starts its
 * parts in order and reaches readiness, stops them in reverse, survives an unexpected throw in the
 * reload path and in the metrics path with one err line each, checks its credential (node-policy
 * dry run, token expiry) at start and at each reload, and stops within its bound while a unit
 * call over D-Bus never settles — after /healthz and the status file said the run is stuck.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, fileDelayMs } from '../../../service/src/daemon/daemon.js';
import { readLiveSnapshot } from '../../../service/src/status/snapshot.js';
import type { MetricsServer } from '../../../service/src/metrics/server.js';
import type { UnitController } from '../../../service/src/systemd/units.js';
import { fakeDaemonWorld, type FakeWorld } from '../../support/fakes/daemon-env.js';
import { KEYS, meshNode } from '../../support/fakes/fixtures.js';
import { until as waitUntil } from '../../support/wait.js';

const B = meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] });
const C = meshNode('c', { ip: '192.0.2.13', created: 3, pods: ['10.244.3.0/24'], key: KEYS[2] });

function selfNode(w: FakeWorld): ReturnType<typeof meshNode> {
  return meshNode('a', {
    ip: '192.0.2.11',
    created: 1,
    pods: ['10.244.1.0/24'],
    key: w.publicKey,
    address: '100.64.2.11',
    endpoint: '192.0.2.11:51820',
  });
}

const until = (what: string, cond: () => boolean, ms = 3_000): Promise<void> => waitUntil(cond, what, ms, 5);

async function open(w: FakeWorld): Promise<Daemon> {
  const d = await Daemon.open(w.configPath, w.env);
  assert.ok(d instanceof Daemon, `Daemon.open returned ${String(d)}`);
  return d;
}

async function running(w: FakeWorld): Promise<Daemon> {
  const d = await open(w);
  await d.start();
  w.peers.state('absent');
  w.nodes.list([selfNode(w), B]);
  await until('readiness', () => w.notes.some((n) => n.startsWith('ready ')));
  return d;
}

const errLines = (w: FakeWorld): string[] => w.log.lines.filter((l) => l.startsWith('<3>'));

describe('unit: when the files that list every peer are written', () => {
  const rows: Array<[number, number, number]> = [
    [300, 0, 300],
    [300, 100, 300],
    [300, 101, 12_120],
    [300, 1_000, 120_000],
    [300, 5_000, 600_000],
    [300, 15_000, 600_000],
    [0, 5_000, 0],
  ];
  for (const [base, peers, ms] of rows) {
    it(`base ${base} ms, ${peers} peers: ${ms} ms`, () => assert.equal(fileDelayMs(base, peers), ms));
  }
});

describe('unit: the daemon object', () => {
  it('an invalid config ends with status 78 before anything starts', async () => {
    const w = fakeDaemonWorld('[wireguard]\nlisten_port = abc');
    assert.equal(await Daemon.open(w.configPath, w.env), 78);
    assert.ok(w.log.lines.some((l) => l.startsWith('<3>') && /listen_port = "abc"/.test(l)));
  });

  it('starts its parts in order, reaches readiness, and stops them in reverse leaving the mesh up', async () => {
    const w = fakeDaemonWorld('[log]\nlevel = debug');
    const d = await running(w);
    assert.ok(w.nodes.started && w.peers.started);
    assert.deepEqual([...w.host.peers.keys()], [KEYS[1]]);
    assert.match(
      w.notes.find((n) => n.startsWith('ready '))!,
      /mesh applied: 1 peers, 1 routes, address 100\.64\.2\.11\/10/,
    );
    const live = await readLiveSnapshot(join(w.dir, 'run'));
    assert.deepEqual(
      live?.peers.map((p) => p.name),
      ['b'],
      'the running daemon answers on its status socket',
    );
    await d.stop('SIGTERM');
    assert.equal(await readLiveSnapshot(join(w.dir, 'run')), undefined, 'and the socket goes with it');
    assert.ok(w.nodes.stopped && w.peers.stopped);
    const started = w.log.lines.map((l) => /^<7>started the (.*)$/.exec(l)?.[1]).filter(Boolean);
    const stopped = w.log.lines.map((l) => /^<7>stopped the (.*)$/.exec(l)?.[1]).filter(Boolean);
    assert.deepEqual(started, [
      'D-Bus link',
      'ip co-process',
      'wg-quick file',
      'fail-closed script',
      'status writer',
      'status socket',
      'metrics endpoint',
      'reconcile loop',
      'endpoint watch',
      'name resolver',
      'node source',
      'peer source',
      'peer wait',
      'config reloader',
      'interface monitor',
      'resync timer',
      'fail-closed drop counter',
    ]);
    assert.deepEqual(stopped, [...started].reverse());
    assert.ok(w.notes.includes('stopping'));
    assert.equal(w.host.link.exists, true, 'the interface stays up');
    assert.deepEqual([...w.host.peers.keys()], [KEYS[1]], 'its peers stay');
    const status = JSON.parse(readFileSync(join(w.dir, 'run', 'status.json'), 'utf8')) as {
      peers: unknown[];
      lastApply: { ok: boolean };
    };
    assert.equal(status.peers.length, 1);
    assert.equal(status.lastApply.ok, true);
    assert.deepEqual(errLines(w), []);
  });

  it('an unexpected throw in the reload path is one err line; the daemon keeps running and reloads later', async () => {
    const w = fakeDaemonWorld();
    const real = w.env.loadConfig;
    let fail = false;
    w.env.loadConfig = async (p) => {
      if (fail) throw new TypeError('injected: cannot read properties of undefined');
      return real(p);
    };
    const d = await running(w);
    fail = true;
    w.signals.emit('SIGHUP');
    await until('the err line', () => errLines(w).length > 0);
    assert.equal(errLines(w).length, 1);
    assert.match(
      errLines(w)[0]!,
      /reload of .* failed unexpectedly \(injected: cannot read properties of undefined\); still running with the previous configuration/,
    );
    // Still running: a Node change is applied, and the next reload works.
    w.nodes.list([selfNode(w), B, C]);
    await until('peer c', () => w.host.peers.has(KEYS[2]!));
    fail = false;
    w.writeConfig('[log]\nlevel = debug');
    w.signals.emit('SIGHUP');
    await until(
      'the reload',
      () =>
        w.log.lines.filter((l) => /reloading .* \(SIGHUP\)/.test(l)).length === 2 &&
        w.notes.filter((n) => n.startsWith('ready ')).length >= 3,
    );
    assert.equal(errLines(w).length, 1, 'no further err line');
    await d.stop('SIGTERM');
  });

  it("checks its credential at start and at each reload (SIGHUP): node-policy.yaml's dry run, the token's expiry, in the metrics", async () => {
    const w = fakeDaemonWorld();
    let applied = false;
    const exp = Math.floor(Date.now() / 1000) + 3 * 24 * 3600;
    const token = `e30.${Buffer.from(JSON.stringify({ exp })).toString('base64url')}.sig`;
    const connect = w.env.connectKube;
    w.env.connectKube = async (c, l) => ({
      ...(await connect(c, l)),
      nodePolicy: {
        probe: async (node) => {
          assert.equal(node, 'a');
          return applied ? { state: 'enforced', detail: 'denied request' } : { state: 'not-enforced' };
        },
      },
      token: async () => token,
    });
    const lines = (re: RegExp): number => w.log.lines.filter((l) => re.test(l)).length;
    const d = await running(w);
    await until('the warning', () => lines(/^<4>node-policy\.yaml is not in force/) > 0);
    assert.ok(lines(/^<4>this node's Kubernetes token expires in 2 days/) > 0);
    const port = /listen = 127\.0\.0\.1:(\d+)/.exec(readFileSync(w.configPath, 'utf8'))![1];
    const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(await scrape(), /^wg_overlay_node_policy_enforced 0$/m);
    assert.match(await scrape(), new RegExp(`^wg_overlay_token_expiry_timestamp_seconds ${exp}$`, 'm'));
    // The admin applies the policy and reloads: checked again, now in force; the token's expiry is said again.
    const said = lines(/^<4>this node's Kubernetes token expires/);
    applied = true;
    w.signals.emit('SIGHUP');
    await until('the policy in force', () => lines(/^<6>node-policy\.yaml is in force/) === 1);
    assert.match(await scrape(), /^wg_overlay_node_policy_enforced 1$/m);
    await until('the expiry said again', () => lines(/^<4>this node's Kubernetes token expires/) === said + 1);
    await d.stop('SIGTERM');
  });

  it('an unexpected throw in the metrics path is one err line; the daemon keeps running', async () => {
    const w = fakeDaemonWorld();
    const real = w.env.serveMetrics;
    w.env.serveMetrics = async (o) => {
      const server = await real(o);
      return {
        address: server.address,
        close: async () => {
          await server.close();
          throw new TypeError('injected: close failed');
        },
      } satisfies MetricsServer;
    };
    const d = await running(w);
    w.writeConfig('[metrics]\nlisten =');
    w.signals.emit('SIGHUP');
    await until('the err line', () => errLines(w).length > 0);
    assert.equal(errLines(w).length, 1);
    assert.match(errLines(w)[0]!, /metrics endpoint: unexpected error: injected: close failed; the daemon goes on/);
    w.nodes.list([selfNode(w), B, C]);
    await until('peer c', () => w.host.peers.has(KEYS[2]!));
    await d.stop('SIGTERM');
    assert.equal(errLines(w).length, 1);
  });

  it('a unit call that never settles: /healthz and status say the run is stuck, and stop() still ends in time', async () => {
    const w = fakeDaemonWorld('[metrics]\nwatch_down_threshold = 1');
    const hung: UnitController = {
      restartUnit: () => new Promise(() => undefined),
      startUnit: () => new Promise(() => undefined),
      close: () => undefined,
    };
    w.env.connectSystemd = async () => hung;
    w.env.timing = { ...w.env.timing, partStop: 300 };
    const d = await open(w);
    await d.start();
    w.peers.state('absent');
    w.nodes.list([selfNode(w), B]);
    await until('a run to hang', () => d.loop.busySince !== undefined);
    await new Promise((r) => setTimeout(r, 1_200));
    const h = d.healthVerdict();
    assert.equal(h.ok, false);
    assert.ok(
      h.reasons.some((r) => /a reconcile run has been stuck for \d+ s \(threshold 1 s\)/.test(r)),
      h.reasons.join('; '),
    );
    await until('the status file', () => {
      try {
        return (
          typeof (JSON.parse(readFileSync(join(w.dir, 'run', 'status.json'), 'utf8')) as { busySince?: number })
            .busySince === 'number'
        );
      } catch {
        return false;
      }
    });
    const started = Date.now();
    await d.stop('SIGTERM');
    assert.ok(Date.now() - started < 3_000, `stop took ${Date.now() - started} ms`);
    assert.ok(
      w.log.lines.some((l) => /a reconcile run did not finish within 300 ms of the stop; leaving it behind/.test(l)),
    );
    assert.ok(!w.notes.some((n) => n.startsWith('ready ')), 'never ready');
  });
});
