/**
 * Test helpers that build real networks on this machine: "nodes" (a network namespace plus a
 * private mount namespace with its own /run and an overlay on /etc, so each node has its own
 * wireguard-go control sockets and /etc/wireguard), an underlay bridge joining them, "pods"
 * behind veths, long-running processes inside nodes, and cleanup of everything, including the
 * leftovers of earlier runs that were killed. Needs root, iproute2 and util-linux.
 *
 * Every name carries this process's pid (`wgo-<pid>-<n>` namespaces, `wgb<pid>n<n>` bridges,
 * `wgv`/`wgp<pid>n<n>` veths, `$TMPDIR/wgo-<pid>-<n>-*` dirs), so concurrent runs never touch
 * each other's objects and a later run can tell which leftovers belong to dead processes.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';

/** Prefix of every network namespace and temp dir these helpers create. */
export const NAME_PREFIX = 'wgo';

// ---------------------------------------------------------------------------------------------
// Running commands

/** Options of {@link run}. */
export interface RunOptions {
  /** Text written to the command's stdin. */
  input?: string;
  /** Kill the command after this long (default 30 s). */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Resolve with the result instead of throwing when the command fails. */
  allowFailure?: boolean;
  /** Prefix for error messages, e.g. the node's label. */
  label?: string;
  /** The command line to show in messages instead of the real one (e.g. without nsenter). */
  display?: string;
}

/** The outcome of a finished command. */
export interface RunResult {
  /** The command line, for messages. */
  command: string;
  /** Exit code; undefined when killed by a signal or not started. */
  exitCode: number | undefined;
  /** The signal that killed it, if any. */
  signal: string | undefined;
  stdout: string;
  stderr: string;
  /** True when the command did not exit with code 0. */
  failed: boolean;
}

/** A command that failed; the message holds the command line, the exit status and stderr. */
export class CommandError extends Error {
  /** The failed command's result. */
  readonly result: RunResult;
  constructor(result: RunResult, reason: string, cause?: unknown) {
    const stderr = result.stderr.trim();
    const stdout = result.stdout.trim();
    super(
      `${result.command}: ${reason}` +
        (stderr ? `\n--- stderr ---\n${stderr}` : '') +
        (stdout && !stderr ? `\n--- stdout ---\n${stdout}` : ''),
      cause === undefined ? undefined : { cause },
    );
    this.name = 'CommandError';
    this.result = result;
  }
}

/** Quotes a command line for messages. */
function showCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Runs a command to completion and returns its output; throws a {@link CommandError} (with stderr) on failure. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const command = opts.display ?? (opts.label ? `[${opts.label}] ` : '') + showCommand(cmd, args);
  const r = await execa(cmd, args, {
    reject: false,
    timeout: opts.timeoutMs ?? 30_000,
    stdin: opts.input === undefined ? 'ignore' : 'pipe',
    ...(opts.input === undefined ? {} : { input: opts.input }),
    env: opts.env ?? {},
    stripFinalNewline: false,
  });
  const result: RunResult = {
    command,
    exitCode: r.exitCode,
    signal: r.signal,
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: typeof r.stderr === 'string' ? r.stderr : '',
    failed: r.failed,
  };
  if (r.failed && !opts.allowFailure) {
    const reason = r.timedOut
      ? `timed out after ${opts.timeoutMs ?? 30_000} ms`
      : r.signal
        ? `killed by ${r.signal}`
        : r.exitCode !== undefined
          ? `exited with code ${r.exitCode}`
          : `could not be started (${r.shortMessage})`;
    throw new CommandError(result, reason, r.cause);
  }
  return result;
}

/** Whether a command exists on PATH. */
export async function hasCommand(cmd: string): Promise<boolean> {
  const r = await run('sh', ['-c', 'command -v "$1"', 'sh', cmd], { allowFailure: true });
  return !r.failed;
}

/**
 * Throws (so the calling hook fails loudly, never skips) unless this process is root and every
 * listed command is installed; the message says how to install them.
 */
