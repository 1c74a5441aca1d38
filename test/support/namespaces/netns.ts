/**
 * Test "nodes" on this machine, and the lifetime of everything the namespace helpers create.
 * A node is a network namespace plus a private mount namespace with its own /run and an overlay
 * on /etc, so each node has its own wireguard-go control sockets and /etc/wireguard. Networks
 * between nodes are in underlay.ts, pods in pods.ts; all of them name, register and clean up
 * their objects through this module. Needs root, iproute2 and util-linux.
 *
 * Every name carries this process's pid (`wgo-<pid>-<n>` namespaces, `wgb<pid>n<n>` bridges,
 * `wgv`/`wgp<pid>n<n>` veths, `$TMPDIR/wgo-<pid>-<n>-*` dirs), so concurrent runs never touch
 * each other's objects and a later run can tell which leftovers belong to dead processes:
 * {@link cleanupStale} removes those, and an exit hook removes this process's own.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestPod } from './pods.js';
import { run, showCommand, sleep, TestProcess, type RunOptions, type RunResult } from '../process.js';
import { pidAlive } from '../../../service/src/util/process.js';

/** Prefix of every network namespace and temp dir these helpers create. */
export const NAME_PREFIX = 'wgo';

// ---------------------------------------------------------------------------------------------
// Names, registry of live objects, cleanup (shared with underlay.ts and pods.ts)

let counter = 0;
/** A number unique within this process, for names. */
export function nextId(): number {
  counter += 1;
  return counter;
}

/** How many numbers {@link nextId} has handed out so far. */
export function idsIssued(): number {
  return counter;
}

/** Objects that must go away when this process exits, even if a test forgot to destroy them. */
export const live = {
  netns: new Set<string>(),
  links: new Set<string>(),
  dirs: new Set<string>(),
};

let exitHookInstalled = false;
/** Registers the synchronous last-resort cleanup that runs when the process exits. */
export function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const ns of live.netns) {
      killPidsSync(netnsPidsSync(ns));
      spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    }
    for (const l of live.links) spawnSync('ip', ['link', 'del', l], { stdio: 'ignore' });
    for (const d of live.dirs) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch {
        // best effort at exit
      }
    }
  });
}

/** Pids of the processes in a named network namespace (synchronous, for the exit hook). */
function netnsPidsSync(ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
  return (r.stdout ?? '')
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => n > 0 && n !== process.pid);
}

/** SIGKILLs the given pids, ignoring the ones already gone. */
function killPidsSync(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Pids of the processes in a named network namespace. */
export async function netnsPids(ns: string): Promise<number[]> {
  const r = await run('ip', ['netns', 'pids', ns], { allowFailure: true });
  return r.stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => n > 0 && n !== process.pid);
}

/** Terminates every process in a network namespace: SIGTERM, then SIGKILL after `graceMs`. */
export async function killNetnsProcesses(ns: string, graceMs = 2_000): Promise<void> {
  let pids = await netnsPids(ns);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + graceMs;
  while (pids.length > 0 && Date.now() < deadline) {
    await sleep(20);
    pids = await netnsPids(ns);
  }
  killPidsSync(pids);
  const killDeadline = Date.now() + 2_000;
  while ((await netnsPids(ns)).length > 0 && Date.now() < killDeadline) await sleep(20);
}

/** Deletes a network namespace after terminating its processes (no error when it is gone). */
export async function deleteNetns(ns: string): Promise<void> {
  await killNetnsProcesses(ns);
  await run('ip', ['netns', 'del', ns], { allowFailure: true });
}

let staleCleanupDone: Promise<string[]> | undefined;

/**
 * Removes what earlier, killed runs left behind (namespaces, links and temp dirs whose names
 * carry the pid of a process that no longer exists) and returns their names; runs once per process
 * unless `force` is set (the helpers call it before creating anything).
 */
