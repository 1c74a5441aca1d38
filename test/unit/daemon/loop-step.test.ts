/**
 * The reconcile loop against a simulated host: first apply, incremental peer/route changes,
 * no commands on a repeat, adoption without teardown, interface restarts (systemd and direct),
 * apply = restart, route repair, foreign routes, and annotation publishing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, type Config } from '../../../service/src/config/config.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { MeshNode } from '../../../service/src/mesh/types.js';
import type { UnitController } from '../../../service/src/systemd/units.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';
import { FakeHost } from '../../support/fakes/host.js';
import { reconcileWorld, type Reconcile } from '../../support/fakes/world.js';
import type { ReconcileReport } from '../../../service/src/daemon/report.js';
import { KEYS, meshNode } from '../../support/fakes/fixtures.js';

const PRIV = generatePrivateKey();
const PUB = publicKeyFromPrivate(PRIV);

class FakeUnits implements UnitController {
  calls: string[] = [];
  /** Set: every start and restart fails with it (as a wg-quick@ whose job failed). */
  fail: Error | undefined;
  constructor(
    private readonly host: FakeHost,
    private readonly confFile: string,
  ) {}
  async restartUnit(unit: string): Promise<void> {
    this.calls.push(`restart ${unit}`);
    this.bringUp();
  }
  async startUnit(unit: string): Promise<void> {
    this.calls.push(`start ${unit}`);
    this.bringUp();
  }
  close(): void {}
  private conf = '';
  /** What wg-quick up would do with the written config: recreate the link from the file. */
  private bringUp(): void {
    if (this.fail) throw this.fail;
    const h = this.host;
    this.conf = readFileSync(this.confFile, 'utf8');
    h.link = {
      exists: true,
      up: true,
      mtu: Number(/MTU = (\d+)/.exec(this.conf)?.[1] ?? 1420),
      addresses: [/Address = (\S+)/.exec(this.conf)![1]!],
    };
    h.routes = h.routes.filter((r) => r.dev !== h.iface);
    void h.runner.run('wg', ['setconf', h.iface, '-'], { input: this.conf });
  }
}

interface World {
  host: FakeHost;
  rec: Reconcile;
  log: ReturnType<typeof memoryLogger>;
  patches: Array<[string, Record<string, string | null>]>;
  config: Config;
  units: FakeUnits | undefined;
  next(): Promise<ReconcileReport>;
}

function world(opts: { units?: boolean; config?: (c: Config) => void; host?: (h: FakeHost) => void } = {}): World {
  const dir = mkdtempSync(join(tmpdir(), 'wgo-rec-'));
  const config = defaultConfig();
  config.kubernetes.nodeName = 'a';
  config.wireguard.configFile = join(dir, 'wg0.conf');
  config.wireguard.mtu = 1420;
  opts.config?.(config);
  const host = new FakeHost();
  opts.host?.(host);
  const log = memoryLogger();
  const patches: World['patches'] = [];
  const units = opts.units ? new FakeUnits(host, config.wireguard.configFile) : undefined;
  const rec = reconcileWorld({
    host,
    log,
    identity: { name: 'a', privateKey: PRIV, publicKey: PUB },
    publisher: {
      patchAnnotations: async (n, a) => {
        patches.push([n, a]);
      },
    },
    units,
    config,
  });
  return { host, rec, log, patches, config, units, next: () => rec.next() };
}

const A = meshNode('a', {
  ip: '192.0.2.11',
  created: 1,
  pods: ['10.244.1.0/24'],
  key: PUB,
  address: '100.64.2.11',
  endpoint: '192.0.2.11:51820',
});
const B = meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] });
const C = meshNode('c', { ip: '192.0.2.13', created: 3, pods: ['10.244.3.0/24', 'fd00:10:244:3::/64'], key: KEYS[2] });

