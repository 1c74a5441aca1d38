/**
 * Pods on test nodes: a pod bridge inside a node (like cni0, {@link addPodBridge}) and
 * {@link TestPod}, a network namespace of its own behind a veth into a node, with a default
 * route to it. A node destroys its pods with it.
 */
import { cleanupStale, deleteNetns, installExitHook, live, NAME_PREFIX, nextId, type TestNode } from './netns.js';
import { run, TestProcess, type RunOptions, type RunResult } from '../process.js';

/** Something that runs commands in a namespace: a node or a pod. */
export interface Shell {
  exec(cmd: string, args?: readonly string[], opts?: RunOptions): Promise<RunResult>;
}

/** How {@link pingAll} pings. */
export interface PingOptions {
  /** How many pings (default 3). */
  count?: number;
  /** Seconds between them (default 0.2). */
  interval?: number;
  /** Payload bytes (default ping's own). */
  size?: number;
  /** What is pinged, for the failure message. */
  what?: string;
}

/** Pings `target` from a pod or node and asserts that every reply came back. */
export async function pingAll(from: Shell, target: string, o: PingOptions = {}): Promise<void> {
  const count = o.count ?? 3;
  const args = [
    '-q',
    '-c',
    String(count),
    '-i',
    String(o.interval ?? 0.2),
    '-W',
    '2',
    ...(o.size ? ['-s', String(o.size)] : []),
  ];
  const r = await from.exec('ping', [...args, target], { allowFailure: true });
  if (!new RegExp(`${count} packets transmitted, ${count} received`).test(r.stdout))
    throw new Error(`${o.what ?? `ping ${target}`}: not every reply came back:\n${r.stdout}${r.stderr}`);
}

/** The replies in `ping -D` output: when each arrived (ms since the epoch) and its sequence number. */
export function pingReplies(output: string): Array<{ at: number; seq: number }> {
  return [...output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/gm)].map((m) => ({
    at: Number(m[1]) * 1000,
    seq: Number(m[2]),
  }));
}

/**
 * Creates a bridge inside a node (like cni0) holding the pod gateway addresses (`address` such as
 * `10.244.1.1/24`, `address6` such as `fd10:244:1::1/64`, or both), and turns on forwarding in the
 * node for those families.
 */
