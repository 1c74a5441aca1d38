/**
 * A qemu VM booting Debian 12's own kernel (`linux-image-cloud-amd64`, which ships WireGuard as a
 * module) under software emulation (TCG: KVM cannot boot stock kernels on these machines), for
 * the kernel tier. {@link kernelVmImage} builds its disk once per content hash under the OS temp
 * dir, from the same cached debootstrap roots as the system tier (nspawn.ts): the kernel and
 * initramfs-tools installed by apt, the test agent (vm-agent.ts) as a unit, as an ext4 image made
 * with `mkfs.ext4 -d`. {@link KernelVm} boots it on a tap device of a test underlay, with its
 * console written to a log file that outlives the VM, and runs commands in it through the agent.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BootedSystem } from './booted.js';
import { cachedBuild, CACHE_DIR, contentHash, installedLayer, ScratchRoot } from './nspawn.js';
import {
  CommandError,
  run,
  showCommand,
  sleep,
  spawnProcess,
  type RunOptions,
  type RunResult,
  type TestProcess,
} from '../process.js';
import { AGENT_PORT, type AgentRunRequest, type AgentRunResponse, type AgentWriteRequest } from './vm-agent.js';

/** Bump to rebuild every cached VM image (when the way images are made changes). */
const IMAGE_FORMAT = 1;

/** The Debian package of the kernel the VM boots (the metapackage of the current cloud kernel). */
export const KERNEL_PACKAGE = 'linux-image-cloud-amd64';

/** What the VM needs besides the caller's packages: its kernel and initramfs, udev (module autoloading), and the test tools. */
const VM_PACKAGES = [KERNEL_PACKAGE, 'initramfs-tools', 'udev', 'kmod', 'iputils-ping', 'iperf3', 'procps'];

/**
 * The cloud kernel has the virtio disk driver as a module: the initramfs loads it (and nothing
 * else: MODULES=list keeps it small, gzip because zstd is not installed). Written before the
 * kernel is installed, so its postinst builds the initramfs this way at once.
 */
const INITRAMFS_FILES = {
  '/etc/initramfs-tools/conf.d/wgk.conf': { data: 'MODULES=list\nCOMPRESS=gzip\n' },
  '/etc/initramfs-tools/hooks/wgk-virtio': {
    mode: 0o755,
    data: [
      '#!/bin/sh',
      '# The kernel tier VM boots from a virtio disk: load its driver in the initramfs.',
      'case "$1" in prereqs) exit 0 ;; esac',
      '. /usr/share/initramfs-tools/hook-functions',
      'force_load virtio_pci',
      'force_load virtio_blk',
      '',
    ].join('\n'),
  },
};

/** Brings up the VM's underlay at boot: bridge br0 holding eth0 and the address from the kernel command line. */
const UNDERLAY_SCRIPT = `#!/bin/sh
# The kernel tier VM's underlay: br0 (namespace nodes join it through veths) holds eth0 and the
# address wgk.addr= (with MTU wgk.mtu=) from the kernel command line.
set -eu
param() { tr ' ' '\\n' </proc/cmdline | sed -n "s/^wgk\\.$1=//p"; }
addr=$(param addr)
mtu=$(param mtu)
i=0
while [ ! -e /sys/class/net/eth0 ]; do
  i=$((i + 1))
  [ "$i" -le 600 ] || { echo "wgk-underlay: no eth0 after 60 s" >&2; exit 1; }
  sleep 0.1
done
ip link add br0 type bridge stp_state 0 forward_delay 0
# Pinned, so that veths joining later never change the bridge's address under the ARP caches.
ip link set br0 address "$(cat /sys/class/net/eth0/address)" mtu "$mtu"
ip link set eth0 mtu "$mtu" master br0 up
ip link set br0 up
ip addr add "$addr" dev br0
ip link set lo up
`;

const AGENT_UNIT = `[Unit]
Description=wg-overlay kernel tier test agent (runs commands for the test process)
After=systemd-udevd.service systemd-udev-trigger.service

[Service]
ExecStartPre=/usr/local/lib/wgk/underlay.sh
ExecStart=/usr/bin/node /usr/local/lib/wgk/agent.mjs

[Install]
WantedBy=multi-user.target
`;