export function cleanupStale(force = false): Promise<string[]> {
  if (!staleCleanupDone || force) staleCleanupDone = doCleanupStale();
  return staleCleanupDone;
}

async function doCleanupStale(): Promise<string[]> {
  const removed: string[] = [];
  const deadOwner = (name: string, re: RegExp): boolean => {
    const m = re.exec(name);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  };
  const nsList = await run('ip', ['netns', 'list'], { allowFailure: true });
  for (const line of nsList.stdout.split('\n')) {
    const ns = line.trim().split(/\s+/)[0];
    if (ns && deadOwner(ns, new RegExp(`^${NAME_PREFIX}-(\\d+)-\\d+$`))) {
      await deleteNetns(ns);
      removed.push(`netns ${ns}`);
    }
  }
  const links = await run('ip', ['-o', 'link', 'show'], { allowFailure: true });
  for (const line of links.stdout.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (name && deadOwner(name, /^wg[bvp](\d+)n\d+$/)) {
      await run('ip', ['link', 'del', name], { allowFailure: true });
      removed.push(`link ${name}`);
    }
  }
  const tmp = tmpdir();
  for (const entry of await readdir(tmp).catch(() => [] as string[])) {
    if (deadOwner(entry, new RegExp(`^${NAME_PREFIX}-(\\d+)-\\d+-`))) {
      await rm(join(tmp, entry), { recursive: true, force: true }).catch(() => undefined);
      removed.push(`dir ${join(tmp, entry)}`);
    }
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// Nodes

/** Options of {@link TestNode.create}. */
export interface TestNodeOptions {
  /** A readable name for messages (default `node<n>`). */
  label?: string;
}

/** Counters of one link (what `ip -s link` shows). */
export interface LinkStats {
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
}

/**
 * A simulated host: its own network namespace and a private mount namespace (tmpfs on /run,
 * overlay on /etc) kept alive by a holder process; commands run inside with nsenter.
 */
export class TestNode {
  /** Readable name for messages. */
  readonly label: string;
  /** Name of the network namespace (`wgo-<pid>-<n>`), usable with `ip netns exec` for network-only commands. */
  readonly netns: string;
  /** Pid of the holder process whose namespaces commands enter. */
  readonly holderPid: number;
  /** Temp dir holding the /etc overlay's upper and work dirs. */
  readonly dir: string;
  /** The node's address on the first underlay it was attached to (`Underlay.attach`, underlay.ts): IPv4, or IPv6 on an IPv6-only underlay. */
  underlayAddress: string | undefined;
  /** The node's IPv6 address on the first underlay it was attached to, when that underlay has IPv6. */
  underlayAddress6: string | undefined;
  /** Pods created on this node, destroyed with it. */
  readonly pods: TestPod[] = [];
  private readonly holder: TestProcess;
  private destroyed = false;

  private constructor(label: string, netns: string, dir: string, holder: TestProcess) {
    this.label = label;
    this.netns = netns;
    this.dir = dir;
    this.holder = holder;
    this.holderPid = holder.pid;
  }

  /** Creates a node: network namespace with loopback up, private /run, own /etc overlay. */
  static async create(opts: TestNodeOptions = {}): Promise<TestNode> {
    await cleanupStale();
    installExitHook();
    const id = nextId();
    const label = opts.label ?? `node${id}`;
    const netns = `${NAME_PREFIX}-${process.pid}-${id}`;
    const dir = await mkdtemp(join(tmpdir(), `${netns}-`));
    live.dirs.add(dir);
    await mkdir(join(dir, 'etc-upper'));
    await mkdir(join(dir, 'etc-work'));
    await run('ip', ['netns', 'add', netns]);
    live.netns.add(netns);
    // `ip netns exec` enters the netns (and mounts a matching /sys); unshare makes a private
    // mount namespace; sh mounts /run and /etc there and becomes the holder (sleep).
    const script = [
      'set -e',
      'mount -t tmpfs -o mode=0755 wgo-run /run',
      'mkdir -p /run/netns /run/lock',
      'mount -t overlay wgo-etc -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc',
      'ip link set lo up',
      'echo wgo-holder-ready',
      'exec sleep infinity',
    ].join('\n');
    const holder = new TestProcess(
      'ip',
      [
        'netns',
        'exec',
        netns,
        'unshare',
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        script,
        'sh',
        join(dir, 'etc-upper'),
        join(dir, 'etc-work'),
      ],
      { label },
    );
    const node = new TestNode(label, netns, dir, holder);
    try {
      await holder.waitForOutput('wgo-holder-ready', 10_000);
    } catch (err) {
      await node.destroy();
      throw new Error(`creating test node ${label} (netns ${netns})`, { cause: err });
    }
    return node;
  }

  /** The node's view of an absolute path, reachable from the test process (`/proc/<holder>/root/...`). */
  path(p: string): string {
    if (!p.startsWith('/')) throw new Error(`TestNode.path needs an absolute path, got ${p}`);
    return `/proc/${this.holderPid}/root${p}`;
  }

  /** Writes a file inside the node's mount namespace (e.g. into its private /etc or /run). */
  async writeFile(p: string, data: string | Buffer, mode = 0o644): Promise<void> {
    await writeFile(this.path(p), data, { mode });
    await chmod(this.path(p), mode);
  }

  /** Reads a file inside the node's mount namespace. */
  async readFile(p: string): Promise<string> {
    return readFile(this.path(p), 'utf8');
  }

  /** The arguments that run a command inside this node. */
  private enter(cmd: string, args: readonly string[]): string[] {
    if (this.destroyed) throw new Error(`test node ${this.label} is destroyed`);
    return ['-t', String(this.holderPid), '-m', '-n', '--', cmd, ...args];
  }

  /** Runs a command inside the node (its network and mount namespaces) to completion. */
  exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    return run('nsenter', this.enter(cmd, args), {
      display: `[${opts.label ?? this.label}] ${showCommand(cmd, args)}`,
      ...opts,
    });
  }

  /** Runs a shell script inside the node. */
  sh(script: string, opts: RunOptions = {}): Promise<RunResult> {
    return this.exec('sh', ['-c', script], opts);
  }

  /** Starts a long-running command inside the node; it is killed by {@link destroy} at the latest. */
  spawn(cmd: string, args: readonly string[] = [], opts: { env?: Record<string, string> } = {}): TestProcess {
    return new TestProcess('nsenter', this.enter(cmd, args), { label: this.label, ...opts });
  }

  /** The byte and packet counters of a link in the node, as `ip -s link` reports them. */
  async linkStats(ifname: string): Promise<LinkStats> {
    const r = await this.exec('ip', ['-j', '-s', 'link', 'show', 'dev', ifname]);
    const s = (
      JSON.parse(r.stdout) as Array<{
        stats64: { rx: { bytes: number; packets: number }; tx: { bytes: number; packets: number } };
      }>
    )[0]!.stats64;
    return { rxBytes: s.rx.bytes, rxPackets: s.rx.packets, txBytes: s.tx.bytes, txPackets: s.tx.packets };
  }

  /** Sets a sysctl inside the node's network namespace (e.g. `net.ipv4.ip_forward`, `1`). */
  async sysctl(key: string, value: string): Promise<void> {
    await this.exec('sysctl', ['-q', '-w', `${key}=${value}`]);
  }

  /** Kills every process in the node (holder, wireguard-go, daemons), deletes its namespace, links and dir. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const pod of this.pods.splice(0)) await pod.destroy();
    await deleteNetns(this.netns);
    await this.holder.stop('SIGKILL', 0).catch(() => undefined);
    live.netns.delete(this.netns);
    await rm(this.dir, { recursive: true, force: true });
    live.dirs.delete(this.dir);
  }
}
