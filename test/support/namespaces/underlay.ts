/**
 * Networks between test nodes: an {@link Underlay} is a bridge in the root namespace that nodes
 * join through veth pairs, with IPv4, IPv6 or both (optionally with addresses of its own, so the
 * test process can reach the nodes), and a {@link TestNetwork} is the usual start of an
 * end-to-end test, several nodes on one underlay. Also the checks that keep an underlay from
 * clashing with the host's own networks ({@link rootNetworkConflicts}, {@link findFreeSubnet},
 * {@link findFreeSubnet6}).
 */
import { randomBytes } from 'node:crypto';
import {
  cidrSize,
  cidrsOverlap,
  formatCidr,
  formatIp,
  parseCidr,
  parseIp,
  type Cidr,
} from '../../../service/src/net/ip.js';
import { cleanupStale, idsIssued, installExitHook, live, nextId, TestNode } from './netns.js';
import { run } from '../process.js';

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
  /** Host part of the first node's address (default 11: 192.0.2.11, .12, ...; in IPv6 the same digits: ::11, ::12, ...). */
  firstHost?: number;
  /** Give the underlay IPv4 addresses (default true; false with `subnet6` for an IPv6-only underlay). */
  ipv4?: boolean;
  /**
   * IPv6 subnet of the underlay (a /64 to /120 inside 2001:db8::/32), or true for a free one from
   * {@link findFreeSubnet6}; default none (IPv4 only). With `hostAddress` the bridge gets its first
   * address too. Addresses are added without duplicate address detection, usable at once.
   */
  subnet6?: string | boolean;
}

/** Parses a prefix as `ip` prints it, `addr[/len]` (no length: a host prefix); undefined when it is not one. */
function parsePrefix(text: string): Cidr | undefined {
  const ip = parseIp(text.split('/')[0]!);
  if (!ip) return undefined;
  return parseCidr(text.includes('/') ? text : `${text}/${ip.family === 4 ? 32 : 128}`);
}

