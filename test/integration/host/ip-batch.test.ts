/**
 * The `ip -batch` co-process against the real `ip` in a test namespace: lines run in order,
 * per-line errors come back by index, later jobs still work, and a dead process is restarted.
 */
import assert from 'node:assert/strict';
import { IpBatch } from '../../../service/src/host/ip-batch.js';
import { applyRouteChanges } from '../../../service/src/host/routes.js';
import { ExecaRunner } from '../../../service/src/exec/runner.js';
import { requireTools } from '../../support/process.js';
import { TestNode } from '../../support/namespaces/netns.js';

describe('integration: ip -batch for routes', function () {
  this.timeout(30_000);
  let node: TestNode;
  let batch: IpBatch;

  before(async () => {
    await requireTools(['ip', 'nsenter']);
    node = await TestNode.create({ label: 'batch' });
    await node.exec('ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await node.exec('ip', ['link', 'set', 'br0', 'up']);
    batch = new IpBatch(undefined, 5_000, ['nsenter', '-t', String(node.holderPid), '-n', '--', 'ip']);
  });

  after(async () => {
    batch?.close();
    await node?.destroy();
  });

  const routes = async (): Promise<string[]> => {
    const r = await node.exec('ip', ['-j', 'route', 'show', 'proto', '77']);
    const r6 = await node.exec('ip', ['-j', '-6', 'route', 'show', 'proto', '77']);
    return [...JSON.parse(r.stdout || '[]'), ...JSON.parse(r6.stdout || '[]')]
      .map((x: { dst: string }) => x.dst)
      .sort();
  };

  it('runs lines in order and reports each failed line by index', async () => {
    const errors = await batch.run([
      'route add 10.77.1.0/24 dev br0 proto 77',
      'route add 10.77.1.0/24 dev br0 proto 77',
      'route add fd00:77::/64 dev br0 proto 77',
    ]);
    assert.deepEqual([...errors.keys()], [1]);
    assert.match(errors.get(1)!, /File exists/);
    assert.deepEqual(await routes(), ['10.77.1.0/24', 'fd00:77::/64']);
  });

  it('keeps working for later jobs, and restarts after its process died', async () => {
    assert.deepEqual([...(await batch.run(['route del 10.77.1.0/24 proto 77 dev br0'])).keys()], []);
    batch.close();
    assert.deepEqual([...(await batch.run(['route add 10.77.2.0/24 dev br0 proto 77'])).keys()], []);
    assert.deepEqual(await routes(), ['10.77.2.0/24', 'fd00:77::/64']);
  });

  it('applyRouteChanges through it: an exclusive add reports a clash instead of replacing', async () => {
    await node.exec('ip', ['route', 'add', '10.77.3.0/24', 'dev', 'br0', 'proto', 'static']);
    const clashes = await applyRouteChanges(
      new ExecaRunner(),
      [
        { op: 'add', route: { dst: '10.77.3.0/24', dev: 'br0', via: 'x' }, reason: 'test' },
        { op: 'add', route: { dst: '10.77.4.0/24', dev: 'br0', via: 'x' }, reason: 'test' },
      ],
      { exclusive: true, batch },
    );
    assert.deepEqual(clashes, ['10.77.3.0/24']);
    const r = await node.exec('ip', ['route', 'show', '10.77.3.0/24']);
    assert.match(r.stdout, /proto static/);
    assert.ok((await routes()).includes('10.77.4.0/24'));
  });
});
