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
import { request as httpRequest } from 'node:http';
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
import {
  AGENT_PORT,
  type AgentHealth,
  type AgentJobAnswer,
  type AgentJobRequest,
  type AgentRunRequest,
  type AgentRunResponse,
  type AgentWriteRequest,
  type AgentWriteResponse,
} from './vm-agent.js';

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
  /** How long boot may take until the agent answers (default {@link BOOT_TIMEOUT_MS}). */
  bootTimeoutMs?: number;
  /** Let the guest reboot inside the same qemu (its disk snapshot keeps what was written); default: a reboot ends qemu. */
  allowReboot?: boolean;
}

// How the host talks to the agent. Under TCG on a loaded 2-core host the guest can stall for
// seconds and boot takes minutes, so: every request is on a fresh connection (no pooled socket
// that may have died, no TCP keepalive probes that a stalled guest misses), no request is held
// open for long (the agent waits for a job at most POLL_WAIT_MS, then the host asks again), and
// every request can be repeated (jobs carry an id, vm-agent.ts).

/** Default for how long boot may take until the agent answers: a minute idle, several on a loaded host. */
export const BOOT_TIMEOUT_MS = 8 * 60_000;
/** How long one request lets the agent wait for its job before the host asks again. */
const POLL_WAIT_MS = 20_000;
/** How much longer than the agent's wait the host waits for an answer before it tries again. */
const ANSWER_SLACK_MS = 30_000;
/** The VM counts as unreachable, for this step and every later one, when its agent has answered nothing for this long. */
const UNREACHABLE_MS = 150_000;
/** Past a command's own timeout (the agent kills it then), how long the host waits for the agent to report it. */
const REPORT_GRACE_MS = 60_000;
/** Pauses between attempts after a failed request: growing, then the last one. */
const RETRY_PAUSES_MS = [250, 500, 1_000, 2_000, 4_000];
/** Console lines printed with a timeout or an unreachable VM. */
const CONSOLE_LINES = 40;

/** The agent answered with an HTTP error: retrying the same request cannot help. */
class AgentHttpError extends Error {
  constructor(
    readonly status: number,
    text: string,
  ) {
    super(`agent answered HTTP ${status}: ${text.slice(0, 500)}`);
  }
}

/** The VM stopped answering (or qemu exited): this step failed, and later ones fail at once naming this cause. */
export class VmUnreachableError extends Error {
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = 'VmUnreachableError';
  }
}

/** One request to the agent on a connection of its own; resolves with the parsed JSON, rejects on any failure. */
function agentRequest<T>(
  target: { host: string; port: number; token: string },
  method: 'GET' | 'POST',
  path: string,
  body: string | undefined,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const req = httpRequest({
      host: target.host,
      port: target.port,
      method,
      path,
      // agent: false is a connection of its own, closed after the answer, without SO_KEEPALIVE.
      agent: false,
      headers: {
        authorization: `Bearer ${target.token}`,
        connection: 'close',
        ...(body === undefined
          ? {}
          : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }),
      },
    });
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const fail = (err: Error): void => settle(() => reject(err));
    const timer = setTimeout(() => {
      const err = new Error(`no answer within ${seconds(timeoutMs)}`);
      fail(err);
      req.destroy(err);
    }, timeoutMs);
    req.on('error', fail);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('error', fail);
      res.on('close', () => fail(new Error('the connection closed before the answer was complete')));
      res.on('end', () =>
        settle(() => {
          if (res.statusCode !== 200) return reject(new AgentHttpError(res.statusCode ?? 0, text));
          try {
            resolve(JSON.parse(text) as T);
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        }),
      );
    });
    req.end(body);
  });
}

