/**
 * The kernel tier: WireGuard in the kernel, proven in a qemu VM (software emulation) that boots
 * Debian 12's own cloud kernel with the .deb installed by apt. Node A is the VM itself, where
 * systemd runs the packaged wg-overlay.service and wg-quick@wg0; nodes B, C (and D, which joins
 * and leaves) are network namespaces in the VM whose daemons create their links themselves. The
 * Kubernetes API test server runs in this process, on the underlay the VM is plugged into.
 * Then WireGuard is taken away (module blacklisted and refused, no wireguard-go) and given back
 * as wireguard-go, and the start time and throughput of both implementations are measured.
 * The VM boots once for the whole tier; its console log is kept, and its path printed, on failure.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  ANNOTATION_OVERLAY_ADDRESS,
  ANNOTATION_OVERLAY_ADDRESS6,
  ANNOTATION_PUBLIC_KEY,
} from '../../service/src/mesh/annotations.js';
import { KILO_PEER_RESOURCE, KubeApiServer } from '../kube-api/server.js';
import { waitFor as waitForBase } from '../support/cluster/cluster.js';
import { GuestNode, pingCounts, type GuestLink } from '../support/machines/guest-mesh.js';
import { KernelVm, kernelVmImage, VmUnreachableError, type KernelVmImage } from '../support/machines/kernel-vm.js';
import { buildPackages, debDependencies, debianRoot, type BuiltPackages } from '../support/machines/nspawn.js';
import { Capture } from '../support/namespaces/capture.js';
import { TestNode } from '../support/namespaces/netns.js';
import { requireTools } from '../support/process.js';
import { Underlay } from '../support/namespaces/underlay.js';

const TOKEN = 'wg-overlay-kernel-token';
/** The underlay's MTU: not 1500, so that `mtu = auto` visibly derives wg0's from it. */
const UNDERLAY_MTU = 1400;
const PREFIX = 24;
/** How long one throughput run lasts (s). */
const IPERF_SECONDS = 5;

/**
 * `waitFor` (which retries whatever its check throws) that gives up at once when the VM is
 * unreachable: every later call would fail the same way, and the error names the step that found it.
 */
async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs?: number,
  everyMs?: number,
): Promise<T> {
  let unreachable: unknown;
  const v = await waitForBase<T | true>(
    what,
    async () => {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof VmUnreachableError)) throw err;
        unreachable = err;
        return true;
      }
    },
    timeoutMs,
    everyMs,
  );
  if (unreachable) throw unreachable;
  return v as T;
}

/** What the tier measures, printed at the end (and in the README). */
interface Figures {
  readyMs: { kernel: number[]; userspace: number[] };
  mbitPerS: { kernel?: number; userspace?: number; underlay?: number };
}