export async function addPodBridge(
  node: TestNode,
  opts: { address?: string; address6?: string; name?: string; mtu?: number },
): Promise<string> {
  const name = opts.name ?? 'cni0';
  await node.exec('ip', ['link', 'add', name, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  await node.exec('ip', ['link', 'set', name, 'mtu', String(opts.mtu ?? 1500), 'up']);
  if (opts.address) await node.exec('ip', ['addr', 'add', opts.address, 'dev', name]);
  if (opts.address6) await node.exec('ip', ['addr', 'add', opts.address6, 'dev', name, 'nodad']);
  if (opts.address) await node.sysctl('net.ipv4.ip_forward', '1');
  if (opts.address6) await node.sysctl('net.ipv6.conf.all.forwarding', '1');
  return name;
}

/** Options of {@link TestPod.create}. */
export interface TestPodOptions {
  /** The pod's IPv4 address with prefix length, e.g. `10.244.1.2/24` (optional with `address6`). */
  address?: string;
  /** The pod's IPv4 default gateway, e.g. `10.244.1.1` (the node's address on the pod network). */
  gateway?: string;
  /** The pod's IPv6 address with prefix length, e.g. `fd10:244:1::10/64`, for a dual-stack or IPv6-only pod. */
  address6?: string;
  /** The pod's IPv6 default gateway (with `address6`), e.g. `fd10:244:1::1`. */
  gateway6?: string;
  /**
   * Bridge in the node to plug the pod into (see {@link addPodBridge}); without it the node's
   * end of the veth gets the gateways with the pod's prefix lengths (one such pod per subnet).
   */
  bridge?: string;
  /** MTU of the pod's veth (default 1500). */
  mtu?: number;
  /** Readable name for messages. */
  label?: string;
}

/** One address of a pod: its address and prefix length, and its gateway. */
interface PodAddress {
  ip: string;
  len: string;
  gateway: string;
  family: 4 | 6;
}

/** The pod's addresses from its options (IPv4 first); throws when one lacks a prefix length or gateway. */
function podAddresses(opts: TestPodOptions): PodAddress[] {
  const out: PodAddress[] = [];
  for (const [address, gateway, family] of [
    [opts.address, opts.gateway, 4],
    [opts.address6, opts.gateway6, 6],
  ] as const) {
    if (!address) continue;
    const [ip, len] = address.split('/');
    if (!ip || !len || !gateway) throw new Error(`pod address needs a prefix length and a gateway: ${address}`);
    out.push({ ip, len, gateway, family });
  }
  if (out.length === 0) throw new Error('a pod needs an address (IPv4, IPv6 or both)');
  return out;
}

/** A pod: its own network namespace behind a veth into a node, with a default route to the node. */
export class TestPod {
  /** Readable name for messages. */
  readonly label: string;
  /** The pod's network namespace (`wgo-<pid>-<n>`). */
  readonly netns: string;
  /** The pod's address (without prefix length): IPv4, or IPv6 for an IPv6-only pod. */
  readonly ip: string;
  /** The pod's IPv6 address (without prefix length), when it has one. */
  readonly ip6: string | undefined;
  /** Name of the node's end of the veth. */
  readonly hostVeth: string;
  private readonly node: TestNode;
  private destroyed = false;

  private constructor(
    node: TestNode,
    label: string,
    netns: string,
    ip: string,
    ip6: string | undefined,
    hostVeth: string,
  ) {
    this.node = node;
    this.label = label;
    this.netns = netns;
    this.ip = ip;
    this.ip6 = ip6;
    this.hostVeth = hostVeth;
  }

  /** Creates the pod namespace, the veth pair and the routes; turns on forwarding in the node for the pod's families. */
  static async create(node: TestNode, opts: TestPodOptions): Promise<TestPod> {
    await cleanupStale();
    installExitHook();
    const addrs = podAddresses(opts);
    const id = nextId();
    const netns = `${NAME_PREFIX}-${process.pid}-${id}`;
    const label = opts.label ?? `${node.label}/pod${id}`;
    const hostVeth = `wgv${process.pid}n${id}`;
    const podVeth = `wgp${process.pid}n${id}`;
    const mtu = String(opts.mtu ?? 1500);
    await run('ip', ['netns', 'add', netns]);
    live.netns.add(netns);
    const pod = new TestPod(node, label, netns, addrs[0]!.ip, addrs.find((a) => a.family === 6)?.ip, hostVeth);
    node.pods.push(pod);
    // IPv6 addresses skip duplicate address detection: usable at once.
    const nodad = (a: PodAddress): string[] => (a.family === 6 ? ['nodad'] : []);
    try {
      await run('ip', ['link', 'add', hostVeth, 'mtu', mtu, 'type', 'veth', 'peer', 'name', podVeth, 'mtu', mtu]);
      live.links.add(hostVeth);
      await run('ip', ['link', 'set', podVeth, 'netns', netns]);
      await run('ip', ['link', 'set', hostVeth, 'netns', node.netns]);
      live.links.delete(hostVeth);
      await pod.exec('ip', ['link', 'set', 'lo', 'up']);
      await pod.exec('ip', ['link', 'set', podVeth, 'name', 'eth0']);
      for (const a of addrs) await pod.exec('ip', ['addr', 'add', `${a.ip}/${a.len}`, 'dev', 'eth0', ...nodad(a)]);
      await pod.exec('ip', ['link', 'set', 'eth0', 'up']);
      if (opts.bridge) {
        await node.exec('ip', ['link', 'set', hostVeth, 'master', opts.bridge, 'up']);
      } else {
        for (const a of addrs)
          await node.exec('ip', ['addr', 'add', `${a.gateway}/${a.len}`, 'dev', hostVeth, ...nodad(a)]);
        await node.exec('ip', ['link', 'set', hostVeth, 'up']);
      }
      for (const a of addrs) {
        await pod.exec('ip', [`-${a.family}`, 'route', 'add', 'default', 'via', a.gateway, 'dev', 'eth0']);
        await node.sysctl(a.family === 4 ? 'net.ipv4.ip_forward' : 'net.ipv6.conf.all.forwarding', '1');
      }
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