/** Milliseconds as seconds for messages, e.g. `12.3 s`. */
function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/** A command line for messages: one line, at most `max` characters (scripts and long arguments are cut). */
export function briefCommand(cmd: string, args: readonly string[], max = 160): string {
  const line = showCommand(cmd, args).replace(/\s+/g, ' ');
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

/** An error's message, with its cause's (fetch-style errors hide the reason there). */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${err.message}${cause}`;
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
  /** What the agent said when it first answered (guest uptime and load). */
  bootHealth: AgentHealth | undefined;
  private readonly dir: string;
  private readonly token: string;
  private readonly qemu: TestProcess;
  private stopped = false;
  /** Set when the VM stopped answering: every later call fails at once with it. */
  private lost: { step: string; at: number; message: string } | undefined;
  private jobCounter = 0;
  private readonly jobPrefix = randomBytes(4).toString('hex');

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
    const qemu = spawnProcess('setpriv', qemuArgs(opts, consoleLog, token), {
      env: { TMPDIR: dir },
      label: `qemu ${opts.name}`,
    });
    liveQemu.add(qemu.pid);
    const vm = new KernelVm(opts.name, opts.address.split('/')[0]!, dir, consoleLog, token, qemu);
    const started = Date.now();
    try {
      vm.bootHealth = await vm.waitForAgent(opts.bootTimeoutMs ?? BOOT_TIMEOUT_MS);
    } catch (err) {
      const tail = await vm.consoleTail(80);
      await vm.stop({ keepConsole: true });
      throw new Error(
        `booting VM ${opts.name} (${opts.image.kernelRelease}): ${describeError(err)}\n` +
          `--- console (${consoleLog}), last lines ---\n${tail}`,
      );
    }
    vm.bootSeconds = (Date.now() - started) / 1000;
    return vm;
  }

  /**
   * The readiness handshake: polls the agent's cheap `/health` with growing pauses and growing
   * per-request timeouts until it answers, qemu exits, or `timeoutMs` has passed.
   */
  private async waitForAgent(timeoutMs: number): Promise<AgentHealth> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    for (let attempt = 0; ; attempt++) {
      if (!this.qemu.running) throw new Error(`qemu exited while booting: ${this.qemu.output().trim()}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `the agent did not answer within ${seconds(timeoutMs)} (${attempt} tries; last: ${describeError(lastError)})`,
        );
      }
      try {
        return await this.request<AgentHealth>(
          'GET',
          '/health',
          undefined,
          Math.min(left, 2_000 * 2 ** Math.min(attempt, 3)),
        );
      } catch (err) {
        lastError = err;
      }
      await sleep(Math.min(250 * 1.5 ** attempt, 1_000));
    }
  }

  /**
   * Reboots the guest (booted with `allowReboot`): `systemctl reboot`, then waits until the agent
   * has gone and answers again; returns the seconds that took.
   */
  async reboot(timeoutMs = 240_000): Promise<number> {
    const started = Date.now();
    // A timer reboots a second later, so the job that asks for it ends before the agent goes.
    await this.exec('systemd-run', ['--on-active=1', '--timer-property=AccuracySec=100ms', 'systemctl', 'reboot']);
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
    this.lost = undefined;
    return (Date.now() - started) / 1000;
  }

  /** Whether the agent answers. */
  private async healthy(): Promise<boolean> {
    try {
      await this.request<AgentHealth>('GET', '/health', undefined, 2_000);
      return true;
    } catch {
      return false;
    }
  }

  private request<T>(method: 'GET' | 'POST', path: string, body: string | undefined, timeoutMs: number): Promise<T> {
    return agentRequest<T>({ host: this.address, port: AGENT_PORT, token: this.token }, method, path, body, timeoutMs);
  }

  /** Throws unless calls may go to the agent: not after {@link stop}, not once the VM was found unreachable. */
  private assertUsable(what: string): void {
    if (this.stopped) throw new Error(`${what}: VM ${this.name} is stopped`);
    if (this.lost) {
      throw new VmUnreachableError(
        `${what}: not run: VM ${this.name} is unreachable, found ${seconds(Date.now() - this.lost.at)} ago ` +
          `when this step failed: ${this.lost.step}\n  (${this.lost.message})`,
      );
    }
  }

  /**
   * Runs a job in the agent to its end and returns its result: started (the same request again,
   * with the same id, until the agent has it), then waited for in rounds of at most POLL_WAIT_MS.
   * Fails after `budgetMs`, or when the agent answered nothing for UNREACHABLE_MS (then the VM
   * counts as unreachable for every later call too), or at once when qemu is gone.
   */
  private async job<T>(
    kind: 'run' | 'write',
    req: Omit<AgentRunRequest, keyof AgentJobRequest> | Omit<AgentWriteRequest, keyof AgentJobRequest>,
    what: string,
    budgetMs: number,
  ): Promise<T> {
    this.assertUsable(what);
    this.jobCounter += 1;
    const id = `${this.jobPrefix}-${this.jobCounter}`;
    const started = Date.now();
    let lastAnswer = started;
    let failures = 0;
    let lastError: unknown;
    let accepted = false;
    for (;;) {
      const left = started + budgetMs - Date.now();
      if (left <= 0) throw await this.stepTimeout(what, started, budgetMs, lastAnswer, lastError);
      const waitMs = Math.min(POLL_WAIT_MS, left);
      try {
        const ans = accepted
          ? await this.request<AgentJobAnswer<T>>(
              'GET',
              `/job/${id}?waitMs=${waitMs}`,
              undefined,
              waitMs + ANSWER_SLACK_MS,
            )
          : await this.startJob<T>(kind, { ...req, id, waitMs });
        accepted = true;
        lastAnswer = Date.now();
        failures = 0;
        if (ans.done) return ans.result as T;
      } catch (err) {
        if (err instanceof AgentHttpError && err.status < 500) {
          throw new Error(`${what}: ${err.message}`, { cause: err });
        }
        lastError = err;
        if (!this.qemu.running) throw await this.unreachable(what, started, 'qemu exited', err);
        if (Date.now() - lastAnswer >= UNREACHABLE_MS) {
          throw await this.unreachable(
            what,
            started,
            `its agent answered nothing for ${seconds(Date.now() - lastAnswer)}`,
            err,
          );
        }
        await sleep(RETRY_PAUSES_MS[Math.min(failures, RETRY_PAUSES_MS.length - 1)]!);
        failures += 1;
      }
    }
  }

  /** POSTs a job; the answer may take longer the larger the request (a slow guest reads ~100 KB/s at worst). */
  private startJob<T>(kind: 'run' | 'write', req: AgentRunRequest | AgentWriteRequest): Promise<AgentJobAnswer<T>> {
    const body = JSON.stringify(req);
    const timeoutMs = (req.waitMs ?? 0) + ANSWER_SLACK_MS + Math.ceil(body.length / 100_000) * 1_000;
    return this.request<AgentJobAnswer<T>>('POST', `/${kind}`, body, timeoutMs);
  }

  /** The error of a step that did not finish within its budget, with the console's last lines. */
  private async stepTimeout(
    what: string,
    started: number,
    budgetMs: number,
    lastAnswer: number,
    lastError: unknown,
  ): Promise<Error> {
    const contact =
      lastAnswer > started
        ? `the agent last answered ${seconds(Date.now() - lastAnswer)} ago`
        : 'the agent never answered';
    const last = lastError === undefined ? '' : `; last error: ${describeError(lastError)}`;
    return new Error(
      `step timed out after ${seconds(Date.now() - started)} (its timeout ${seconds(budgetMs)}): ${what}\n` +
        `  (${contact}${last}; qemu ${this.qemu.running ? 'running' : 'gone'})\n${await this.consoleSection()}`,
      { cause: lastError },
    );
  }

  /** Marks the VM unreachable and returns the error that says so, with the console's last lines. */
  private async unreachable(what: string, started: number, why: string, lastError: unknown): Promise<Error> {
    const message =
      `VM ${this.name} unreachable during step (after ${seconds(Date.now() - started)}): ${what}\n` +
      `  (${why}; last error: ${describeError(lastError)}${this.qemu.running ? '' : `; qemu: ${this.qemu.output().trim().slice(-500)}`})`;
    this.lost = { step: what, at: Date.now(), message: `${why}; last error: ${describeError(lastError)}` };
    return new VmUnreachableError(`${message}\n${await this.consoleSection()}`, { cause: lastError });
  }

  /** The console's last lines, headed with the log's path. */
  private async consoleSection(): Promise<string> {
    return `--- VM console (${this.consoleLog}), last ${CONSOLE_LINES} lines ---\n${await this.consoleTail(CONSOLE_LINES)}`;
  }

  /** Runs a command inside the VM as root, like `run` (process.ts) on the host. */
  async exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const command = opts.display ?? `[${opts.label ?? this.name}] ${briefCommand(cmd, args)}`;
    const req: Omit<AgentRunRequest, keyof AgentJobRequest> = {
      cmd,
      args: [...args],
      timeoutMs,
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      ...(opts.env ? { env: opts.env } : {}),
    };
    const started = Date.now();
    const r = await this.job<AgentRunResponse>('run', req, command, timeoutMs + REPORT_GRACE_MS);
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
          ? `timed out after ${seconds(Date.now() - started)} (its timeout ${seconds(timeoutMs)}); killed in the VM\n${await this.consoleSection()}`
          : r.signal
            ? `killed by ${r.signal}`
            : `exited with code ${r.exitCode}`);
      throw new CommandError(result, reason);
    }
    return result;
  }

  /** Writes a file inside the VM (parent directories created). */
  async writeFile(p: string, data: string | Buffer, mode = 0o644): Promise<void> {
    const bytes = Buffer.from(data);
    const what = `[${this.name}] write ${p} (${bytes.length} bytes)`;
    const req: Omit<AgentWriteRequest, keyof AgentJobRequest> = { path: p, data: bytes.toString('base64'), mode };
    const r = await this.job<AgentWriteResponse>(
      'write',
      req,
      what,
      120_000 + Math.ceil(bytes.length / 50_000) * 1_000,
    );
    if (r.error) throw new Error(`${what}: ${r.error}`);
  }

  /** The last `lines` lines of the console log. */
  async consoleTail(lines: number): Promise<string> {
    const text = await readFile(this.consoleLog, 'utf8').catch(() => '');
    return text.split('\n').slice(-lines).join('\n');
  }

  /** Why the VM counts as unreachable (the step that found it and what happened), or undefined while it answers. */
  get unreachableSince(): string | undefined {
    return this.lost && `${this.lost.step}: ${this.lost.message}`;
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

/** setpriv's arguments that run qemu: the kernel, the disk as a throwaway snapshot, a NIC on the tap; dies with this process. */
function qemuArgs(opts: KernelVmOptions, consoleLog: string, token: string): string[] {
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
  return [
    // setpriv: qemu dies with the test process, even when that is killed.
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
}

/** At exit, kills VMs still running (setpriv's pdeathsig covers a killed test process). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pid of liveQemu) spawnSync('kill', ['-KILL', String(pid)], { stdio: 'ignore' });
  });
}