export async function requireTools(commands: readonly string[]): Promise<void> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('these tests need root (network and mount namespaces)');
  const missing: string[] = [];
  for (const c of commands) if (!(await hasCommand(c))) missing.push(c);
  if (missing.length > 0) {
    problems.push(`missing commands: ${missing.join(', ')} (test/setup.sh installs them: wireguard-tools, wireguard-go, iproute2, iputils-ping, util-linux)`);
  }
  if (problems.length > 0) throw new Error(`test environment not ready: ${problems.join('; ')}`);
}

// ---------------------------------------------------------------------------------------------
// Long-running processes

/** How a {@link TestProcess} ended. */
export interface ProcessExit {
  exitCode: number | undefined;
  signal: string | undefined;
}

/** A long-running child (inside a node or not) whose stdout and stderr are collected together. */
export class TestProcess {
  /** The command line, for messages. */
  readonly command: string;
  /** The child's pid (with nsenter it is the command itself, nsenter execs it). */
  readonly pid: number;
  /** Resolves when the child has exited. */
  readonly exited: Promise<ProcessExit>;
  private out = '';
  private done: ProcessExit | undefined;
  private readonly waiters = new Set<() => void>();
  private readonly child: ResultPromise;

  constructor(cmd: string, args: readonly string[], opts: { env?: Record<string, string>; label?: string; maxOutput?: number } = {}) {
    this.command = (opts.label ? `[${opts.label}] ` : '') + showCommand(cmd, args);
    const max = opts.maxOutput ?? 1_000_000;
    this.child = execa(cmd, args, { reject: false, buffer: false, stdin: 'ignore', env: opts.env ?? {} });
    if (this.child.pid === undefined) {
      // execa reports spawn failures through the promise; pid is undefined then.
      this.pid = -1;
    } else {
      this.pid = this.child.pid;
    }
    const onData = (chunk: Buffer | string): void => {
      this.out += chunk.toString();
      if (this.out.length > max) this.out = this.out.slice(this.out.length - max);
      for (const w of this.waiters) w();
    };
    this.child.stdout?.setEncoding('utf8').on('data', onData);
    this.child.stderr?.setEncoding('utf8').on('data', onData);
    this.exited = this.child.then((r) => {
      this.done = { exitCode: r.exitCode, signal: r.signal };
      if (r.failed && r.exitCode === undefined && r.signal === undefined) this.out += `\n[${r.shortMessage}]`;
      for (const w of this.waiters) w();
      return this.done;
    });
  }

  /** Everything the child wrote to stdout and stderr so far (the last 1 MB). */
  output(): string {
    return this.out;
  }

  /** Whether the child is still running. */
  get running(): boolean {
    return this.done === undefined;
  }