describe("kernel: WireGuard in Debian 12's own kernel, in a qemu VM (software emulation)", function () {
  this.timeout(10 * 60_000);

  let work: string;
  let pkg: BuiltPackages;
  let image: KernelVmImage;
  let net: Underlay;
  let api: KubeApiServer;
  let vm: KernelVm;
  let a: GuestNode;
  let b: GuestNode;
  let c: GuestNode;
  let failed = false;
  /** Set once apt has installed the .deb in the VM: every test after that one needs it. */
  let installed = false;
  const needsPackage = (): void => {
    if (installed) return;
    throw new Error(
      'not run: the .deb is not installed in the VM (the test that installs it failed: see its error above)',
    );
  };
  let vmTap: string;
  const figures: Figures = { readyMs: { kernel: [], userspace: [] }, mbitPerS: {} };

  const annotation = (name: string, key: string): string => {
    const v = ((api.getNode(name)?.metadata?.annotations ?? {}) as Record<string, string>)[key];
    assert.ok(v, `Node ${name} has no ${key} annotation`);
    return v;
  };
  const overlay = (n: GuestNode): string => annotation(n.name, ANNOTATION_OVERLAY_ADDRESS);
  const publicKey = (n: GuestNode): string => annotation(n.name, ANNOTATION_PUBLIC_KEY);

  /** Creates the Node object of a guest node, as its kubelet would. */
  const registerNode = (n: GuestNode): void => {
    api.createNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name } },
      spec: { podCIDR: n.spec.podCidr, podCIDRs: [n.spec.podCidr] },
      status: {
        addresses: [
          { type: 'InternalIP', address: n.spec.address },
          { type: 'Hostname', address: n.name },
        ],
      },
    });
  };

  /** A namespace node on the VM's bridge: its Node object registered, its daemon not started. */
  const namespaceNode = async (name: string, index: number): Promise<GuestNode> => {
    const n = await GuestNode.create(vm, {
      name,
      ownNamespace: true,
      address: net.allocateAddress(),
      prefixLength: PREFIX,
      podCidr: `10.244.${index}.0/24`,
      iface: `wg${name.slice(-1)}`,
      mtu: UNDERLAY_MTU,
    });
    registerNode(n);
    return n;
  };

  /** Whether `n` has exactly `others` as peers, with their PodCIDRs routed through its link. */
  const meshedWith = async (n: GuestNode, others: GuestNode[]): Promise<boolean> => {
    const keys = others.map(
      (o) => ((api.getNode(o.name)?.metadata?.annotations ?? {}) as Record<string, string>)[ANNOTATION_PUBLIC_KEY],
    );
    const [dev, routes] = await Promise.all([n.device(), n.routes()]);
    if (!dev) return false;
    if (keys.some((k) => !k) || dev.peers.length !== others.length) return false;
    for (const [i, o] of others.entries()) {
      const peer = dev.peers.find((p) => p.publicKey === keys[i]);
      if (!peer?.allowedIPs.includes(o.spec.podCidr)) return false;
      if (!routes.some((r) => r.dst === o.spec.podCidr && r.dev === n.spec.iface)) return false;
    }
    return true;
  };

  /**
   * Waits until each of `nodes` has exactly the others as peers, with their PodCIDRs routed through
   * its link (the nodes are looked at in parallel: a round takes one slow guest's round trip, not one per node).
   */
  const waitForMesh = async (nodes: GuestNode[], timeoutMs = 180_000): Promise<void> => {
    await waitFor(
      `a full mesh of ${nodes.map((n) => n.name).join(', ')}`,
      async () => {
        const ok = await Promise.all(
          nodes.map((n) =>
            meshedWith(
              n,
              nodes.filter((o) => o !== n),
            ),
          ),
        );
        return ok.every(Boolean);
      },
      timeoutMs,
      500,
    );
  };

  /**
   * A namespace node whose daemon runs and has joined and left once: its Node object is deleted
   * again (its daemon waits for it, its link stays). Under emulation a daemon's first apply is slow
   * (a JIT-less Node.js running every code path for the first time, each command a slow process
   * start): this keeps it out of a test that times a join against a fixed run of pings.
   */
  const warmNode = async (name: string, index: number): Promise<GuestNode> => {
    const t0 = Date.now();
    const n = await namespaceNode(name, index);
    await n.startDaemon('/etc/wgk/kubeconfig');
    await waitForMesh([a, b, c, n]);
    const t1 = Date.now();
    api.deleteNode(n.name);
    await waitForMesh([a, b, c]);
    const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
    console.log(
      `      (${n.name} joined once in ${s(t1 - t0)} and left in ${s(Date.now() - t1)}, to warm its daemon up)`,
    );
    return n;
  };

  /** The link of each node, by name (to compare interface indexes before and after). */
  const links = async (nodes: GuestNode[]): Promise<Record<string, GuestLink | undefined>> =>
    Object.fromEntries(await Promise.all(nodes.map(async (n) => [n.name, await n.link()] as const)));

  /** The daemon's own lines (identifier wg-overlay) of a unit. */
  const daemonLog = async (unit: string, cursor?: string): Promise<string[]> => {
    const entries = cursor ? await vm.entriesAfter(cursor, unit) : await vm.journal(['-u', unit]);
    return entries.filter((e) => e.SYSLOG_IDENTIFIER === 'wg-overlay').map((e) => e.MESSAGE);
  };

  /** `systemctl start wg-overlay` on node A from a stopped daemon and no wg0, timed inside the VM (ms). */
  const timedStart = async (): Promise<number> => {
    await vm.exec('systemctl', ['stop', 'wg-overlay', 'wg-quick@wg0']);
    // This tier starts the unit more often than its start limit (5 in 10 minutes) allows.
    await vm.exec('systemctl', ['reset-failed', 'wg-overlay']);
    assert.equal(await a.link(), undefined, 'wg0 is gone after wg-quick@wg0 stopped');
    const r = await vm.sh(
      't0=$(date +%s%N); systemctl start wg-overlay; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 ))',
      { timeoutMs: 6 * 60_000 },
    );
    assert.equal((await vm.show('wg-overlay', ['ActiveState'])).ActiveState, 'active');
    return Number(r.stdout.trim());
  };

  /** Runs iperf3 for IPERF_SECONDS from `client` to a one-off server `serverExec` started at `target`; Mbit/s received. */
  const iperf = async (
    client: (cmd: string, args: string[]) => Promise<{ stdout: string }>,
    serverExec: (cmd: string, args: string[]) => Promise<unknown>,
    target: string,
  ): Promise<number> => {
    await serverExec('iperf3', ['-s', '-1', '-D']);
    const r = await client('iperf3', ['-c', target, '-t', String(IPERF_SECONDS), '-J']);
    const result = JSON.parse(r.stdout) as { end?: { sum_received?: { bytes: number; bits_per_second: number } } };
    const got = result.end?.sum_received;
    assert.ok(got && got.bytes > 0, `iperf3 to ${target} moved no data:\n${r.stdout.slice(0, 2000)}`);
    return got.bits_per_second / 1e6;
  };

  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

  before(async function () {
    // Building the image on a fresh machine takes minutes, and so may boot on a loaded one (BOOT_TIMEOUT_MS).
    this.timeout(20 * 60_000);
    const t0 = Date.now();
    await requireTools(['qemu-system-x86_64', 'setpriv', 'debootstrap', 'systemd-nspawn', 'mkfs.ext4', 'dpkg-deb']);
    work = await mkdtemp(join(tmpdir(), 'wgk-'));
    pkg = await buildPackages(join(work, 'pk'));
    const deps = await debDependencies(pkg.deb);
    // The system tier's root (same prefetch: one cache for both); wireguard-go stays uninstalled.
    const root = await debianRoot({ prefetch: [...deps, 'wireguard-go'] });
    image = await kernelVmImage(root, { install: deps, prefetch: ['wireguard-go'] });
    const t1 = Date.now();
    net = await Underlay.create({ hostAddress: true, mtu: UNDERLAY_MTU });
    api = new KubeApiServer({ host: net.hostAddress!, token: TOKEN });
    api.registerResource(KILO_PEER_RESOURCE);
    await api.start();
    const tap = await net.attachTap();
    const address = net.allocateAddress();
    vm = await KernelVm.boot({
      image,
      name: 'wgk-a',
      tap,
      address: `${address}/${PREFIX}`,
      mtu: UNDERLAY_MTU,
      allowReboot: true,
    });
    vmTap = tap;
    a = await GuestNode.create(vm, {
      name: 'wgk-a',
      ownNamespace: false,
      address,
      prefixLength: PREFIX,
      podCidr: '10.244.1.0/24',
      iface: 'wg0',
      mtu: UNDERLAY_MTU,
    });
    registerNode(a);
    b = await namespaceNode('wgk-b', 2);
    c = await namespaceNode('wgk-c', 3);
    await vm.writeFile('/etc/wgk/kubeconfig', JSON.stringify(api.kubeconfig({ user: 'wg-overlay' })), 0o600);
    const guest = vm.bootHealth;
    console.log(
      `      (package, Debian root and VM image (linux-image-${image.kernelRelease} ${image.kernelVersion}) ` +
        `ready in ${Math.round((t1 - t0) / 1000)} s; VM booted to its agent in ${Math.round(vm.bootSeconds)} s` +
        `${guest ? ` (guest uptime ${Math.round(guest.uptimeS)} s, load ${guest.load[0]?.toFixed(1)})` : ''}; console: ${vm.consoleLog})`,
    );
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });

  after(async function () {
    failed ||= !vm || !c;
    if (failed && vm) {
      // wgk-agent: the commands that took over 10 s, and the requests the host had to repeat.
      const units = ['wg-overlay', 'wg-quick@wg0', b?.unit, c?.unit, 'wgk-agent']
        .filter(Boolean)
        .map((u) => `-u ${u!}`)
        .join(' ');
      const log = await vm
        .sh(`journalctl --no-pager -o short-monotonic ${units} | tail -n 150`, { allowFailure: true })
        .catch((e: unknown) => ({ stdout: String(e) }));
      const lost = vm.unreachableSince;
      console.log(
        `      kernel tier failed; the VM's console log is kept: ${vm.consoleLog}\n` +
          (lost ? `      the VM became unreachable during: ${lost}\n` : '') +
          `      journal of the mesh units (last 150 lines):\n${log.stdout}`,
      );
      console.log(`      the VM's console (kernel and systemd), last 80 lines:\n${await vm.consoleTail(80)}`);
    }
    await vm?.stop({ keepConsole: failed });
    await api?.stop();
    await net?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
    const k = figures.readyMs.kernel;
    const u = figures.readyMs.userspace;
    if (k.length > 0 || figures.mbitPerS.kernel !== undefined) {
      const fmt = (v: number | undefined): string => (v === undefined ? 'not measured' : `${v.toFixed(0)} Mbit/s`);
      const ratio = (x: number | undefined, y: number | undefined): string =>
        x === undefined || y === undefined || y === 0 ? 'not measured' : `${(x / y).toFixed(2)}×`;
      const runs = (xs: number[]): string => (xs.length ? `${median(xs)} ms (runs ${xs.join(', ')})` : 'not measured');
      const mbit = figures.mbitPerS;
      const readyRatio = ratio(k.length ? median(k) : undefined, u.length ? median(u) : undefined);
      console.log(
        [
          `      figures (qemu TCG software emulation, 2 vCPUs on this machine: only the ratios mean anything)`,
          `        systemctl start wg-overlay → READY: kernel ${runs(k)}; wireguard-go ${runs(u)}`,
          `        pod → pod, iperf3 ${IPERF_SECONDS} s: kernel WireGuard ${fmt(mbit.kernel)}; ` +
            `wireguard-go ${fmt(mbit.userspace)}; underlay without WireGuard ${fmt(mbit.underlay)}`,
          `        ratios kernel / wireguard-go: start → READY ${readyRatio}; throughput ${ratio(mbit.kernel, mbit.userspace)}`,
        ].join('\n'),
      );
    }
  });

  it("boots Debian 12's cloud kernel, and its wireguard module loads when a WireGuard link is created", async () => {
    assert.equal((await vm.exec('uname', ['-r'])).stdout.trim(), image.kernelRelease);
    assert.match(image.kernelRelease, /-cloud-amd64$/);
    const file = (await vm.exec('modinfo', ['-F', 'filename', 'wireguard'])).stdout.trim();
    assert.equal(file, `/lib/modules/${image.kernelRelease}/kernel/drivers/net/wireguard/wireguard.ko`);
    assert.equal(
      (await vm.exec('test', ['-e', '/sys/module/wireguard'], { allowFailure: true })).exitCode,
      1,
      'not loaded before anything asked for it',
    );
    // What wg-quick and the daemon do: the kernel loads the module on demand.
    await vm.exec('ip', ['link', 'add', 'wgprobe', 'type', 'wireguard']);
    const kind = JSON.parse((await vm.exec('ip', ['-d', '-j', 'link', 'show', 'wgprobe'])).stdout) as Array<{
      linkinfo?: { info_kind?: string };
    }>;
    await vm.exec('ip', ['link', 'del', 'wgprobe']);
    assert.equal(kind[0]?.linkinfo?.info_kind, 'wireguard');
    assert.equal((await vm.readFile('/sys/module/wireguard/initstate')).trim(), 'live');
    assert.match((await vm.exec('dmesg')).stdout, /wireguard: WireGuard 1\.0\.0 loaded/);
  });

  it(
    'installs the .deb with apt inside the VM (dependencies from the image, no network); ' +
      'without a kubeconfig the service stops with 78',
    async () => {
      await vm.writeFile(`/var/tmp/${basename(pkg.deb)}`, await readFile(pkg.deb));
      const r = await vm.exec(
        'apt-get',
        ['install', '-y', '--no-install-recommends', `/var/tmp/${basename(pkg.deb)}`],
        {
          env: { DEBIAN_FRONTEND: 'noninteractive' },
          timeoutMs: 5 * 60_000,
        },
      );
      installed = true;
      assert.match(r.stdout, /Setting up wg-overlay \(/);
      await vm.waitForUnit(
        'wg-overlay',
        ['ActiveState', 'ExecMainStatus'],
        (p) => p.ActiveState === 'failed' && p.ExecMainStatus === '78',
        180_000,
      );
      assert.notEqual(
        (await vm.exec('sh', ['-c', 'command -v wireguard-go'], { allowFailure: true })).exitCode,
        0,
        'wireguard-go is not installed',
      );
      assert.match(
        (await vm.exec('ls', ['/var/cache/apt/archives'])).stdout,
        /^wireguard-go_.*\.deb$/m,
        "but its .deb is in apt's cache",
      );
    },
  );

  it('node A (systemd): implementation = auto ends up on kernel WireGuard — wg-quick@wg0 creates a kernel link, no wireguard-go runs', async () => {
    needsPackage();
    await vm.writeFile('/var/tmp/ca.crt', api.caPem!);
    await vm.writeFile('/var/tmp/token', TOKEN, 0o600);
    await vm.exec('wg-overlay', [
      'kubeconfig',
      '--server',
      api.url!,
      '--ca',
      '/var/tmp/ca.crt',
      '--token-file',
      '/var/tmp/token',
    ]);
    assert.match(
      await vm.readFile('/etc/wg-overlay/wg-overlay.conf'),
      /^# implementation = auto$/m,
      'the shipped config leaves implementation at auto',
    );
    await vm.exec('systemctl', ['enable', '--now', 'wg-overlay'], { timeoutMs: 5 * 60_000 });
    assert.equal((await vm.show('wg-overlay', ['ActiveState'])).ActiveState, 'active');
    const link = await a.link();
    assert.equal(link?.kind, 'wireguard', `wg0: ${JSON.stringify(link)}`);
    assert.equal(
      (await vm.exec('pgrep', ['-x', 'wireguard-go'], { allowFailure: true })).exitCode,
      1,
      'no wireguard-go process',
    );
    const quick = (await vm.journal(['-u', 'wg-quick@wg0'])).map((e) => e.MESSAGE);
    assert.ok(
      quick.some((m) => /^\[#\] ip link add wg0 type wireguard$/.test(m)),
      quick.join('\n'),
    );
    assert.ok(!quick.some((m) => /userspace|wireguard-go/i.test(m)), quick.join('\n'));
    const log = await daemonLog('wg-overlay');
    assert.ok(
      log.some((m) => /^wg0 runs on kernel WireGuard/.test(m)),
      log.join('\n'),
    );
  });

  it(
    'nodes B and C (namespaces, no systemd): implementation = auto creates their links ' +
      'with `ip link add … type wireguard` in the kernel',
    async () => {
      needsPackage();
      await b.startDaemon('/etc/wgk/kubeconfig');
      await c.startDaemon('/etc/wgk/kubeconfig');
      for (const n of [b, c]) {
        const link = await waitFor(`${n.name}'s link`, () => n.link(), 180_000, 250);
        assert.equal(link.kind, 'wireguard', `${n.name}: ${JSON.stringify(link)}`);
        const log = await waitFor(
          `${n.name}'s daemon to say how it created its link`,
          async () => {
            const l = await daemonLog(n.unit);
            return l.some((m) => /^created wg[bc] directly \(kernel WireGuard, no systemd\)/.test(m)) && l;
          },
          180_000,
          500,
        );
        assert.ok(
          log.some((m) => new RegExp(`^exec: ip link add dev ${n.spec.iface} type wireguard$`).test(m)),
          log.join('\n'),
        );
        assert.ok(!log.some((m) => /wireguard-go/.test(m)), log.join('\n'));
      }
    },
  );

  it('forms a full mesh over kernel WireGuard: each node has the two others as peers, routes to their PodCIDRs through its link', async () => {
    needsPackage();
    await waitForMesh([a, b, c]);
    for (const n of [a, b, c]) {
      const dev = (await n.device())!;
      for (const o of [a, b, c].filter((x) => x !== n)) {
        const peer = dev.peers.find((p) => p.publicKey === publicKey(o))!;
        const six = ((api.getNode(o.name)?.metadata?.annotations ?? {}) as Record<string, string>)[
          ANNOTATION_OVERLAY_ADDRESS6
        ];
        assert.deepEqual(
          [...peer.allowedIPs].sort(),
          [o.spec.podCidr, `${overlay(o)}/32`, ...(six ? [`${six}/128`] : [])].sort(),
          `${n.name}'s peer ${o.name}`,
        );
        assert.equal(peer.endpoint, `${o.spec.address}:51820`);
      }
    }
  });

  it("fail closed on a real kernel with kernel WireGuard: A's table lets B's and C's ranges leave only through wg0", async () => {
    const t = (await vm.exec('nft', ['list', 'table', 'inet', 'wg_overlay'])).stdout;
    for (const n of [b, c])
      assert.match(
        t,
        new RegExp(`${n.spec.podCidr.replace(/\./g, '\\.')} counter packets \\d+ bytes \\d+ comment "${n.name}"`),
      );
    assert.match(t, /oifname \{ "lo", "wg0" \} return/);
    assert.match(t, /type filter hook forward priority filter; policy accept;/);
    assert.equal(
      (await vm.exec('stat', ['-c', '%a %U', '/var/lib/wg-overlay/fail-closed.nft'])).stdout.trim(),
      '600 wg-overlay',
    );
  });

  it('pods ping each other through the kernel tunnels, every pair, with handshakes on every link', async () => {
    needsPackage();
    for (const n of [a, b, c]) {
      for (const o of [a, b, c].filter((x) => x !== n)) {
        const r = await n.podExec('ping', ['-c', '3', '-i', '0.2', '-W', '3', o.podIp], {
          allowFailure: true,
          timeoutMs: 30_000,
        });
        assert.match(r.stdout, /3 received/, `${n.name}'s pod → ${o.name}'s pod (${o.podIp}):\n${r.stdout}${r.stderr}`);
      }
      const hs = (await n.device())!.peers.map((p) => p.latestHandshake);
      assert.ok(
        hs.every((t) => t > 0),
        `${n.name}: handshakes ${hs.join(', ')}`,
      );
    }
  });

  it('MTU on a kernel link: mtu = auto gives the underlay MTU minus 80, and packets of exactly that size cross unfragmented', async () => {
    needsPackage();
    const want = UNDERLAY_MTU - 80;
    for (const n of [a, b, c]) assert.equal((await n.link())!.mtu, want, `${n.name}'s ${n.spec.iface}`);
    const fits = await b.exec(
      'ping',
      ['-M', 'do', '-s', String(want - 28), '-c', '3', '-i', '0.2', '-W', '3', overlay(c)],
      { allowFailure: true, timeoutMs: 30_000 },
    );
    assert.match(fits.stdout, /3 received/, `${want}-byte packets B → C:\n${fits.stdout}${fits.stderr}`);
    const over = await b.exec('ping', ['-M', 'do', '-s', String(want - 27), '-c', '1', '-W', '3', overlay(c)], {
      allowFailure: true,
      timeoutMs: 30_000,
    });
    assert.match(
      over.stdout + over.stderr,
      new RegExp(`message too long, mtu=${want}`),
      `${want + 1}-byte packets must not fit:\n${over.stdout}${over.stderr}`,
    );
  });

  it('peers change live with `wg set`: a node joins and leaves while pods ping at 20/s — no packet lost, no link recreated', async () => {
    needsPackage();
    const before = await links([a, b, c]);
    const d = await warmNode('wgk-d', 4);
    const cursor = await vm.cursor();
    // 30 s of pings, B's pod → C's pod and C's pod → A's pod, across the join and the leave.
    const pingsStarted = Date.now();
    const pings = [
      b.podExec('ping', ['-c', '600', '-i', '0.05', '-W', '2', c.podIp], { allowFailure: true, timeoutMs: 90_000 }),
      c.podExec('ping', ['-c', '600', '-i', '0.05', '-W', '2', a.podIp], { allowFailure: true, timeoutMs: 90_000 }),
    ];
    const pingsDone = Promise.all(pings).then(() => Date.now());
    registerNode(d);
    await waitForMesh([a, b, c, d]);
    const joined = Date.now();
    const dKey = publicKey(d);
    const r = await d.podExec('ping', ['-c', '2', '-i', '0.2', '-W', '3', a.podIp], {
      allowFailure: true,
      timeoutMs: 30_000,
    });
    assert.match(r.stdout, /2 received/, `D's pod → A's pod:\n${r.stdout}${r.stderr}`);
    await d.stopDaemon();
    const stopped = Date.now();
    api.deleteNode(d.name);
    await waitForMesh([a, b, c]);
    const changesDone = Date.now();
    const results = await Promise.all(pings);
    const at = (t: number): string => `${((t - pingsStarted) / 1000).toFixed(1)} s`;
    console.log(
      `      (pings started; D joined at ${at(joined)}, its daemon stopped at ${at(stopped)}, ` +
        `it was gone from the mesh at ${at(changesDone)}; the pings ended at ${at(await pingsDone)})`,
    );
    assert.ok((await pingsDone) > changesDone, 'the pings lasted until the peers had changed back');
    for (const [i, res] of results.entries()) {
      const { sent, received } = pingCounts(res.stdout);
      assert.equal(sent, 600);
      assert.equal(
        received,
        600,
        `flow ${i}: ${sent - received} of ${sent} pings lost:\n${res.stdout.split('\n').slice(-4).join('\n')}`,
      );
    }
    assert.deepEqual(await links([a, b, c]), before, 'no link was recreated (same interface indexes)');
    const log = await daemonLog('wg-overlay', cursor);
    assert.ok(
      log.some((m) => /^added peer wgk-d /.test(m)),
      log.join('\n'),
    );
    assert.ok(
      log.some((m) => /^removed peer wgk-d /.test(m)),
      log.join('\n'),
    );
    assert.ok(!log.some((m) => /restarted wg-quick/.test(m)), log.join('\n'));
    // B logs its commands (debug): D came and went as one `wg set` each on the live wgb, nothing recreated.
    const bLog = await daemonLog(b.unit, cursor);
    const wgSet = bLog.filter((m) => m.startsWith(`exec: wg set wgb peer ${dKey} `));
    assert.ok(
      wgSet.some((m) => / allowed-ips /.test(m)),
      `B added D with wg set:\n${bLog.join('\n')}`,
    );
    assert.ok(
      wgSet.some((m) => m === `exec: wg set wgb peer ${dKey} remove`),
      `B removed D with wg set:\n${bLog.join('\n')}`,
    );
    assert.ok(
      !bLog.some((m) => /^exec: ip link (add|del)|created wgb|wg-quick|syncconf|setconf/.test(m)),
      `B touched its link beyond wg set:\n${bLog.join('\n')}`,
    );
    await vm.sh(`ip link del v-wgk-d; ip netns del wgk-d; ip netns del wgk-d-pod; ip link del wgd 2>/dev/null; true`);
  });

  it('a daemon restart keeps the mesh up: `systemctl restart wg-overlay` on A loses no ping and keeps wg0', async () => {
    needsPackage();
    const before = await a.link();
    const pid = (await vm.show('wg-overlay', ['MainPID'])).MainPID;
    // 60 s of pings: longer than the restart (stop, then start to READY: 14–28 s in this VM).
    const ping = b.podExec('ping', ['-c', '1200', '-i', '0.05', '-W', '2', a.podIp], {
      allowFailure: true,
      timeoutMs: 180_000,
    });
    let pingEnded = Infinity;
    void ping.then(() => (pingEnded = Date.now()));
    await vm.exec('systemctl', ['restart', 'wg-overlay'], { timeoutMs: 120_000 });
    const restarted = Date.now();
    const res = await ping;
    const { sent, received } = pingCounts(res.stdout);
    assert.notEqual((await vm.show('wg-overlay', ['MainPID'])).MainPID, pid, 'the daemon was restarted');
    assert.equal(
      received,
      sent,
      `${sent - received} of ${sent} pings lost across the restart:\n${res.stdout.split('\n').slice(-4).join('\n')}`,
    );
    assert.ok(
      restarted < pingEnded,
      `the pings ended ${((restarted - pingEnded) / 1000).toFixed(1)} s before the restart finished`,
    );
    assert.deepEqual(await a.link(), before, 'wg0 was kept');
    await waitForMesh([a, b, c]);
  });

  it(
    'apply = restart: a peer change restarts wg-quick@wg0 through the real systemd D-Bus API, ' +
      'and the kernel link comes back with peers and routes',
    async () => {
      needsPackage();
      const before = (await a.link())!;
      await vm.sh(
        "sed -i 's/^# apply = set$/apply = restart/' /etc/wg-overlay/wg-overlay.conf && grep -q '^apply = restart$' /etc/wg-overlay/wg-overlay.conf",
      );
      await vm.exec('systemctl', ['reload', 'wg-overlay']);
      const cursor = await vm.cursor();
      // A second PodCIDR for C: one peer change on A.
      const extra = '10.244.13.0/24';
      api.patchNode(c.name, { spec: { podCIDRs: [c.spec.podCidr, extra] } });
      const restart = await vm.waitForEntry(
        cursor,
        'wg-overlay',
        (e) =>
          /^restarted wg-quick@wg0\.service through systemd D-Bus \(why: apply = restart and 1 peer change/.test(
            e.MESSAGE,
          ),
        180_000,
      );
      assert.equal(restart.PRIORITY, 6);
      const unit = (await vm.entriesAfter(cursor, 'wg-quick@wg0'))
        .filter((e) => e.SYSLOG_IDENTIFIER === 'systemd')
        .map((e) => e.MESSAGE);
      assert.ok(
        unit.some((m) => /^Stopped wg-quick@wg0\.service/.test(m)) &&
          unit.some((m) => /^Finished wg-quick@wg0\.service/.test(m)),
        unit.join('\n'),
      );
      const after = await waitFor(
        "wg0 back with C's second PodCIDR routed",
        async () => {
          const l = await a.link();
          const routes = await a.routes();
          return l && routes.some((r) => r.dst === extra && r.dev === 'wg0') && l;
        },
        180_000,
        250,
      );
      assert.notEqual(after.ifindex, before.ifindex, 'wg0 was recreated');
      assert.equal(after.kind, 'wireguard', 'still kernel WireGuard');
      assert.equal(after.mtu, before.mtu);
      assert.equal((await vm.exec('pgrep', ['-x', 'wireguard-go'], { allowFailure: true })).exitCode, 1);
      assert.equal((await vm.show('wg-overlay', ['NRestarts'])).NRestarts, '0');
      const r = await a.podExec('ping', ['-c', '3', '-i', '0.2', '-W', '3', c.podIp], {
        allowFailure: true,
        timeoutMs: 30_000,
      });
      assert.match(r.stdout, /3 received/, `A's pod → C's pod after the restart:\n${r.stdout}${r.stderr}`);
      await vm.sh("sed -i 's/^apply = restart$/# apply = set/' /etc/wg-overlay/wg-overlay.conf");
      await vm.exec('systemctl', ['reload', 'wg-overlay']);
      api.patchNode(c.name, { spec: { podCIDRs: [c.spec.podCidr] } });
      await waitForMesh([a, b, c]);
    },
  );

  it('figure: `systemctl start wg-overlay` to READY with kernel WireGuard (wg0 created from scratch), 3 runs', async () => {
    needsPackage();
    for (let i = 0; i < 3; i++) {
      figures.readyMs.kernel.push(await timedStart());
      assert.equal((await a.link())?.kind, 'wireguard');
    }
    await waitForMesh([a, b, c]);
    console.log(`      (kernel WireGuard: start → READY ${figures.readyMs.kernel.join(', ')} ms)`);
  });

  it('figure: pod-to-pod throughput through kernel WireGuard (iperf3), and over the bare underlay for comparison', async () => {
    needsPackage();
    figures.mbitPerS.kernel = await iperf(
      (cmd, args) => b.podExec(cmd, args, { timeoutMs: 60_000 }),
      (cmd, args) => c.podExec(cmd, args),
      c.podIp,
    );
    figures.mbitPerS.underlay = await iperf(
      (cmd, args) => b.exec(cmd, args, { timeoutMs: 60_000 }),
      (cmd, args) => c.exec(cmd, args),
      c.spec.address,
    );
    console.log(
      `      (kernel WireGuard ${figures.mbitPerS.kernel.toFixed(0)} Mbit/s, underlay ${figures.mbitPerS.underlay.toFixed(0)} Mbit/s)`,
    );
  });

  // ---- WireGuard taken away, then given back as wireguard-go ------------------------------------

  /** What the daemons say when there is no WireGuard at all (the loop's line, once). */
  const NO_WIREGUARD = new RegExp(
    [
      String.raw`^apply failed: no WireGuard on this node: the kernel cannot create WireGuard links `,
      String.raw`\(ip link add … type wireguard: Error: Unknown device type; the wireguard module is missing, blacklisted or refused\) `,
      String.raw`and wireguard-go is not installed\. `,
      String.raw`Install wireguard-go \(Debian, Ubuntu: apt install wireguard-go; Fedora: dnf install wireguard-go\)`,
    ].join(''),
  );
  /** The one line that says the daemon fell back, and why. */
  const FALLBACK = (iface: string): RegExp =>
    new RegExp(
      `^${iface} runs on userspace wireguard-go: kernel WireGuard is not available ` +
        `\\(ip link add … type wireguard: Error: Unknown device type\\); throughput is lower than in the kernel$`,
    );
  let takenAway: { cursor: string; pidA: string; pidB: string } | undefined;
  /** Set once apt has installed wireguard-go in the VM: the last two figures are of it. */
  let userspaceInstalled = false;
  const needsUserspace = (): void => {
    if (userspaceInstalled) return;
    throw new Error(
      'not run: wireguard-go is not installed in the VM (the test that installs it failed: see its error above)',
    );
  };

  it(
    'module blacklisted and refused, no wireguard-go: both daemons say exactly what to install, once, ' +
      'and keep retrying in the same process',
    async () => {
      needsPackage();
      // WireGuard taken away: daemons stopped, links deleted, the module unloaded and refused.
      await b.stopDaemon();
      await c.stopDaemon();
      await vm.exec('systemctl', ['stop', 'wg-overlay', 'wg-quick@wg0']);
      await b.exec('ip', ['link', 'del', 'wgb']);
      await c.exec('ip', ['link', 'del', 'wgc']);
      await vm.writeFile(
        '/etc/modprobe.d/wgk-no-wireguard.conf',
        '# kernel tier: WireGuard blacklisted and refused\nblacklist wireguard\ninstall wireguard /bin/false\n',
      );
      // Links of deleted namespaces go away asynchronously: the module may be busy for a moment.
      await vm.sh('for i in $(seq 50); do modprobe -r wireguard && exit 0; sleep 0.2; done; exit 1');
      assert.notEqual(
        (await vm.exec('test', ['-e', '/sys/module/wireguard'], { allowFailure: true })).exitCode,
        0,
        'the module is unloaded',
      );
      const probe = await vm.exec('ip', ['link', 'add', 'wgprobe', 'type', 'wireguard'], { allowFailure: true });
      assert.match(probe.stderr, /Unknown device type/, 'the kernel can no longer create WireGuard links');

      const cursor = await vm.cursor();
      await vm.exec('systemctl', ['reset-failed', 'wg-overlay']);
      await vm.exec('systemctl', ['start', '--no-block', 'wg-overlay']);
      await b.startDaemon('/etc/wgk/kubeconfig');
      await vm.waitForEntry(cursor, 'wg-overlay', (e) => NO_WIREGUARD.test(e.MESSAGE), 240_000);
      await vm.waitForEntry(cursor, b.unit, (e) => NO_WIREGUARD.test(e.MESSAGE), 240_000);
      const pidA = (await vm.show('wg-overlay', ['MainPID'])).MainPID!;
      const pidB = (await vm.show(b.unit, ['MainPID'])).MainPID!;
      // Retries back off from 0.5 s, doubling: in 15 s each daemon tries several more times.
      await new Promise((r) => setTimeout(r, 15_000));
      const unitA = await vm.show('wg-overlay', ['ActiveState', 'SubState', 'MainPID', 'NRestarts']);
      assert.deepEqual(
        unitA,
        { ActiveState: 'activating', SubState: 'start', MainPID: pidA, NRestarts: '0' },
        'A: the same process, still starting (no READY without WireGuard), never restarted',
      );
      assert.deepEqual(
        await vm.show(b.unit, ['ActiveState', 'MainPID']),
        { ActiveState: 'active', MainPID: pidB },
        'B: the same process',
      );
      const starts = (await vm.entriesAfter(cursor, 'wg-quick@wg0')).filter((e) =>
        /^Starting wg-quick@wg0\.service/.test(e.MESSAGE),
      ).length;
      assert.ok(starts >= 3, `A retried: wg-quick@wg0 was started ${starts} times`);
      const wrapper = (await vm.entriesAfter(cursor, 'wg-quick@wg0')).map((e) => e.MESSAGE);
      assert.ok(
        wrapper.some(
          (m) =>
            m ===
            'wg-overlay: the kernel has no WireGuard and wireguard-go is not installed (apt install wireguard-go)',
        ),
        wrapper.join('\n'),
      );
      const bTries = (await daemonLog(b.unit, cursor)).filter(
        (m) => m === 'exec: ip link add dev wgb type wireguard',
      ).length;
      assert.ok(bTries >= 3, `B retried: ${bTries} attempts to create wgb`);
      for (const unit of ['wg-overlay', b.unit]) {
        const log = await daemonLog(unit, cursor);
        assert.equal(
          log.filter((m) => NO_WIREGUARD.test(m)).length,
          1,
          `${unit}: one line saying what to install, not one per retry:\n${log.filter((m) => !m.startsWith('exec: ')).join('\n')}`,
        );
      }
      takenAway = { cursor, pidA, pidB };
    },
  );

  it(
    "wireguard-go installed from apt's cache (no network): the same daemons come up on it at their next retry, " +
      'each saying so in one line',
    async () => {
      needsPackage();
      assert.ok(takenAway, 'the previous test took WireGuard away');
      const { cursor, pidA, pidB } = takenAway;
      await vm.exec('apt-get', ['install', '-y', '--no-install-recommends', 'wireguard-go'], {
        env: { DEBIAN_FRONTEND: 'noninteractive' },
        timeoutMs: 5 * 60_000,
      });
      userspaceInstalled = true;
      await vm.waitForUnit('wg-overlay', ['ActiveState'], (p) => p.ActiveState === 'active', 240_000);
      assert.deepEqual(
        await vm.show('wg-overlay', ['MainPID', 'NRestarts']),
        { MainPID: pidA, NRestarts: '0' },
        'A came up in the process that was retrying',
      );
      assert.equal((await a.link())?.kind, 'tun', 'wg0 is a wireguard-go tun device');
      const procs = (await vm.exec('ps', ['-o', 'user:32=,args=', '-C', 'wireguard-go'])).stdout
        .split('\n')
        .map((l) => l.trim().split(/\s+/));
      assert.deepEqual(
        procs.find((p) => p[2] === 'wg0')?.[0],
        'wg-overlay-wg',
        `wg0's wireguard-go runs as its own user wg-overlay-wg (the package's wrapper): ${JSON.stringify(procs)}`,
      );
      const quick = (await vm.entriesAfter(cursor, 'wg-quick@wg0')).map((e) => e.MESSAGE);
      assert.ok(
        quick.includes('[!] Missing WireGuard kernel module. Falling back to slow userspace implementation.'),
        quick.join('\n'),
      );
      await waitFor('B on wireguard-go', async () => (await b.link())?.kind === 'tun', 240_000, 500);
      assert.equal((await vm.show(b.unit, ['MainPID'])).MainPID, pidB, 'B came up in the process that was retrying');
      for (const [unit, iface] of [
        ['wg-overlay', 'wg0'],
        [b.unit, 'wgb'],
      ] as const) {
        const log = await waitFor(
          `${unit}'s fallback line`,
          async () => {
            const l = await daemonLog(unit, cursor);
            return l.some((m) => FALLBACK(iface).test(m)) && l;
          },
          90_000,
          500,
        );
        assert.equal(
          log.filter((m) => /runs on|WireGuard is not available/.test(m)).length,
          1,
          `${unit}: one line:\n${log.filter((m) => !m.startsWith('exec: ')).join('\n')}`,
        );
      }
      await c.startDaemon('/etc/wgk/kubeconfig');
      await waitForMesh([a, b, c], 240_000);
      assert.equal((await c.link())?.kind, 'tun');
      for (const [n, o] of [
        [a, b],
        [b, c],
        [c, a],
      ] as const) {
        const r = await n.podExec('ping', ['-c', '3', '-i', '0.2', '-W', '3', o.podIp], {
          allowFailure: true,
          timeoutMs: 30_000,
        });
        assert.match(
          r.stdout,
          /3 received/,
          `${n.name}'s pod → ${o.name}'s pod over wireguard-go:\n${r.stdout}${r.stderr}`,
        );
      }
    },
  );

  it('figure: `systemctl start wg-overlay` to READY with wireguard-go (wg0 created from scratch), 3 runs', async () => {
    needsPackage();
    needsUserspace();
    for (let i = 0; i < 3; i++) {
      figures.readyMs.userspace.push(await timedStart());
      assert.equal((await a.link())?.kind, 'tun');
    }
    await waitForMesh([a, b, c]);
    console.log(`      (wireguard-go: start → READY ${figures.readyMs.userspace.join(', ')} ms)`);
  });

  it('figure: pod-to-pod throughput through wireguard-go (iperf3)', async () => {
    needsPackage();
    needsUserspace();
    figures.mbitPerS.userspace = await iperf(
      (cmd, args) => b.podExec(cmd, args, { timeoutMs: 60_000 }),
      (cmd, args) => c.podExec(cmd, args),
      c.podIp,
    );
    console.log(`      (wireguard-go ${figures.mbitPerS.userspace.toFixed(0)} Mbit/s)`);
  });

  it('fail closed across a reboot: the daemon killed (-9) and disabled, the VM rebooted: the rule set loads before the network', async () => {
    await vm.exec('systemctl', ['disable', 'wg-overlay']);
    await vm.exec('systemctl', ['kill', '-s', 'KILL', 'wg-overlay']);
    const seconds = await vm.reboot();
    assert.equal((await vm.show('wg-overlay', ['ActiveState'])).ActiveState, 'inactive');
    assert.equal((await vm.show('wg-overlay-fail-closed', ['ActiveState'])).ActiveState, 'active');
    assert.equal(await a.link(), undefined, 'no wg0 after the reboot');
    // Loaded before the network: the boot unit finished before network-pre.target was reached.
    const at = async (unit: string): Promise<number> =>
      Number((await vm.show(unit, ['ActiveEnterTimestampMonotonic'])).ActiveEnterTimestampMonotonic);
    assert.ok(
      (await at('wg-overlay-fail-closed')) <= (await at('network-pre.target')),
      'loaded before network-pre.target',
    );
    assert.match((await vm.exec('nft', ['list', 'table', 'inet', 'wg_overlay'])).stdout, /10\.244\.2\.0\/24/);
    // A default route to a gateway on the underlay that takes packets and forwards nothing.
    const gateway = await TestNode.create({ label: 'gateway' });
    try {
      await net.attach(gateway);
      await vm.exec('ip', ['route', 'replace', 'default', 'via', gateway.underlayAddress!]);
      const capture = await Capture.start(vmTap);
      const pings = ['10.244.2.10', overlay(b), '10.244.3.10'].map((dst) =>
        vm.exec('ping', ['-q', '-c', '40', '-i', '0.05', '-W', '1', dst], { allowFailure: true, timeoutMs: 60_000 }),
      );
      await Promise.all(pings);
      const { count, lines } = await capture.stopAndCount('net 10.244.0.0/16 or net 100.64.0.0/10');
      console.log(
        `      (fail closed: rebooted in ${Math.round(seconds)} s with the daemon disabled: ${count} of 120 packets in clear)`,
      );
      assert.equal(count, 0, lines.join('\n'));
    } finally {
      await gateway.destroy();
    }
  });
});
