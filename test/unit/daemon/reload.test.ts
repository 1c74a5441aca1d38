/**
 * Reload rules: which settings apply at run time and which need a restart of the daemon.
 */
import assert from 'node:assert/strict';
import { defaultConfig, type Config } from '../../../service/src/config/config.js';
import { planReload } from '../../../service/src/daemon/reload.js';

function changed(edit: (c: Config) => void): Config {
  const c = defaultConfig();
  edit(c);
  return c;
}

describe('unit: config reload rules', () => {
  it('nothing changed → nothing to do', () => {
    const plan = planReload(defaultConfig(), defaultConfig());
    assert.equal(plan.changed, false);
    assert.deepEqual(plan.needRestart, []);
  });

  const runtime: Array<[string, (c: Config) => void]> = [
    [
      'listen_port',
      (c) => {
        c.wireguard.listenPort = 51999;
      },
    ],
    [
      'mtu',
      (c) => {
        c.wireguard.mtu = 1380;
      },
    ],
    [
      'persistent_keepalive',
      (c) => {
        c.wireguard.persistentKeepalive = 25;
      },
    ],
    [
      'endpoint',
      (c) => {
        c.wireguard.endpoint = { mode: 'external' };
      },
    ],
    [
      'apply',
      (c) => {
        c.wireguard.apply = 'restart';
      },
    ],
    [
      'overlay cidr',
      (c) => {
        c.overlay.cidr = '100.96.0.0/12';
      },
    ],
    [
      'log level',
      (c) => {
        c.log.level = 'debug';
      },
    ],
  ];
  for (const [name, edit] of runtime) {
    it(`${name} applies at run time`, () => {
      const next = changed(edit);
      const plan = planReload(defaultConfig(), next);
      assert.equal(plan.changed, true);
      assert.deepEqual(plan.needRestart, []);
      assert.deepEqual(plan.config, next);
    });
  }

  const restartOnly: Array<[string, (c: Config) => void]> = [
    [
      '[kubernetes] kubeconfig',
      (c) => {
        c.kubernetes.kubeconfig = '/tmp/other';
      },
    ],
    [
      '[kubernetes] node_name',
      (c) => {
        c.kubernetes.nodeName = 'other';
      },
    ],
    [
      '[kubernetes] discovery',
      (c) => {
        c.kubernetes.discovery = 'list';
      },
    ],
    [
      '[wireguard] interface',
      (c) => {
        c.wireguard.interface = 'wg9';
        c.wireguard.configFile = '/etc/wireguard/wg9.conf';
      },
    ],
    [
      '[state] dir',
      (c) => {
        c.state.dir = '/tmp/state';
      },
    ],
  ];
  for (const [name, edit] of restartOnly) {
    it(`${name} needs a restart and keeps its running value`, () => {
      const running = defaultConfig();
      const plan = planReload(running, changed(edit));
      assert.ok(plan.needRestart.includes(name), plan.needRestart.join(','));
      assert.deepEqual(plan.config, running, 'the running values are kept');
      assert.equal(plan.changed, false);
    });
  }

  it('a mix: runtime keys apply, restart-only keys are reported', () => {
    const plan = planReload(
      defaultConfig(),
      changed((c) => {
        c.wireguard.listenPort = 4500;
        c.state.dir = '/x';
      }),
    );
    assert.equal(plan.config.wireguard.listenPort, 4500);
    assert.equal(plan.config.state.dir, '/var/lib/wg-overlay');
    assert.deepEqual(plan.needRestart, ['[state] dir']);
    assert.equal(plan.changed, true);
  });
});