  /**
   * Waits until the output matches `pattern` (checked against everything written so far) and
   * returns the match; throws with the output so far on timeout or when the child exits first.
   */
  async waitForOutput(pattern: RegExp | string, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = this.out.match(re);
        if (m) finish(() => resolve(m));
        else if (this.done) {
          finish(() => reject(new Error(`${this.command} exited (${describeExit(this.done)}) before printing ${re}; output:\n${this.out}`)));
        }
      };
      const timer = setTimeout(() => {
        finish(() => reject(new Error(`${this.command} did not print ${re} within ${timeoutMs} ms; output:\n${this.out}`)));
      }, timeoutMs);
      const finish = (f: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Sends `signal` (default SIGTERM), then SIGKILL after `graceMs`, and returns how the child ended. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5_000): Promise<ProcessExit> {
    if (this.done) return this.done;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Describes a process exit for messages. */
function describeExit(e: ProcessExit | undefined): string {
  if (!e) return 'still running';
  return e.signal ? `signal ${e.signal}` : `code ${String(e.exitCode)}`;
}

/** Starts a long-running command in the root namespaces. */
export function spawnProcess(cmd: string, args: readonly string[], opts: { env?: Record<string, string>; label?: string } = {}): TestProcess {
  return new TestProcess(cmd, args, opts);
}

// ---------------------------------------------------------------------------------------------
// Names, registry of live objects, cleanup

let counter = 0;
/** A number unique within this process, for names. */
function nextId(): number {
  counter += 1;
  return counter;
}

/** Objects that must go away when this process exits, even if a test forgot to destroy them. */
const live = {
  netns: new Set<string>(),
  links: new Set<string>(),
  dirs: new Set<string>(),
};

let exitHookInstalled = false;
/** Registers the synchronous last-resort cleanup that runs when the process exits. */
function installExitHook(): void {
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
  return (r.stdout ?? '').split(/\s+/).filter(Boolean).map(Number).filter((n) => n > 0 && n !== process.pid);
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
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => n > 0 && n !== process.pid);
}

/** Whether a process exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
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

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Deletes a network namespace after terminating its processes (no error when it is gone). */
async function deleteNetns(ns: string): Promise<void> {
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
    return m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]));
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
  /** The node's underlay address once attached to an {@link Underlay}. */
  underlayAddress: string | undefined;
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
      ['netns', 'exec', netns, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', join(dir, 'etc-upper'), join(dir, 'etc-work')],
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
    return run('nsenter', this.enter(cmd, args), { display: `[${opts.label ?? this.label}] ${showCommand(cmd, args)}`, ...opts });
  }

  /** Runs a shell script inside the node. */
  sh(script: string, opts: RunOptions = {}): Promise<RunResult> {
    return this.exec('sh', ['-c', script], opts);
  }

  /** Starts a long-running command inside the node; it is killed by {@link destroy} at the latest. */
  spawn(cmd: string, args: readonly string[] = [], opts: { env?: Record<string, string> } = {}): TestProcess {
    return new TestProcess('nsenter', this.enter(cmd, args), { label: this.label, ...opts });
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

// ---------------------------------------------------------------------------------------------
// Underlay

/** Options of {@link Underlay.create}. */
export interface UnderlayOptions {
  /**
   * IPv4 subnet of the underlay (default 192.0.2.0/24, or with `hostAddress` a free one from
   * {@link findFreeSubnet}). Node addresses live only inside the node namespaces, so the subnet
   * may overlap the host's own networks unless `hostAddress` is set.
   */
  subnet?: string;
  /**
   * Give the bridge the subnet's first address (default false), so the test process can reach
   * the nodes (e.g. a test API server). The subnet must then not overlap any address or route of
   * the root namespace (the host itself may sit in 192.0.2.0/24!): creation fails if it does.
   * {@link findFreeSubnet} picks a subnet that is safe.
   */
  hostAddress?: boolean;
  /** Link MTU of bridge and veths (default 1500). */
  mtu?: number;
  /** Host part of the first node's address (default 11: 192.0.2.11, .12, ...). */
  firstHost?: number;
}

/** Parses an IPv4 address into a number. */
function ipv4ToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${ip}`);
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

/** Formats a number as an IPv4 address. */
function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** An IPv4 prefix as numbers. */
interface V4Prefix {
  network: number;
  length: number;
}

/** Parses `a.b.c.d[/len]` (a missing length means /32). */
function parseV4Prefix(text: string): V4Prefix {
  const [ip, len] = text.split('/');
  const length = len === undefined ? 32 : Number(len);
  const n = ipv4ToInt(ip ?? '');
  return { network: n - (n % 2 ** (32 - length)), length };
}

/** Whether two IPv4 prefixes share any address. */
function v4Overlap(a: V4Prefix, b: V4Prefix): boolean {
  const len = Math.min(a.length, b.length);
  const size = 2 ** (32 - len);
  return Math.floor(a.network / size) === Math.floor(b.network / size);
}

/** Addresses and (non-default) routes of the root namespace that overlap `subnet`, as text. */
export async function rootNetworkConflicts(subnet: string): Promise<string[]> {
  const want = parseV4Prefix(subnet);
  const found: string[] = [];
  const addrs = await run('ip', ['-4', '-o', 'addr', 'show']);
  for (const line of addrs.stdout.split('\n')) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(\S+)/.exec(line);
    if (m && v4Overlap(parseV4Prefix(m[2]!), want)) found.push(`address ${m[2]} on ${m[1]}`);
  }
  const routes = await run('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (const line of routes.stdout.split('\n')) {
    const m = /^(?:(?:unicast|local|broadcast|blackhole|unreachable|prohibit|throw)\s+)?(\d+\.\d+\.\d+\.\d+(?:\/\d+)?)\s/.exec(line);
    if (m && v4Overlap(parseV4Prefix(m[1]!), want)) found.push(`route ${line.trim()}`);
  }
  return found;
}

/**
 * Finds a /24 in the benchmark range 198.18.0.0/15 that nothing in the root namespace uses
 * (starting at an offset derived from the pid, so concurrent runs pick different ones): a safe
 * subnet for an underlay with `hostAddress: true`.
 */
export async function findFreeSubnet(): Promise<string> {
  for (let i = 0; i < 512; i++) {
    const k = (process.pid + counter * 7 + i) % 512;
    const subnet = `198.${18 + Math.floor(k / 256)}.${k % 256}.0/24`;
    if ((await rootNetworkConflicts(subnet)).length === 0) return subnet;
  }
  throw new Error('no free /24 left in 198.18.0.0/15 in the root namespace');
}

/** A bridge in the root namespace joining nodes through veth pairs (each node's side is `eth0`). */
export class Underlay {
  /** Bridge name (`wgb<pid>n<n>`). */
  readonly bridge: string;
  /** Prefix length of the subnet. */
  readonly prefixLength: number;
  /** The bridge's own address, when it has one (the first address of the subnet). */
  readonly hostAddress: string | undefined;
  /** Link MTU. */
  readonly mtu: number;
  private readonly network: number;
  private nextHost: number;
  private readonly vethsInRoot: string[] = [];
  private destroyed = false;

  private constructor(bridge: string, network: number, prefixLength: number, hostAddress: string | undefined, mtu: number, firstHost: number) {
    this.bridge = bridge;
    this.network = network;
    this.prefixLength = prefixLength;
    this.hostAddress = hostAddress;
    this.mtu = mtu;
    this.nextHost = firstHost;
  }

  /** Creates the bridge (up, STP off) and, by default, gives it the subnet's first address. */
  static async create(opts: UnderlayOptions = {}): Promise<Underlay> {
    await cleanupStale();
    installExitHook();
    const subnet = opts.subnet ?? (opts.hostAddress ? await findFreeSubnet() : '192.0.2.0/24');
    const [net, len] = subnet.split('/');
    const prefixLength = Number(len);
    if (!net || !Number.isInteger(prefixLength) || prefixLength < 8 || prefixLength > 29) throw new Error(`underlay subnet must be IPv4 /8-/29: ${subnet}`);
    const network = ipv4ToInt(net) - (ipv4ToInt(net) % 2 ** (32 - prefixLength));
    const mtu = opts.mtu ?? 1500;
    const bridge = `wgb${process.pid}n${nextId()}`;
    const hostAddress = opts.hostAddress ? intToIpv4(network + 1) : undefined;
    if (hostAddress) {
      const conflicts = await rootNetworkConflicts(`${intToIpv4(network)}/${prefixLength}`);
      if (conflicts.length > 0) {
        throw new Error(
          `underlay subnet ${subnet} cannot get a host address: the root namespace already uses it ` +
            `(${conflicts.join('; ')}); pick another subnet, e.g. from findFreeSubnet()`,
        );
      }
    }
    await run('ip', ['link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    live.links.add(bridge);
    const u = new Underlay(bridge, network, prefixLength, hostAddress, mtu, opts.firstHost ?? 11);
    try {
      // A bridge without an address of its own takes the lowest MAC of its ports, so attaching a
      // node could change it under the ARP caches of the others: their packets to the host
      // address (the API server) would be lost until the entries expire. Pin it.
      const mac = `02:${[...randomBytes(5)].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
      await run('ip', ['link', 'set', bridge, 'address', mac, 'mtu', String(mtu), 'up']);
      if (hostAddress) await run('ip', ['addr', 'add', `${hostAddress}/${prefixLength}`, 'dev', bridge]);
    } catch (err) {
      await u.destroy();
      throw err;
    }
    return u;
  }

  /**
   * Connects a node: a veth pair with one end on the bridge and the other as `ifname` (default
   * eth0) in the node, holding the next free address (or `address`); returns that address.
   */
  async attach(node: TestNode, opts: { address?: string; ifname?: string } = {}): Promise<string> {
    if (this.destroyed) throw new Error(`underlay ${this.bridge} is destroyed`);
    const id = nextId();
    const rootSide = `wgv${process.pid}n${id}`;
    const nodeSide = `wgp${process.pid}n${id}`;
    const ifname = opts.ifname ?? 'eth0';
    const address = opts.address ?? intToIpv4(this.network + this.nextHost++);
    const mtu = String(this.mtu);
    await run('ip', ['link', 'add', rootSide, 'mtu', mtu, 'type', 'veth', 'peer', 'name', nodeSide, 'mtu', mtu]);
    this.vethsInRoot.push(rootSide);
    live.links.add(rootSide);
    await run('ip', ['link', 'set', nodeSide, 'netns', node.netns]);
    await run('ip', ['link', 'set', rootSide, 'master', this.bridge, 'up']);
    await node.exec('ip', ['link', 'set', nodeSide, 'name', ifname]);
    await node.exec('ip', ['addr', 'add', `${address}/${this.prefixLength}`, 'dev', ifname]);
    await node.exec('ip', ['link', 'set', ifname, 'up']);
    node.underlayAddress = address;
    return address;
  }

  /** Deletes the bridge and the root ends of the veths (their node ends go with them). */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const v of this.vethsInRoot) {
      await run('ip', ['link', 'del', v], { allowFailure: true });
      live.links.delete(v);
    }
    await run('ip', ['link', 'del', this.bridge], { allowFailure: true });
    live.links.delete(this.bridge);
  }
}