/** Changes the config as `edit` says and waits for the run it causes, which must succeed. */
async function reconfigure(w: World, edit: (c: Config) => void): Promise<void> {
  edit(w.config);
  const done = w.next();
  w.rec.setConfig(w.config);
  const r = await done;
  assert.ok(r.ok, r.error);
}

async function apply(w: World, nodes: MeshNode[], force = false): Promise<ReconcileReport> {
  const done = w.next();
  if (force) w.rec.schedule('test', true);
  else w.rec.setNodes(nodes);
  const r = await done;
  assert.ok(r.ok, r.error);
  return r;
}

describe('unit: reconcile loop', () => {
  it('first apply creates the interface, peers and routes; a repeat runs no command', async () => {
    const w = world();
    await apply(w, [A, B, C]);
    assert.equal(w.host.link.exists, true);
    assert.deepEqual(w.host.link.addresses, ['100.64.2.11/10']);
    assert.equal(w.host.listenPort, 51820);
    assert.deepEqual([...w.host.peers.keys()].sort(), [KEYS[1], KEYS[2]].sort());
    assert.deepEqual(w.host.routes.map((r) => r.dst).sort(), ['10.244.2.0/24', '10.244.3.0/24', 'fd00:10:244:3::/64']);
    assert.ok(w.host.routes.every((r) => r.protocol === '77' && r.dev === 'wg0'));
    assert.ok(w.host.runner.calls.includes('wireguard-go wg0'), 'fell back to wireguard-go');
    assert.ok(w.log.lines.some((l) => /created wg0 directly \(userspace wireguard-go, no systemd\)/.test(l)));
    const conf = readFileSync(w.config.wireguard.configFile, 'utf8');
    assert.match(conf, /^# managed by wg-overlay/);
    assert.match(conf, /Table = off/);

    const before = w.host.runner.calls.length;
    w.rec.setNodes([C, B, A]); // same input, other order: not even scheduled
    w.rec.schedule('same input again');
    await w.next();
    assert.deepEqual(w.host.runner.calls.slice(before), []);
  });

  it('publishes only differing annotations on its own Node', async () => {
    const w = world();
    const bare = meshNode('a', { ip: '192.0.2.11', created: 1, key: PUB });
    await apply(w, [bare, B]);
    assert.deepEqual(w.patches, [
      ['a', { 'wg-overlay.io/overlay-address': '100.64.2.11', 'wg-overlay.io/endpoint': '192.0.2.11:51820' }],
    ]);
    await apply(w, [A, B]);
    assert.equal(w.patches.length, 1, 'nothing more to publish');
  });

  it('a new Node adds one peer and its routes with wg set, reading nothing; a removed Node removes them', async () => {
    const w = world();
    await apply(w, [A, B]);
    let mark = w.host.runner.calls.length;
    await apply(w, [A, B, C]);
    const added = w.host.runner.calls.slice(mark).filter((c) => !/^wg show|^ip -j|^nft/.test(c));
    // The route is sent first (a line to ip is quicker than a wg to spawn); the two run together.
    assert.deepEqual(added, [
      'ip -4 route add 10.244.3.0/24 dev wg0 proto 77',
      `wg set wg0 peer ${KEYS[2]} endpoint 192.0.2.13:51820 persistent-keepalive off allowed-ips 10.244.3.0/24,100.64.2.13/32,fd00:10:244:3::/64`,
      'ip -6 route add fd00:10:244:3::/64 dev wg0 proto 77',
    ]);
    // One nft transaction: c's ranges may leave only through wg0, its endpoint is WireGuard's.
    assert.deepEqual(
      w.host.runner.calls.slice(mark).filter((c) => /^nft/.test(c)),
      [
        'nft \'add element inet wg_overlay carried4 { 10.244.3.0/24 comment "c" }\n' +
          'add element inet wg_overlay endpoints4 { 192.0.2.13 . 51820 }\n' +
          'add element inet wg_overlay carried6 { fd00:10:244:3::/64 comment "c" }\'',
      ],
    );
    mark = w.host.runner.calls.length;
    await apply(w, [A, C]);
    const removed = w.host.runner.calls.slice(mark).filter((c) => !/^wg show|^ip -j|^nft/.test(c));
    assert.deepEqual(removed, ['ip -4 route del 10.244.2.0/24 proto 77 dev wg0', `wg set wg0 peer ${KEYS[1]} remove`]);
    // b's range stays blocked (kept): the machine may still be up.
    assert.deepEqual([...w.host.nft!.sets.get('kept4')!], ['10.244.2.0/24 comment "b"']);
    assert.ok(w.log.lines.some((l) => /removed peer b \(why: b is gone or no longer valid\)/.test(l)));
  });

  it('a PodCIDR added to a Node updates allowed IPs and adds the route', async () => {
    const w = world();
    await apply(w, [A, B]);
    const mark = w.host.runner.calls.length;
    await apply(w, [A, { ...B, podCIDRs: ['10.244.2.0/24', 'fd00:10:244:2::/64'] }]);
    assert.deepEqual(
      w.host.runner.calls
        .slice(mark)
        .filter((c) => !/^wg show|^ip -j/.test(c))
        .sort(),
      [
        `wg set wg0 peer ${KEYS[1]} persistent-keepalive off allowed-ips 10.244.2.0/24,100.64.2.12/32,fd00:10:244:2::/64`,
        'ip -6 route add fd00:10:244:2::/64 dev wg0 proto 77',
        `nft 'add element inet wg_overlay carried6 { fd00:10:244:2::/64 comment "b" }'`,
      ].sort(),
    );
  });

  it('adopts an existing interface without tearing anything down', async () => {
    const w1 = world();
    await apply(w1, [A, B, C]);
    // A new daemon process on the same host: fresh reconciler, same host state.
    const w2 = world({
      config: (c) => {
        c.wireguard.configFile = w1.config.wireguard.configFile;
      },
    });
    Object.assign(w2.host, {
      link: w1.host.link,
      privateKey: w1.host.privateKey,
      listenPort: w1.host.listenPort,
      peers: w1.host.peers,
      routes: w1.host.routes,
      nft: w1.host.nft,
    });
    await apply(w2, [A, B, C]);
    assert.deepEqual(w2.host.mutations(), []);
    assert.ok(w2.host.runner.calls.includes('nft -j list table inet wg_overlay'), 'the rule set was read, and adopted');
  });

  it('re-adds a route deleted from outside on a forced resync, and leaves foreign routes alone', async () => {
    const w = world();
    await apply(w, [A, B]);
    w.host.routes = w.host.routes.filter((r) => r.dst !== '10.244.2.0/24');
    w.host.routes.push(
      { dst: '10.99.0.0/16', dev: 'eth0', protocol: 'boot' },
      { dst: '10.98.0.0/16', dev: 'wg0', protocol: 'static' },
    );
    const mark = w.host.runner.calls.length;
    await apply(w, [], true);
    assert.deepEqual(
      w.host.runner.calls.slice(mark).filter((c) => !/^wg show|^ip -j|^nft -j/.test(c)),
      ['ip -4 route replace 10.244.2.0/24 dev wg0 proto 77'],
    );
  });

  it("never overwrites someone else's route to a PodCIDR through another device", async () => {
    const w = world();
    w.host.routes.push({ dst: '10.244.2.0/24', dev: 'eth0', protocol: 'static' });
    await apply(w, [A, B]);
    assert.deepEqual(
      w.host.routes.filter((r) => r.dst === '10.244.2.0/24'),
      [{ dst: '10.244.2.0/24', dev: 'eth0', protocol: 'static' }],
    );
    assert.ok(w.log.lines.some((l) => l.startsWith('<4>') && /already routed via eth0/.test(l)));
  });

  it('a route that appeared since the last apply is not overwritten: the clash triggers a full check', async () => {
    const w = world();
    await apply(w, [A, B]);
    w.host.routes.push({ dst: '10.244.3.0/24', dev: 'eth0', protocol: 'static' });
    const done = w.next();
    w.rec.setNodes([A, B, C]);
    assert.ok((await done).ok);
    await w.next(); // the forced follow-up run with a real read of the routing table
    assert.deepEqual(
      w.host.routes.filter((r) => r.dst === '10.244.3.0/24'),
      [{ dst: '10.244.3.0/24', dev: 'eth0', protocol: 'static' }],
    );
    assert.ok(w.log.lines.some((l) => /10\.244\.3\.0\/24 of c is already routed via eth0/.test(l)));
  });

  it('an MTU change restarts wg-quick@wg0 through systemd and routes come back', async () => {
    const w = world({ units: true });
    await apply(w, [A, B]);
    assert.deepEqual(w.units!.calls, ['start wg-quick@wg0.service']);
    await reconfigure(w, (c) => {
      c.wireguard.mtu = 1380;
    });
    assert.deepEqual(w.units!.calls, ['start wg-quick@wg0.service', 'restart wg-quick@wg0.service']);
    assert.equal(w.host.link.mtu, 1380);
    assert.deepEqual(
      w.host.routes.map((r) => r.dst),
      ['10.244.2.0/24'],
    );
    assert.ok(
      w.log.lines.some((l) => /restarted wg-quick@wg0.service through systemd D-Bus \(why: MTU 1420 → 1380\)/.test(l)),
    );
  });

  it('without systemd an interface change recreates the link directly', async () => {
    const w = world();
    await apply(w, [A, B]);
    await reconfigure(w, (c) => {
      c.wireguard.listenPort = 51999;
    });
    assert.equal(w.host.listenPort, 51999);
    assert.ok(w.log.lines.some((l) => /recreated wg0 directly .* \(why: listen port 51820 → 51999\)/.test(l)));
    assert.equal(w.host.peers.size, 1);
    assert.deepEqual(
      w.host.routes.map((r) => r.dst),
      ['10.244.2.0/24'],
    );
  });

  it('apply = restart restarts the unit for a peer change instead of wg set', async () => {
    const w = world({
      units: true,
      config: (c) => {
        c.wireguard.apply = 'restart';
      },
    });
    await apply(w, [A, B]);
    const mark = w.host.runner.calls.length;
    await apply(w, [A, B, C]);
    assert.deepEqual(w.units!.calls, ['start wg-quick@wg0.service', 'restart wg-quick@wg0.service']);
    assert.ok(!w.host.runner.calls.slice(mark).some((c) => c.startsWith('wg set ')), 'no wg set in restart mode');
    assert.equal(w.host.peers.size, 2);
    assert.deepEqual(w.host.routes.map((r) => r.dst).sort(), ['10.244.2.0/24', '10.244.3.0/24', 'fd00:10:244:3::/64']);
  });

  it('create_interface = false waits for the interface instead of creating it', async () => {
    const w = world({
      config: (c) => {
        c.wireguard.createInterface = false;
      },
    });
    const r = await apply(w, [A, B]);
    // The rule set is in place while the interface is missing: b's range cannot leave in clear.
    assert.deepEqual(
      r.changes.filter((c) => !c.startsWith('wrote ')),
      ['nftables table inet wg_overlay created (6 elements, interface wg0)'],
    );
    assert.ok(w.host.nft!.sets.get('carried4')!.has('10.244.2.0/24 comment "b"'));
    assert.equal(w.host.link.exists, false);
    assert.ok(w.log.lines.some((l) => /waiting for interface wg0 to be created by someone else/.test(l)));
    assert.ok(!w.host.runner.calls.some((c) => c.startsWith('wireguard-go') || c.startsWith('ip link add')));
    await w.rec.stop();
  });

  it('refuses to overwrite a wg0.conf it did not write, and says so', async () => {
    const w = world();
    writeFileSync(w.config.wireguard.configFile, '[Interface]\nPrivateKey = x\n');
    await apply(w, [A, B]);
    assert.ok(w.log.lines.some((l) => l.startsWith('<3>') && l.includes(w.config.wireguard.configFile)));
    assert.equal(readFileSync(w.config.wireguard.configFile, 'utf8'), '[Interface]\nPrivateKey = x\n');
    assert.equal(w.host.peers.size, 1, 'the live mesh is still applied');
  });

  it('waits for its own Node and says so once', async () => {
    const w = world();
    const done = w.next();
    w.rec.setNodes([B]);
    const r = await done;
    assert.deepEqual(r.changes, []);
    assert.equal(w.log.lines.filter((l) => /Node a does not exist yet/.test(l)).length, 1);
  });

  it('never logs the private key', async () => {
    const w = world({ units: true });
    await apply(w, [A, B, C]);
    assert.ok(w.log.lines.length > 3);
    assert.ok(w.log.lines.every((l) => !l.includes(PRIV)));
  });
});

describe('unit: which WireGuard implementation backs the interface, and none at all', () => {
  const FALLBACK = new RegExp(
    [
      '^<5>wg0 runs on userspace wireguard-go: kernel WireGuard is not available ',
      '\\(ip link add … type wireguard: Error: Unknown device type\\); throughput is lower than in the kernel$',
    ].join(''),
  );
  const NONE = new RegExp(
    [
      'no WireGuard on this node: the kernel cannot create WireGuard links \\(ip link add … type wireguard: ',
      'Error: Unknown device type; the wireguard module is missing, blacklisted or refused\\) and wireguard-go is not ',
      'installed\\. Install wireguard-go \\(Debian, Ubuntu: apt install wireguard-go; Fedora: dnf install wireguard-go\\)',
    ].join(''),
  );

  it('auto without systemd: kernel WireGuard when the kernel has it, said once in one line', async () => {
    const w = world({
      host: (h) => {
        h.kernelWireGuard = true;
      },
    });
    await apply(w, [A, B]);
    assert.ok(w.host.runner.calls.includes('ip link add dev wg0 type wireguard'));
    assert.ok(!w.host.runner.calls.some((c) => c.startsWith('wireguard-go')));
    await reconfigure(w, (c) => {
      c.wireguard.listenPort = 51999;
    });
    assert.deepEqual(
      w.log.lines.filter((l) => /runs on/.test(l)),
      ['<6>wg0 runs on kernel WireGuard'],
      'one line, not one per recreate',
    );
  });

  it('auto without systemd and without kernel WireGuard: wireguard-go, with one notice that says why', async () => {
    const w = world();
    await apply(w, [A, B]);
    await reconfigure(w, (c) => {
      c.wireguard.listenPort = 51999;
    });
    const lines = w.log.lines.filter((l) => /runs on|WireGuard is not available/.test(l));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, FALLBACK);
  });

  it('neither kernel WireGuard nor wireguard-go (no systemd): says what to install, once, retries, comes up with wireguard-go', async () => {
    const w = world({
      host: (h) => {
        h.wireguardGoInstalled = false;
      },
    });
    let r = await (async () => {
      const d = w.next();
      w.rec.setNodes([A, B]);
      return d;
    })();
    assert.equal(r.ok, false);
    assert.equal(r.errorStep, 'interface');
    assert.match(r.error!, NONE);
    r = await w.next(); // the retry after the backoff: the same error
    assert.equal(r.ok, false);
    const errors = w.log.lines.filter((l) => l.startsWith('<3>'));
    assert.equal(errors.length, 1, `one error line for repeated failures:\n${errors.join('\n')}`);
    assert.match(
      errors[0]!,
      /^<3>apply failed: no WireGuard on this node: .*; retrying with backoff, nothing was torn down$/,
    );
    w.host.wireguardGoInstalled = true;
    r = await w.next();
    assert.ok(r.ok, r.error);
    assert.equal(w.host.link.kind, 'tun');
    assert.ok(w.log.lines.some((l) => FALLBACK.test(l)));
    await w.rec.stop();
  });

  it('implementation = userspace without wireguard-go: says to install it', async () => {
    const w = world({
      config: (c) => {
        c.wireguard.implementation = 'userspace';
      },
      host: (h) => {
        h.wireguardGoInstalled = false;
        h.kernelWireGuard = true;
      },
    });
    const done = w.next();
    w.rec.setNodes([A, B]);
    const r = await done;
    assert.match(
      r.error!,
      /creating wg0 with wireguard-go \(implementation = userspace\): wireguard-go is not installed; install it \(Debian/,
    );
    await w.rec.stop();
  });

  it("under systemd, wg-quick@ that fell back to wireguard-go: one notice with the kernel's reason, asked on a throwaway link", async () => {
    const w = world({ units: true });
    await apply(w, [A, B]);
    const lines = w.log.lines.filter((l) => /runs on/.test(l));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, FALLBACK);
    assert.ok(w.host.runner.calls.includes('ip link add dev wgoverlay-probe type wireguard'));
    assert.equal(w.host.link.exists, true, 'the probe left the interface alone');
  });

  it('under systemd with kernel WireGuard: one info line, no probe', async () => {
    const w = world({
      units: true,
      host: (h) => {
        h.kernelWireGuard = true;
      },
    });
    await apply(w, [A, B]);
    assert.deepEqual(
      w.log.lines.filter((l) => /runs on/.test(l)),
      ['<6>wg0 runs on kernel WireGuard'],
    );
    assert.ok(!w.host.runner.calls.some((c) => c.includes('wgoverlay-probe')));
  });

  it("under systemd, a failed wg-quick@ without any WireGuard says what to install; with wireguard-go it stays the unit's own", async () => {
    const w = world({
      units: true,
      host: (h) => {
        h.wireguardGoInstalled = false;
      },
    });
    w.units!.fail = new Error(
      'StartUnit wg-quick@wg0.service: job ended with result "failed" (see journalctl -u wg-quick@wg0.service)',
    );
    let done = w.next();
    w.rec.setNodes([A, B]);
    let r = await done;
    assert.equal(r.errorStep, 'interface');
    assert.match(r.error!, NONE);
    assert.match(
      r.error!,
      /modprobe wireguard\); wg-quick@wg0\.service cannot start \(journalctl -u wg-quick@wg0\.service\)$/,
    );
    // systemd's start limit on the next attempt words the failure differently: the error stays the same.
    w.units!.fail = new Error('StartUnit wg-quick@wg0.service: refused: Start request repeated too quickly');
    const again = await w.next();
    assert.equal(again.error, r.error);
    assert.equal(w.log.lines.filter((l) => l.startsWith('<3>')).length, 1);
    w.host.wireguardGoInstalled = true;
    w.units!.fail = new Error(
      'StartUnit wg-quick@wg0.service: job ended with result "failed" (see journalctl -u wg-quick@wg0.service)',
    );
    done = w.next();
    r = await done;
    assert.equal(
      r.error,
      'StartUnit wg-quick@wg0.service: job ended with result "failed" (see journalctl -u wg-quick@wg0.service)',
    );
    await w.rec.stop();
  });

  it('adopting an existing interface reads what backs it and probes nothing', async () => {
    const w1 = world({ units: true });
    await apply(w1, [A, B]);
    const w2 = world({
      units: true,
      config: (c) => {
        c.wireguard.configFile = w1.config.wireguard.configFile;
      },
    });
    Object.assign(w2.host, {
      link: w1.host.link,
      privateKey: w1.host.privateKey,
      listenPort: w1.host.listenPort,
      peers: w1.host.peers,
      routes: w1.host.routes,
    });
    await apply(w2, [A, B]);
    assert.deepEqual(
      w2.log.lines.filter((l) => /runs on/.test(l)),
      ['<6>wg0 runs on userspace wireguard-go'],
    );
    assert.deepEqual(w2.units!.calls, []);
    assert.ok(!w2.host.runner.calls.some((c) => c.includes('wgoverlay-probe')));
  });
});
