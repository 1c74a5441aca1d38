/**
 * Config parsing and validation: defaults, every kind of error message, unknown keys, and the
 * shipped packaging/wg-operlay.conf documenting every key.
 */
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, KNOWN_KEYS, defaultConfig, loadConfig, parseConfig } from '../../../service/src/config/config.js';

const FILE = '/etc/wg-overlay/wg-overlay.conf';

function errorsOf(text: string): string[] {
  try {
    parseConfig(text, FILE);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e.problems;
  }
  assert.fail('expected the config to be rejected');
}

describe('unit: config', () => {
  it('an empty file gives the documented defaults', () => {
    const { config, warnings } = parseConfig('', FILE);
    const d = defaultConfig();
    assert.deepEqual(warnings, []);
    assert.equal(config.source, FILE);
    assert.deepEqual({ ...config, source: '' }, { ...d, source: '' });
    assert.equal(config.kubernetes.kubeconfig, '/etc/wg-overlay/kubeconfig');
    assert.equal(config.kubernetes.discovery, 'watch');
    assert.equal(config.wireguard.interface, 'wg0');
    assert.equal(config.wireguard.configFile, '/etc/wireguard/wg0.conf');
    assert.equal(config.wireguard.listenPort, 51820);
    assert.deepEqual(config.wireguard.endpoint, { mode: 'internal' });
    assert.equal(config.wireguard.mtu, 'auto');
    assert.equal(config.wireguard.apply, 'set');
    assert.equal(config.wireguard.implementation, 'auto');
    assert.equal(config.wireguard.createInterface, true);
    assert.equal(config.overlay.cidr, '100.64.0.0/10');
    assert.equal(config.state.dir, '/var/lib/wg-overlay');
    assert.equal(config.state.runtimeDir, '/run/wg-overlay');
    assert.deepEqual(config.peers.allowedIpsExtra, []);
    assert.deepEqual(config.metrics.listen, { host: '127.0.0.1', port: 9586 }, 'metrics on loopback by default');
    assert.equal(config.metrics.watchDownThresholdSeconds, 300);
    assert.equal(config.log.level, 'info');
  });

  it('reads the Peer, metrics and runtime keys; an empty listen turns metrics off', () => {
    const { config, warnings } = parseConfig(
      `
[state]
runtime_dir = /tmp/run-wgo
[peers]
allowed_ips_extra = 10.96.0.1/12, fd00:96::/108
[metrics]
listen = [::1]:9100
watch_down_threshold = 30
`,
      FILE,
    );
    assert.deepEqual(warnings, []);
    assert.equal(config.state.runtimeDir, '/tmp/run-wgo');
    assert.deepEqual(config.peers.allowedIpsExtra, ['10.96.0.0/12', 'fd00:96::/108'], 'normalised');
    assert.deepEqual(config.metrics.listen, { host: '::1', port: 9100 });
    assert.equal(config.metrics.watchDownThresholdSeconds, 30);
    assert.equal(parseConfig('[metrics]\nlisten =\n', FILE).config.metrics.listen, undefined);
  });

  it('reads every key', () => {
    const { config } = parseConfig(
      `
[kubernetes]
kubeconfig = /tmp/kc
node_name = node-a
discovery = list
list_interval = 5
[wireguard]
interface = wgx
listen_port = 51999
endpoint = 203.0.113.7:4500
mtu = 1380
persistent_keepalive = 25
apply = restart
implementation = userspace
create_interface = false
[overlay]
cidr = 100.96.0.0/12
[state]
dir = /tmp/state
[log]
level = debug
`,
      FILE,
    );
    assert.equal(config.kubernetes.kubeconfig, '/tmp/kc');
    assert.equal(config.kubernetes.nodeName, 'node-a');
    assert.equal(config.kubernetes.discovery, 'list');
    assert.equal(config.kubernetes.listIntervalSeconds, 5);
    assert.equal(config.wireguard.interface, 'wgx');
    assert.equal(config.wireguard.configFile, '/etc/wireguard/wgx.conf', 'config_file follows the interface name');
    assert.equal(config.wireguard.listenPort, 51999);
    assert.deepEqual(config.wireguard.endpoint, { mode: 'explicit', host: '203.0.113.7', port: 4500 });
    assert.equal(config.wireguard.mtu, 1380);
    assert.equal(config.wireguard.persistentKeepalive, 25);
    assert.equal(config.wireguard.apply, 'restart');
    assert.equal(config.wireguard.implementation, 'userspace');
    assert.equal(config.wireguard.createInterface, false);
    assert.equal(config.overlay.cidr, '100.96.0.0/12');
    assert.equal(config.state.dir, '/tmp/state');
    assert.equal(config.log.level, 'debug');
  });

  const endpoints: Array<[string, unknown]> = [
    ['internal', { mode: 'internal' }],
    ['external', { mode: 'external' }],
    ['vpn.example.com:51820', { mode: 'explicit', host: 'vpn.example.com', port: 51820 }],
    ['[2001:db8::1]:51820', { mode: 'explicit', host: '2001:db8::1', port: 51820 }],
    ['198.51.100.9', { mode: 'explicit', host: '198.51.100.9', port: undefined }],
  ];
  for (const [text, want] of endpoints) {
    it(`endpoint = ${text}`, () => {
      assert.deepEqual(parseConfig(`[wireguard]\nendpoint = ${text}\n`, FILE).config.wireguard.endpoint, want);
    });
  }

  it('explicit config_file wins over the interface default', () => {
    const { config } = parseConfig('[wireguard]\ninterface = wg7\nconfig_file = /run/x/wg7.conf\n', FILE);
    assert.equal(config.wireguard.configFile, '/run/x/wg7.conf');
  });

  const errors: Array<[string, string, string]> = [
    [
      'listen_port not a number',
      '[wireguard]\nlisten_port = abc',
      `${FILE}: [wireguard] listen_port = "abc": not a port (1-65535)`,
    ],
    [
      'listen_port out of range',
      '[wireguard]\nlisten_port = 70000',
      `${FILE}: [wireguard] listen_port = "70000": not a port (1-65535)`,
    ],
    [
      'listen_port zero',
      '[wireguard]\nlisten_port = 0',
      `${FILE}: [wireguard] listen_port = "0": not a port (1-65535)`,
    ],
    [
      'discovery',
      '[kubernetes]\ndiscovery = poll',
      `${FILE}: [kubernetes] discovery = "poll": expected one of watch, list`,
    ],
    [
      'list_interval',
      '[kubernetes]\nlist_interval = 0',
      `${FILE}: [kubernetes] list_interval = "0": expected a number of seconds (1-86400)`,
    ],
    [
      'kubeconfig relative',
      '[kubernetes]\nkubeconfig = kc.yaml',
      `${FILE}: [kubernetes] kubeconfig = "kc.yaml": expected an absolute path`,
    ],
    [
      'interface name',
      '[wireguard]\ninterface = this-name-is-too-long',
      `${FILE}: [wireguard] interface = "this-name-is-too-long": expected an interface name of 1-15 letters, digits or _=+.-`,
    ],
    [
      'endpoint',
      '[wireguard]\nendpoint = not a host',
      `${FILE}: [wireguard] endpoint = "not a host": expected internal, external, or host:port`,
    ],
    [
      'endpoint port',
      '[wireguard]\nendpoint = 192.0.2.1:99999',
      `${FILE}: [wireguard] endpoint = "192.0.2.1:99999": expected internal, external, or host:port`,
    ],
    ['mtu', '[wireguard]\nmtu = big', `${FILE}: [wireguard] mtu = "big": expected auto or an MTU (576-65535)`],
    [
      'keepalive',
      '[wireguard]\npersistent_keepalive = -1',
      `${FILE}: [wireguard] persistent_keepalive = "-1": expected a number of seconds, 0 = off (0-65535)`,
    ],
    ['apply', '[wireguard]\napply = syncconf', `${FILE}: [wireguard] apply = "syncconf": expected one of set, restart`],
    [
      'implementation',
      '[wireguard]\nimplementation = boringtun',
      `${FILE}: [wireguard] implementation = "boringtun": expected one of auto, kernel, userspace`,
    ],
    [
      'create_interface',
      '[wireguard]\ncreate_interface = maybe',
      `${FILE}: [wireguard] create_interface = "maybe": expected true or false`,
    ],
    [
      'overlay host bits',
      '[overlay]\ncidr = 100.64.0.1/10',
      `${FILE}: [overlay] cidr = "100.64.0.1/10": expected a network in CIDR form with no host bits set, e.g. 100.64.0.0/10`,
    ],
    [
      'overlay garbage',
      '[overlay]\ncidr = banana',
      `${FILE}: [overlay] cidr = "banana": expected a network in CIDR form with no host bits set, e.g. 100.64.0.0/10`,
    ],
    [
      'overlay too small',
      '[overlay]\ncidr = 100.64.0.0/32',
      `${FILE}: [overlay] cidr = "100.64.0.0/32": expected a network with room for at least two nodes`,
    ],
    ['state dir', '[state]\ndir = state', `${FILE}: [state] dir = "state": expected an absolute path`],
    [
      'log level',
      '[log]\nlevel = loud',
      `${FILE}: [log] level = "loud": expected one of debug, info, notice, warning, error`,
    ],
    [
      'malformed line',
      '[wireguard]\nlisten_port 51820',
      `${FILE}:2: malformed line "listen_port 51820": expected [section], key = value, or a # comment`,
    ],
    [
      'key outside a section',
      'listen_port = 1',
      `${FILE}:1: "listen_port" is outside any section: put it under one of ` +
        '[kubernetes], [wireguard], [overlay], [mesh], [state], [peers], [metrics], [log]',
    ],
    ['runtime_dir', '[state]\nruntime_dir = run', `${FILE}: [state] runtime_dir = "run": expected an absolute path`],
    [
      'allowed_ips_extra',
      '[peers]\nallowed_ips_extra = 10.96.0.0/12, banana',
      `${FILE}: [peers] allowed_ips_extra = "10.96.0.0/12, banana": ` +
        'expected a comma-separated list of CIDRs, e.g. 10.96.0.0/12 ("banana" is not a CIDR)',
    ],
    [
      'metrics listen host name',
      '[metrics]\nlisten = localhost:9586',
      `${FILE}: [metrics] listen = "localhost:9586": expected an IP address and port such as 127.0.0.1:9586 or [::1]:9586, or nothing to turn it off`,
    ],
    [
      'metrics listen no port',
      '[metrics]\nlisten = 127.0.0.1',
      `${FILE}: [metrics] listen = "127.0.0.1": expected an IP address and port such as 127.0.0.1:9586 or [::1]:9586, or nothing to turn it off`,
    ],
    [
      'watch_down_threshold',
      '[metrics]\nwatch_down_threshold = 0',
      `${FILE}: [metrics] watch_down_threshold = "0": expected a number of seconds (1-86400)`,
    ],
  ];
  for (const [name, text, want] of errors) {
    it(`rejects: ${name}`, () => {
      assert.deepEqual(errorsOf(text), [want]);
    });
  }

  it('reports every problem at once, not just the first', () => {
    const problems = errorsOf('[wireguard]\nlisten_port = x\napply = y\n[log]\nlevel = z\n');
    assert.equal(problems.length, 3);
  });

  it('reports unknown sections and keys and repeated keys as warnings', () => {
    const { config, warnings } = parseConfig(
      '[wireguard]\nlisten_prot = 1\nlisten_port = 1\nlisten_port = 2\n[wat]\nx = 1\n',
      FILE,
    );
    assert.equal(config.wireguard.listenPort, 2);
    assert.deepEqual(warnings, [
      `${FILE}:4: [wireguard] listen_port is set more than once; the last value wins`,
      `${FILE}: [wireguard] listen_prot: unknown key (ignored); known keys: interface, config_file, listen_port, endpoint, ` +
        'mtu, persistent_keepalive, apply, implementation, create_interface, published_endpoints, endpoint_failover, fail_closed',
      `${FILE}: unknown section [wat] (ignored); known sections: kubernetes, wireguard, overlay, mesh, state, peers, metrics, log`,
    ]);
  });

  it('loadConfig names a missing file', async () => {
    await assert.rejects(loadConfig('/nonexistent/wg-overlay.conf'), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.message, '/nonexistent/wg-overlay.conf: does not exist');
      return true;
    });
  });

  it('loadConfig names an unreadable file', async function () {
    if (process.getuid?.() === 0) {
      // root reads anything: use a directory, which cannot be read as a file
      const dir = mkdtempSync(join(tmpdir(), 'wgo-cfg-'));
      await assert.rejects(loadConfig(dir), /cannot be read \(EISDIR\)/);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'wgo-cfg-'));
    const f = join(dir, 'c.conf');
    writeFileSync(f, '');
    chmodSync(f, 0);
    await assert.rejects(loadConfig(f), /is not readable/);
  });

  it('the shipped packaging/wg-overlay.conf documents every key and its defaults parse', () => {
    const text = readFileSync(new URL('../../../../packaging/wg-overlay.conf', import.meta.url), 'utf8');
    // As shipped it is all comments: the defaults.
    const shipped = parseConfig(text, 'wg-overlay.conf');
    assert.deepEqual(shipped.warnings, []);
    // Every key is present as a commented-out default with a comment explaining it.
    const lines = text.split('\n');
    for (const [section, keys] of Object.entries(KNOWN_KEYS)) {
      assert.ok(
        lines.includes(`[${section}]`) || lines.includes(`#[${section}]`) || lines.includes(`[${section}]`),
        `section [${section}] missing`,
      );
      for (const key of keys) {
        const i = lines.findIndex((l) => new RegExp(`^#\\s?${key} =`).test(l));
        assert.ok(i > 0, `key ${key} missing from the shipped config`);
        assert.match(lines[i - 1] ?? '', /^#/, `key ${key} has no comment above it`);
      }
    }
    // Uncommenting every key line yields a valid config equal to the defaults (node_name aside).
    const uncommented = lines.map((l) => l.replace(/^#\s?([a-z_]+ = )/, '$1')).join('\n');
    const { config, warnings } = parseConfig(uncommented, 'wg-overlay.conf');
    assert.deepEqual(warnings, []);
    const d = defaultConfig();
    assert.deepEqual(
      { ...config, source: '', kubernetes: { ...config.kubernetes, nodeName: '' } },
      { ...d, source: '', kubernetes: { ...d.kubernetes, nodeName: '' } },
    );
  });
});
