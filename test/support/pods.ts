/**
 * Pods on test nodes: a pod bridge inside a node (like cni0, {@link addPodBridge}) and
 * {@link TestPod}, a network namespace of its own behind a veth into a node, with a default
 * route to it. A node destroys its pods with it.
 */
import { cleanupStale, deleteNetns, installExitHook, live, NAME_PREFIX, nextId, type TestNode } from './netns.js';
import { run, TestProcess, type RunOptions, type RunResult } from './process.js';

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
