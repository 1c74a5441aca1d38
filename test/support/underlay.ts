/**
 * Networks between test nodes: an {@link Underlay} is a bridge in the root namespace that nodes
 * join through veth pairs (optionally with an address of its own, so the test process can reach
 * the nodes), and a {@link TestNetwork} is the usual start of an end-to-end test, several nodes
 * on one underlay. Also the checks that keep an underlay from clashing with the host's own
 * networks ({@link rootNetworkConflicts}, {@link findFreeSubnet}).
 */
import { randomBytes } from 'node:crypto';
import { cidrSize, cidrsOverlap, formatCidr, formatIp, parseCidr, type Cidr } from '../../service/src/net/ip.js';
import { cleanupStale, idsIssued, installExitHook, live, nextId, TestNode } from './netns.js';
import { run } from './process.js';

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

/** Parses an IPv4 prefix as `ip` prints it, `a.b.c.d[/len]` (no length: a /32); undefined when it is not one. */
function parseV4Prefix(text: string): Cidr | undefined {
  const c = parseCidr(text.includes('/') ? text : `${text}/32`);
  return c?.family === 4 ? c : undefined;
}

/** Addresses and (non-default) routes of the root namespace that overlap `subnet`, as text. */
export async function rootNetworkConflicts(subnet: string): Promise<string[]> {
  const want = parseV4Prefix(subnet);
  if (!want) throw new Error(`not an IPv4 subnet: ${subnet}`);
  const found: string[] = [];
  const addrs = await run('ip', ['-4', '-o', 'addr', 'show']);
  for (const line of addrs.stdout.split('\n')) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(\S+)/.exec(line);
    if (!m) continue;
    const have = parseV4Prefix(m[2]!);
    if (have && cidrsOverlap(have, want)) found.push(`address ${m[2]} on ${m[1]}`);
  }
  const routes = await run('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (const line of routes.stdout.split('\n')) {
    const m = /^(?:(?:unicast|local|broadcast|blackhole|unreachable|prohibit|throw)\s+)?(\d+\.\d+\.\d+\.\d+(?:\/\d+)?)\s/.exec(line);
    if (!m) continue;
    const have = parseV4Prefix(m[1]!);
    if (have && cidrsOverlap(have, want)) found.push(`route ${line.trim()}`);
  }
  return found;
}

/**
 * Finds a /24 in the benchmark range 198.18.0.0/15 that nothing in the root namespace uses
 * (starting at an offset derived from the pid, so concurrent runs pick different ones): a safe
 * subnet for an underlay with `hostAddress: true`.
 */
export async function findFreeSubnet(): Promise<string> {
  const range = parseCidr('198.18.0.0/15') as Cidr;
  const count = Number(cidrSize(range) / 256n); // the /24s in the range
  for (let i = 0; i < count; i++) {
    const k = (process.pid + idsIssued() * 7 + i) % count;
    const subnet = formatCidr({ family: 4, network: range.network + BigInt(k) * 256n, prefix: 24 });
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
  /** The subnet's network address. */
  private readonly network: bigint;
  private nextHost: number;
  private readonly vethsInRoot: string[] = [];
  private destroyed = false;

  private constructor(bridge: string, network: bigint, prefixLength: number, hostAddress: string | undefined, mtu: number, firstHost: number) {
    this.bridge = bridge;
    this.network = network;
    this.prefixLength = prefixLength;
    this.hostAddress = hostAddress;
    this.mtu = mtu;
    this.nextHost = firstHost;
  }

  /** The subnet in CIDR form, e.g. `198.18.7.0/24`. */
  get subnet(): string {
    return formatCidr({ family: 4, network: this.network, prefix: this.prefixLength });
  }

  /** Creates the bridge (up, STP off) and, by default, gives it the subnet's first address. */
  static async create(opts: UnderlayOptions = {}): Promise<Underlay> {
    await cleanupStale();
    installExitHook();
    const subnet = opts.subnet ?? (opts.hostAddress ? await findFreeSubnet() : '192.0.2.0/24');
    const cidr = parseCidr(subnet);
    if (!cidr || cidr.family !== 4 || cidr.prefix < 8 || cidr.prefix > 29) throw new Error(`underlay subnet must be IPv4 /8-/29: ${subnet}`);
    const { network, prefix: prefixLength } = cidr;
    const mtu = opts.mtu ?? 1500;
    const bridge = `wgb${process.pid}n${nextId()}`;
    const hostAddress = opts.hostAddress ? formatIp({ family: 4, value: network + 1n }) : undefined;
    if (hostAddress) {
      const conflicts = await rootNetworkConflicts(formatCidr(cidr));
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
   * eth0) in the node, holding the next free address (or `address`); returns that address (the
   * node's `underlayAddress` when it is its first underlay).
   */
  async attach(node: TestNode, opts: { address?: string; ifname?: string } = {}): Promise<string> {
    if (this.destroyed) throw new Error(`underlay ${this.bridge} is destroyed`);
    const id = nextId();
    const rootSide = `wgv${process.pid}n${id}`;
    const nodeSide = `wgp${process.pid}n${id}`;
    const ifname = opts.ifname ?? 'eth0';
    const address = opts.address ?? formatIp({ family: 4, value: this.network + BigInt(this.nextHost++) });
    const mtu = String(this.mtu);
    await run('ip', ['link', 'add', rootSide, 'mtu', mtu, 'type', 'veth', 'peer', 'name', nodeSide, 'mtu', mtu]);
    this.vethsInRoot.push(rootSide);
    live.links.add(rootSide);
    await run('ip', ['link', 'set', nodeSide, 'netns', node.netns]);
    await run('ip', ['link', 'set', rootSide, 'master', this.bridge, 'up']);
    await node.exec('ip', ['link', 'set', nodeSide, 'name', ifname]);
    await node.exec('ip', ['addr', 'add', `${address}/${this.prefixLength}`, 'dev', ifname]);
    await node.exec('ip', ['link', 'set', ifname, 'up']);
    node.underlayAddress ??= address;
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