/** A built VM image: a raw ext4 disk and the kernel and initramfs to boot it with. */
export interface KernelVmImage {
  /** The cache dir holding the files. */
  dir: string;
  disk: string;
  kernel: string;
  initrd: string;
  /** `uname -r` of the kernel, e.g. 6.1.0-56-cloud-amd64. */
  kernelRelease: string;
  /** The kernel package's full version, e.g. 6.1.192-2. */
  kernelVersion: string;
}

/** Options of {@link kernelVmImage}. */
export interface KernelVmImageOptions {
  /** Packages installed in the image besides the kernel and the VM's own tools (e.g. the .deb's dependencies). */
  install: string[];
  /** Packages only downloaded into apt's cache, to be installed later inside the VM without network. */
  prefetch?: string[];
}

/**
 * The VM image on top of a cached Debian root (`debianRoot()`): built once per content hash
 * (packages, agent, scripts) under the OS temp dir; later calls return the cached one.
 */
export async function kernelVmImage(root: string, opts: KernelVmImageOptions): Promise<KernelVmImage> {
  const layers = await installedLayer(root, [...opts.install, ...VM_PACKAGES], {
    files: INITRAMFS_FILES,
    ...(opts.prefetch ? { prefetch: opts.prefetch } : {}),
  });
  const agent = await readFile(fileURLToPath(new URL('./vm-agent.js', import.meta.url)), 'utf8');
  const key = contentHash({ IMAGE_FORMAT, layers, agent, UNDERLAY_SCRIPT, AGENT_UNIT });
  const dir = await cachedBuild(join(CACHE_DIR, `vm-image-${key}`), async (tmp) => {
    const scratch = await ScratchRoot.create(layers);
    try {
      const files: Array<[string, string, number]> = [
        ['/etc/fstab', '/dev/vda / ext4 rw,noatime 0 1\n', 0o644],
        ['/usr/local/lib/wgk/agent.mjs', agent, 0o644],
        ['/usr/local/lib/wgk/underlay.sh', UNDERLAY_SCRIPT, 0o755],
        ['/etc/systemd/system/wgk-agent.service', AGENT_UNIT, 0o644],
      ];
      for (const [p, data, mode] of files) {
        await mkdir(dirname(scratch.path(p)), { recursive: true });
        await writeFile(scratch.path(p), data, { mode });
      }
      await mkdir(scratch.path('/etc/systemd/system/multi-user.target.wants'), { recursive: true });
      await symlink(
        '/etc/systemd/system/wgk-agent.service',
        scratch.path('/etc/systemd/system/multi-user.target.wants/wgk-agent.service'),
      );
      const boot = await readdir(scratch.path('/boot'));
      const vmlinuz = boot.find((f) => f.startsWith('vmlinuz-'));
      const initrd = boot.find((f) => f.startsWith('initrd.img-'));
      if (!vmlinuz || !initrd) throw new Error(`no kernel or initramfs in the VM image's /boot: ${boot.join(', ')}`);
      const release = vmlinuz.slice('vmlinuz-'.length);
      const version = (
        await scratch.exec(['dpkg-query', '-W', '-f', '${Version}', `linux-image-${release}`])
      ).stdout.trim();
      await copyFile(scratch.path(`/boot/${vmlinuz}`), join(tmp, 'vmlinuz'));
      await copyFile(scratch.path(`/boot/${initrd}`), join(tmp, 'initrd.img'));
      await writeFile(join(tmp, 'kernel.json'), JSON.stringify({ release, version }));
      // A sparse 3 GiB disk: the root takes about 700 MB, the rest is room for installs and logs.
      await run('mkfs.ext4', ['-q', '-F', '-L', 'wgk-root', '-d', scratch.root, join(tmp, 'disk.img'), '3G'], {
        timeoutMs: 5 * 60_000,
      });
    } finally {
      await scratch.remove();
    }
  });
  const k = JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')) as { release: string; version: string };
  return {
    dir,
    disk: join(dir, 'disk.img'),
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    kernelRelease: k.release,
    kernelVersion: k.version,
  };
}

/** Options of {@link KernelVm.boot}. */
export interface KernelVmOptions {
  image: KernelVmImage;
  /** Host name (systemd.hostname=), also its name in messages. */
  name: string;
  /** Tap device on the host to plug the VM's network card into (`Underlay.attachTap()`). */
  tap: string;
  /** The VM's underlay address with prefix length, on its bridge br0. */
  address: string;
  /** MTU of the VM's eth0 and br0 (default 1500). */
  mtu?: number;
  /** Memory (MiB, default 2048). */
  memoryMb?: number;
  /** How long boot may take until the agent answers (default 240 s). */
  bootTimeoutMs?: number;
  /** Let the guest reboot inside the same qemu (its disk snapshot keeps what was written); default: a reboot ends qemu. */
  allowReboot?: boolean;
}