/** Options of {@link TestNetwork.create}. */
export interface TestNetworkOptions extends UnderlayOptions {
  /** Number of nodes (default 2). */
  nodes?: number;
  /** Labels of the nodes (default node-a, node-b, ...). */
  labels?: string[];
}

/** Several nodes on one underlay: the usual start of an end-to-end test. */
export class TestNetwork {
  /** The bridge joining the nodes. */
  readonly underlay: Underlay;
  /** The nodes, in creation order, addressed .11, .12, ... of the subnet. */
  readonly nodes: TestNode[];

  private constructor(underlay: Underlay, nodes: TestNode[]) {
    this.underlay = underlay;
    this.nodes = nodes;
  }

  /** Creates the underlay and the nodes attached to it (everything is removed again on failure). */
  static async create(opts: TestNetworkOptions = {}): Promise<TestNetwork> {
    const count = opts.nodes ?? 2;
    const underlay = await Underlay.create(opts);
    const nodes: TestNode[] = [];
    const net = new TestNetwork(underlay, nodes);
    try {
      for (let i = 0; i < count; i++) {
        const node = await TestNode.create({ label: opts.labels?.[i] ?? `node-${String.fromCharCode(97 + (i % 26))}` });
        nodes.push(node);
        await underlay.attach(node);
      }
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  /** Destroys every node and the underlay. */
  async destroy(): Promise<void> {
    const errors: unknown[] = [];
    for (const n of this.nodes) await n.destroy().catch((e: unknown) => errors.push(e));
    await this.underlay.destroy().catch((e: unknown) => errors.push(e));
    if (errors.length > 0) throw new Error(`destroying test network: ${errors.length} error(s)`, { cause: errors[0] });
  }
}

// ---------------------------------------------------------------------------------------------
// Pods

/**
 * Creates a bridge inside a node (like cni0) holding the pod gateway address (e.g.
 * `10.244.1.1/24`), and turns on IPv4 forwarding in the node.
 */
export async function addPodBridge(node: TestNode, opts: { address: string; name?: string; mtu?: number }): Promise<string> {
  const name = opts.name ?? 'cni0';
  await node.exec('ip', ['link', 'add', name, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  await node.exec('ip', ['link', 'set', name, 'mtu', String(opts.mtu ?? 1500), 'up']);
  await node.exec('ip', ['addr', 'add', opts.address, 'dev', name]);
  await node.sysctl('net.ipv4.ip_forward', '1');
  return name;
}

/** Options of {@link TestPod.create}. */
export interface TestPodOptions {
  /** The pod's address with prefix length, e.g. `10.244.1.2/24`. */
  address: string;
  /** The pod's default gateway, e.g. `10.244.1.1` (the node's address on the pod network). */
  gateway: string;
  /**
   * Bridge in the node to plug the pod into (see {@link addPodBridge}); without it the node's
   * end of the veth gets `gateway` with the pod's prefix length (one such pod per subnet).
   */
  bridge?: string;
  /** MTU of the pod's veth (default 1500). */
  mtu?: number;
  /** Readable name for messages. */
  label?: string;
}

/** A pod: its own network namespace behind a veth into a node, with a default route to the node. */
export class TestPod {
  /** Readable name for messages. */
  readonly label: string;
  /** The pod's network namespace (`wgo-<pid>-<n>`). */
  readonly netns: string;
  /** The pod's address (without prefix length). */
  readonly ip: string;
  /** Name of the node's end of the veth. */
  readonly hostVeth: string;
  private readonly node: TestNode;
  private destroyed = false;

  private constructor(node: TestNode, label: string, netns: string, ip: string, hostVeth: string) {
    this.node = node;
    this.label = label;
    this.netns = netns;
    this.ip = ip;
    this.hostVeth = hostVeth;
  }

  /** Creates the pod namespace, the veth pair and the routes; turns on IPv4 forwarding in the node. */
  static async create(node: TestNode, opts: TestPodOptions): Promise<TestPod> {
    await cleanupStale();
    installExitHook();
    const id = nextId();
    const netns = `${NAME_PREFIX}-${process.pid}-${id}`;
    const label = opts.label ?? `${node.label}/pod${id}`;
    const hostVeth = `wgv${process.pid}n${id}`;
    const podVeth = `wgp${process.pid}n${id}`;
    const [ip, len] = opts.address.split('/');
    if (!ip || !len) throw new Error(`pod address needs a prefix length: ${opts.address}`);
    const mtu = String(opts.mtu ?? 1500);
    await run('ip', ['netns', 'add', netns]);
    live.netns.add(netns);
    const pod = new TestPod(node, label, netns, ip, hostVeth);
    node.pods.push(pod);
    try {
      await run('ip', ['link', 'add', hostVeth, 'mtu', mtu, 'type', 'veth', 'peer', 'name', podVeth, 'mtu', mtu]);
      live.links.add(hostVeth);
      await run('ip', ['link', 'set', podVeth, 'netns', netns]);
      await run('ip', ['link', 'set', hostVeth, 'netns', node.netns]);
      live.links.delete(hostVeth);
      await pod.exec('ip', ['link', 'set', 'lo', 'up']);
      await pod.exec('ip', ['link', 'set', podVeth, 'name', 'eth0']);
      await pod.exec('ip', ['addr', 'add', opts.address, 'dev', 'eth0']);
      await pod.exec('ip', ['link', 'set', 'eth0', 'up']);
      if (opts.bridge) {
        await node.exec('ip', ['link', 'set', hostVeth, 'master', opts.bridge, 'up']);
      } else {
        await node.exec('ip', ['addr', 'add', `${opts.gateway}/${len}`, 'dev', hostVeth]);
        await node.exec('ip', ['link', 'set', hostVeth, 'up']);
      }
      await pod.exec('ip', ['route', 'add', 'default', 'via', opts.gateway, 'dev', 'eth0']);
      await node.sysctl('net.ipv4.ip_forward', '1');
    } catch (err) {
      await pod.destroy();
      throw new Error(`creating pod ${label}`, { cause: err });
    }
    return pod;
  }

  /** Runs a command inside the pod's network namespace (`ip netns exec`). */
  exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    if (this.destroyed) throw new Error(`pod ${this.label} is destroyed`);
    return run('ip', ['netns', 'exec', this.netns, cmd, ...args], { label: this.label, ...opts });
  }

  /** Starts a long-running command inside the pod (e.g. a listener); stop it or destroy the pod. */
  spawn(cmd: string, args: readonly string[] = []): TestProcess {
    return new TestProcess('ip', ['netns', 'exec', this.netns, cmd, ...args], { label: this.label });
  }

  /** Kills the pod's processes, deletes its veth pair and its namespace. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const i = this.node.pods.indexOf(this);
    if (i >= 0) this.node.pods.splice(i, 1);
    // Deleting a namespace removes its links only later (asynchronously): delete the pair now.
    await run('ip', ['netns', 'exec', this.netns, 'ip', 'link', 'del', 'eth0'], { allowFailure: true });
    await run('ip', ['link', 'del', this.hostVeth], { allowFailure: true });
    live.links.delete(this.hostVeth);
    await deleteNetns(this.netns);
    live.netns.delete(this.netns);
  }
}