/** Addresses and (non-default) routes of the root namespace that overlap `subnet` (IPv4 or IPv6), as text. */
export async function rootNetworkConflicts(subnet: string): Promise<string[]> {
  const want = parsePrefix(subnet);
  if (!want) throw new Error(`not a subnet: ${subnet}`);
  const fam = want.family === 4 ? '-4' : '-6';
  const found: string[] = [];
  const addrs = await run('ip', [fam, '-o', 'addr', 'show']);
  for (const line of addrs.stdout.split('\n')) {
    const m = /^\d+:\s+(\S+)\s+inet6?\s+(\S+)/.exec(line);
    if (!m) continue;
    const have = parsePrefix(m[2]!);
    if (have && cidrsOverlap(have, want)) found.push(`address ${m[2]} on ${m[1]}`);
  }
  const routes = await run('ip', [fam, 'route', 'show', 'table', 'all']);
  for (const line of routes.stdout.split('\n')) {
    const m =
      /^(?:(?:unicast|local|broadcast|anycast|multicast|blackhole|unreachable|prohibit|throw)\s+)?([0-9a-f.:]+(?:\/\d+)?)\s/.exec(
        line,
      );
    if (!m) continue;
    const have = parsePrefix(m[1]!);
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

/**
 * Finds a /64 in the documentation range 2001:db8::/32 (2001:db8:<n>::/64, n from the pid, so
 * concurrent runs pick different ones) that nothing in the root namespace uses: a safe IPv6
 * subnet for an underlay with `hostAddress: true`.
 */
export async function findFreeSubnet6(): Promise<string> {
  const count = 0xff00;
  for (let i = 0; i < count; i++) {
    const k = 0x100 + ((process.pid + idsIssued() * 7 + i) % count);
    const subnet = `2001:db8:${k.toString(16)}::/64`;
    if ((await rootNetworkConflicts(subnet)).length === 0) return subnet;
  }
  throw new Error('no free /64 left in 2001:db8::/32 in the root namespace');
}

/** One address family of an underlay: its subnet, and the bridge's own address when it has one. */
interface Family {
  family: 4 | 6;
  network: bigint;
  prefixLength: number;
  hostAddress: string | undefined;
}

/** The address with host part `host` in a subnet (IPv6: the digits read as hex, so host 11 is ::11). */
function hostIn(family: 4 | 6, network: bigint, host: number): string {
  return formatIp({ family, value: network + (family === 4 ? BigInt(host) : BigInt(`0x${host}`)) });
}

/** A bridge in the root namespace joining nodes through veth pairs (each node's side is `eth0`), and VMs through tap devices. */
export class Underlay {
  /** Bridge name (`wgb<pid>n<n>`). */
  readonly bridge: string;
  /** Prefix length of the IPv4 subnet (of the IPv6 one on an IPv6-only underlay). */
  readonly prefixLength: number;
  /** The bridge's own IPv4 address, when it has one (the first address of the subnet). */
  readonly hostAddress: string | undefined;
  /** The bridge's own IPv6 address, when it has one (the first address of the IPv6 subnet). */
  readonly hostAddress6: string | undefined;
  /** Link MTU. */
  readonly mtu: number;
  private readonly v4: Family | undefined;
  private readonly v6: Family | undefined;
  private nextHost: number;
  private readonly vethsInRoot: string[] = [];
  private destroyed = false;

  private constructor(bridge: string, v4: Family | undefined, v6: Family | undefined, mtu: number, firstHost: number) {
    this.bridge = bridge;
    this.v4 = v4;
    this.v6 = v6;
    this.prefixLength = (v4 ?? v6)!.prefixLength;
    this.hostAddress = v4?.hostAddress;
    this.hostAddress6 = v6?.hostAddress;
    this.mtu = mtu;
    this.nextHost = firstHost;
  }

  /** The subnets of the underlay (IPv4 first), as CIDR text. */
  get subnets(): string[] {
    return [this.v4, this.v6]
      .filter((f): f is Family => !!f)
      .map((f) => formatCidr({ family: f.family, network: f.network, prefix: f.prefixLength }));
  }

  /** The IPv4 subnet in CIDR form, e.g. `198.18.7.0/24` (undefined on an IPv6-only underlay). */
  get subnet(): string | undefined {
    return this.subnets.find((c) => !c.includes(':'));
  }

  /** Creates the bridge (up, STP off) and, with `hostAddress`, gives it the first address of each subnet. */
  static async create(opts: UnderlayOptions = {}): Promise<Underlay> {
    await cleanupStale();
    installExitHook();
    const families = await Underlay.families(opts);
    const mtu = opts.mtu ?? 1500;
    const bridge = `wgb${process.pid}n${nextId()}`;
    await run('ip', ['link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    live.links.add(bridge);
    const u = new Underlay(bridge, families.v4, families.v6, mtu, opts.firstHost ?? 11);
    try {
      // A bridge without an address of its own takes the lowest MAC of its ports, so attaching a
      // node could change it under the ARP caches of the others: their packets to the host
      // address (the API server) would be lost until the entries expire. Pin it.
      const mac = `02:${[...randomBytes(5)].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
      await run('ip', ['link', 'set', bridge, 'address', mac, 'mtu', String(mtu), 'up']);
      if (u.hostAddress)
        await run('ip', ['addr', 'add', `${u.hostAddress}/${families.v4!.prefixLength}`, 'dev', bridge]);
      if (u.hostAddress6)
        await run('ip', ['addr', 'add', `${u.hostAddress6}/${families.v6!.prefixLength}`, 'dev', bridge, 'nodad']);
    } catch (err) {
      await u.destroy();
      throw err;
    }
    return u;
  }

  /** The subnets of an underlay from its options, checked against the root namespace when the bridge gets addresses. */
  private static async families(opts: UnderlayOptions): Promise<{ v4: Family | undefined; v6: Family | undefined }> {
    const check = async (subnet: string): Promise<void> => {
      const conflicts = opts.hostAddress ? await rootNetworkConflicts(subnet) : [];
      if (conflicts.length > 0) {
        throw new Error(
          `underlay subnet ${subnet} cannot get a host address: the root namespace already uses it ` +
            `(${conflicts.join('; ')}); pick another subnet, e.g. from findFreeSubnet()`,
        );
      }
    };
    let v4: Family | undefined;
    if (opts.ipv4 !== false) {
      const subnet = opts.subnet ?? (opts.hostAddress ? await findFreeSubnet() : '192.0.2.0/24');
      const cidr = parseCidr(subnet);
      if (!cidr || cidr.family !== 4 || cidr.prefix < 8 || cidr.prefix > 29)
        throw new Error(`underlay subnet must be IPv4 /8-/29: ${subnet}`);
      await check(formatCidr(cidr));
      v4 = {
        family: 4,
        network: cidr.network,
        prefixLength: cidr.prefix,
        hostAddress: opts.hostAddress ? formatIp({ family: 4, value: cidr.network + 1n }) : undefined,
      };
    }
    let v6: Family | undefined;
    if (opts.subnet6) {
      const subnet = opts.subnet6 === true ? await findFreeSubnet6() : opts.subnet6;
      const cidr = parseCidr(subnet);
      const doc = parseCidr('2001:db8::/32')!;
      if (!cidr || cidr.family !== 6 || cidr.prefix < 64 || cidr.prefix > 120 || !cidrsOverlap(cidr, doc))
        throw new Error(`IPv6 underlay subnet must be a /64-/120 in 2001:db8::/32: ${subnet}`);
      await check(formatCidr(cidr));
      v6 = {
        family: 6,
        network: cidr.network,
        prefixLength: cidr.prefix,
        hostAddress: opts.hostAddress ? formatIp({ family: 6, value: cidr.network + 1n }) : undefined,
      };
    }
    if (!v4 && !v6) throw new Error('an underlay needs IPv4 or IPv6 (ipv4: false needs subnet6)');
    return { v4, v6 };
  }

  /**
   * Connects a node: a veth pair with one end on the bridge and the other as `ifname` (default
   * eth0) in the node, holding the next free address of each family (or `address` / `address6`);
   * returns the node's IPv4 address (its IPv6 one on an IPv6-only underlay). On the node's first
   * underlay, that is its `underlayAddress`, and the IPv6 one its `underlayAddress6`.
   */
  async attach(node: TestNode, opts: { address?: string; address6?: string; ifname?: string } = {}): Promise<string> {
    if (this.destroyed) throw new Error(`underlay ${this.bridge} is destroyed`);
    const id = nextId();
    const rootSide = `wgv${process.pid}n${id}`;
    const nodeSide = `wgp${process.pid}n${id}`;
    const ifname = opts.ifname ?? 'eth0';
    // The next host number is used up only when some address is not given.
    let host: number | undefined;
    const next = (): number => (host ??= this.nextHost++);
    const address = this.v4 ? (opts.address ?? hostIn(4, this.v4.network, next())) : undefined;
    const address6 = this.v6 ? (opts.address6 ?? hostIn(6, this.v6.network, next())) : undefined;
    const mtu = String(this.mtu);
    await run('ip', ['link', 'add', rootSide, 'mtu', mtu, 'type', 'veth', 'peer', 'name', nodeSide, 'mtu', mtu]);
    this.vethsInRoot.push(rootSide);
    live.links.add(rootSide);
    await run('ip', ['link', 'set', nodeSide, 'netns', node.netns]);
    await run('ip', ['link', 'set', rootSide, 'master', this.bridge, 'up']);
    await node.exec('ip', ['link', 'set', nodeSide, 'name', ifname]);
    if (address) await node.exec('ip', ['addr', 'add', `${address}/${this.v4!.prefixLength}`, 'dev', ifname]);
    if (address6)
      await node.exec('ip', ['addr', 'add', `${address6}/${this.v6!.prefixLength}`, 'dev', ifname, 'nodad']);
    await node.exec('ip', ['link', 'set', ifname, 'up']);
    if (node.underlayAddress === undefined) {
      node.underlayAddress = address ?? address6;
      node.underlayAddress6 = address6;
    }
    return (address ?? address6)!;
  }

  /** The next free IPv4 node address of the subnet (without prefix length), for a node this class does not attach itself. */
  allocateAddress(): string {
    if (!this.v4) throw new Error(`underlay ${this.bridge} has no IPv4 subnet`);
    return hostIn(4, this.v4.network, this.nextHost++);
  }

  /**
   * Adds a tap device on the bridge (up, the underlay's MTU), e.g. for a qemu VM's network card
   * (`-netdev tap,ifname=<it>,script=no,downscript=no`); removed with the underlay. Returns its name.
   */
  async attachTap(): Promise<string> {
    if (this.destroyed) throw new Error(`underlay ${this.bridge} is destroyed`);
    const tap = `wgv${process.pid}n${nextId()}`;
    await run('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    this.vethsInRoot.push(tap);
    live.links.add(tap);
    await run('ip', ['link', 'set', tap, 'mtu', String(this.mtu), 'master', this.bridge, 'up']);
    return tap;
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