let vmCounter = 0;
const liveQemu = new Set<number>();
let exitHookInstalled = false;

/** A running VM; commands run inside through its agent (systemctl and journal helpers from {@link BootedSystem}). */
export class KernelVm extends BootedSystem {
  /** Host name and name in messages. */
  readonly name: string;
  /** The VM's underlay address (no prefix length). */
  readonly address: string;
  /** The console log (kernel and systemd messages); kept after {@link stop} unless told otherwise. */
  readonly consoleLog: string;
  /** Seconds from starting qemu until the agent answered. */
  bootSeconds = 0;
  private readonly dir: string;
  private readonly token: string;
  private readonly qemu: TestProcess;
  private stopped = false;

  private constructor(
    name: string,
    address: string,
    dir: string,
    consoleLog: string,
    token: string,
    qemu: TestProcess,
  ) {
    super();
    this.name = name;
    this.address = address;
    this.dir = dir;
    this.consoleLog = consoleLog;
    this.token = token;
    this.qemu = qemu;
  }

  /** Boots the image (disk changes go to a throwaway snapshot) and waits until the agent answers. */
  static async boot(opts: KernelVmOptions): Promise<KernelVm> {
    installExitHook();
    vmCounter += 1;
    const dir = await mkdtemp(join(tmpdir(), 'wgk-vm-'));
    const consoleLog = join(tmpdir(), `wg-overlay-kernel-vm-${process.pid}-${vmCounter}.console.log`);
    const token = randomBytes(16).toString('hex');
    const mac = `52:54:00:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
    const append = [
      'console=ttyS0',
      'root=/dev/vda',
      'rw',
      'net.ifnames=0',
      'panic=-1',
      `systemd.hostname=${opts.name}`,
      `wgk.addr=${opts.address}`,
      `wgk.mtu=${opts.mtu ?? 1500}`,
      `wgk.token=${token}`,
      `wgk.port=${AGENT_PORT}`,
    ].join(' ');
    const args = [
      '--pdeathsig',
      'SIGKILL',
      '--',
      'qemu-system-x86_64',
      '-accel',
      'tcg,thread=multi',
      '-cpu',
      'max',
      '-smp',
      '2',
      '-m',
      String(opts.memoryMb ?? 2048),
      '-nodefaults',
      '-display',
      'none',
      ...(opts.allowReboot ? [] : ['-no-reboot']),
      '-serial',
      `file:${consoleLog}`,
      '-kernel',
      opts.image.kernel,
      '-initrd',
      opts.image.initrd,
      '-append',
      append,
      '-drive',
      `file=${opts.image.disk},format=raw,if=virtio,snapshot=on,cache=unsafe`,
      '-netdev',
      `tap,id=u0,ifname=${opts.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=u0,mac=${mac}`,
      '-device',
      'virtio-rng-pci',
    ];
    // setpriv: qemu dies with the test process, even when that is killed.
    const qemu = spawnProcess('setpriv', args, { env: { TMPDIR: dir }, label: `qemu ${opts.name}` });
    liveQemu.add(qemu.pid);
    const vm = new KernelVm(opts.name, opts.address.split('/')[0]!, dir, consoleLog, token, qemu);
    const started = Date.now();
    const timeout = opts.bootTimeoutMs ?? 240_000;
    try {
      for (;;) {
        if (!qemu.running) throw new Error(`qemu exited while booting: ${qemu.output().trim()}`);
        if (await vm.healthy()) break;
        if (Date.now() - started > timeout) throw new Error(`the agent did not answer within ${timeout / 1000} s`);
        await sleep(500);
      }
    } catch (err) {
      const tail = await vm.consoleTail(80);
      await vm.stop({ keepConsole: true });
      throw new Error(
        `booting VM ${opts.name} (${opts.image.kernelRelease}): ${err instanceof Error ? err.message : String(err)}\n--- console (${consoleLog}), last lines ---\n${tail}`,
      );
    }
    vm.bootSeconds = (Date.now() - started) / 1000;
    return vm;
  }

  /**
   * Reboots the guest (booted with `allowReboot`): `systemctl reboot`, then waits until the agent
   * has gone and answers again; returns the seconds that took.
   */
  async reboot(timeoutMs = 240_000): Promise<number> {
    const started = Date.now();
    // The agent dies with the system: the request may end without an answer.
    await this.exec('systemctl', ['reboot'], { allowFailure: true, timeoutMs: 30_000 }).catch(() => undefined);
    while (await this.healthy()) {
      if (Date.now() - started > 60_000) throw new Error(`VM ${this.name}: still up 60 s after systemctl reboot`);
      await sleep(500);
    }
    for (;;) {
      if (!this.qemu.running)
        throw new Error(`VM ${this.name}: qemu exited while rebooting (booted without allowReboot?)`);
      if (await this.healthy()) break;
      if (Date.now() - started > timeoutMs)
        throw new Error(`VM ${this.name}: the agent did not answer within ${timeoutMs / 1000} s of the reboot`);
      await sleep(1_000);
    }
    return (Date.now() - started) / 1000;
  }

  /** Whether the agent answers. */
  private async healthy(): Promise<boolean> {
    try {
      const r = await fetch(this.url('/health'), { headers: this.headers(), signal: AbortSignal.timeout(2_000) });
      return r.ok;
    } catch {
      return false;
    }
  }

  private url(path: string): string {
    return `http://${this.address}:${AGENT_PORT}${path}`;
  }

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' };
  }

