/**
 * End-to-end modes: `discovery = list` converges without a watch, and `apply = restart`
 * restarts wg-quick@wg0 through a stand-in systemd on a private D-Bus, with routes re-added.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Cluster, REPO_ROOT, waitFor } from '../support/cluster/cluster.js';
import { privateBusConfig } from '../support/fakes/systemd.js';
import { requireTools, type TestProcess } from '../support/process.js';

describe('e2e: discovery = list', function () {
  this.timeout(90_000);
  let cluster: Cluster;

  before(async () => {
    await requireTools(['wg', 'wireguard-go', 'ip', 'nsenter', 'ping']);
    cluster = await Cluster.create({ baseConfig: '[kubernetes]\ndiscovery = list\nlist_interval = 1' });
    await Promise.all(['node-a', 'node-b'].map((n) => cluster.addNode(n)));
  });

  after(async () => {
    await cluster?.destroy();
  });

  it('converges by listing, and follows a new Node within a list interval', async () => {
    await cluster.waitForMesh();
    cluster.api.setWatchEnabled(false); // an endpoint that cannot watch
    await cluster.addNode('node-c');
    await cluster.waitForMesh(undefined, 20_000);
    const r = await cluster
      .must('node-a')
      .pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', cluster.must('node-c').podIp]);
    assert.match(r.stdout, /2 received/);
    assert.ok(!cluster.api.requests.some((q) => /watch=(1|true)/.test(q.query)), 'no watch request was made');
  });
});

describe('e2e: apply = restart through a stand-in systemd on a private D-Bus', function () {
  this.timeout(90_000);
  let cluster: Cluster;
  let fake: TestProcess;
  const bus = 'unix:path=/run/fake-dbus/system_bus_socket';

  before(async () => {
    await requireTools(['wg', 'wg-quick', 'wireguard-go', 'ip', 'nsenter', 'ping', 'dbus-daemon']);
    cluster = await Cluster.create();
    const a = await cluster.addNode('node-a', { start: false, config: '[wireguard]\napply = restart' });
    await a.host.exec('mkdir', ['-p', '/run/fake-dbus']);
    await a.host.writeFile('/etc/fake-dbus.conf', privateBusConfig('/run/fake-dbus/system_bus_socket'));
    const daemon = a.host.spawn('dbus-daemon', ['--config-file=/etc/fake-dbus.conf', '--nofork', '--print-address']);
    await daemon.waitForOutput(/unix:path=/);
    fake = a.host.spawn('node', [join(REPO_ROOT, 'dist/test/support/fakes/systemd.js'), bus]);
    await fake.waitForOutput('fake systemd ready');
    await cluster.startDaemon('node-a', { DBUS_SYSTEM_BUS_ADDRESS: bus });
    await cluster.addNode('node-b');
    await cluster.waitForMesh();
  });

  after(async () => {
    await cluster?.destroy();
  });

  it('uses systemd: starts wg-quick@wg0.service over D-Bus', async () => {
    assert.match(fake.output(), /StartUnit wg-quick@wg0\.service/);
    assert.match(cluster.must('node-a').daemon!.output(), /systemd found on the system bus/);
  });

  it('a peer change restarts wg-quick@wg0 over D-Bus; routes come back after the restart', async () => {
    await cluster.addNode('node-c');
    await cluster.waitForMesh();
    await waitFor('a RestartUnit call', () => /RestartUnit wg-quick@wg0\.service/.test(fake.output()));
    const log = cluster.must('node-a').daemon!.output();
    assert.match(
      log,
      /restarted wg-quick@wg0\.service through systemd D-Bus \(why: apply = restart and \d+ peer change/,
    );
    assert.doesNotMatch(
      log.slice(log.indexOf('restarted wg-quick@wg0')),
      /exec: wg set wg0 peer/,
      'no wg set in restart mode',
    );
    const routes = await cluster.routes('node-a');
    assert.deepEqual(routes, [...cluster.must('node-b').podCIDRs, ...cluster.must('node-c').podCIDRs].sort());
    for (const n of ['node-b', 'node-c']) {
      const r = await cluster
        .must('node-a')
        .pod!.exec('ping', ['-c', '2', '-i', '0.2', '-W', '3', cluster.must(n).podIp]);
      assert.match(r.stdout, /2 received/, n);
    }
  });

  it('routes deleted from outside are re-added at once', async () => {
    const a = cluster.must('node-a');
    const dst = cluster.must('node-b').podCIDRs[0]!;
    await a.host.exec('ip', ['route', 'del', dst, 'dev', 'wg0']);
    await waitFor('the route to come back', async () => (await cluster.routes('node-a')).includes(dst), 5_000);
  });
});