  /** POSTs to the agent; errors name the VM, the request and, when qemu died, the console's last lines. */
  private async post<T>(path: string, body: unknown, timeoutMs: number, what: string): Promise<T> {
    if (this.stopped) throw new Error(`VM ${this.name} is stopped`);
    try {
      const r = await fetch(this.url(path), {
        method: 'POST',
        headers: this.headers(),
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await r.text();
      if (!r.ok) throw new Error(`agent answered HTTP ${r.status}: ${text}`);
      return JSON.parse(text) as T;
    } catch (err) {
      const dead = this.qemu.running
        ? ''
        : `; qemu is gone — console (${this.consoleLog}):\n${await this.consoleTail(40)}`;
      throw new Error(`[${this.name}] ${what}: ${err instanceof Error ? err.message : String(err)}${dead}`, {
        cause: err,
      });
    }
  }

  /** Runs a command inside the VM as root, like `run` (process.ts) on the host. */
  async exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const command = opts.display ?? `[${opts.label ?? this.name}] ${showCommand(cmd, args)}`;
    const req: AgentRunRequest = {
      cmd,
      args: [...args],
      timeoutMs,
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      ...(opts.env ? { env: opts.env } : {}),
    };
    const r = await this.post<AgentRunResponse>('/run', req, timeoutMs + 30_000, command);
    const result: RunResult = {
      command,
      exitCode: r.exitCode ?? undefined,
      signal: r.signal ?? undefined,
      stdout: r.stdout,
      stderr: r.stderr,
      failed: r.exitCode !== 0,
    };
    if (result.failed && !opts.allowFailure) {
      const reason =
        r.error ??
        (r.timedOut
          ? `timed out after ${timeoutMs} ms`
          : r.signal
            ? `killed by ${r.signal}`
            : `exited with code ${r.exitCode}`);
      throw new CommandError(result, reason);
    }
    return result;
  }

  /** Writes a file inside the VM (parent directories created). */
  async writeFile(p: string, data: string | Buffer, mode = 0o644): Promise<void> {
    const req: AgentWriteRequest = { path: p, data: Buffer.from(data).toString('base64'), mode };
    await this.post('/write', req, 120_000, `write ${p}`);
  }

  /** The last `lines` lines of the console log. */
  async consoleTail(lines: number): Promise<string> {
    const text = await readFile(this.consoleLog, 'utf8').catch(() => '');
    return text.split('\n').slice(-lines).join('\n');
  }

  /** Kills qemu and removes its temp dir; the console log stays unless `keepConsole` is false. */
  async stop(opts: { keepConsole: boolean }): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      await this.qemu.stop('SIGKILL', 0);
      liveQemu.delete(this.qemu.pid);
      await rm(this.dir, { recursive: true, force: true });
    }
    if (!opts.keepConsole) await rm(this.consoleLog, { force: true });
  }
}

/** At exit, kills VMs still running (setpriv's pdeathsig covers a killed test process). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pid of liveQemu) spawnSync('kill', ['-KILL', String(pid)], { stdio: 'ignore' });
  });
}
