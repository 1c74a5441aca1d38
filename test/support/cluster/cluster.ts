/**
 * An end-to-end test cluster on one machine: a Kubernetes API test server (HTTPS, bearer token)
 * on an underlay bridge (IPv4, dual-stack or IPv6-only), and nodes that are network namespaces
 * with private /run and /etc, each with a cni0 pod bridge and one real `wg-overlay run` process. A
 * node sits on the underlay, or on a network of its own (a location's private network, the inside
 * of a NAT router) and optionally on the underlay as well (its ExternalIP). Used by the e2e tests,
 * the benchmarks and the demo.
 */
import { KubeApiServer, type KubeApiServerOptions, type KubeObject } from '../../kube-api/server.js';
import type { TestProcess } from '../process.js';
import { TestNode } from '../namespaces/netns.js';
import { Underlay } from '../namespaces/underlay.js';
import { addPodBridge, TestPod } from '../namespaces/pods.js';
import { parseDump } from '../../../service/src/host/device.js';
import { formatIp, parseCidr } from '../../../service/src/net/ip.js';
import type { InterfaceStatus, PeerStatus } from '../../../service/src/mesh/observations/device.js';
import { ANNOTATION_OVERLAY_ADDRESS, ANNOTATION_PUBLIC_KEY } from '../../../service/src/mesh/annotations.js';
import { parseSamples, type Sample } from '../monitoring.js';
import { waitFor } from '../wait.js';
import { CLI, REPO_ROOT } from '../paths.js';

export { waitFor };

export { CLI, REPO_ROOT };

/** Options for one node. */
export interface NodeSpec {
  /** PodCIDRs of the Node, either family (default 10.244.<index>.0/24); the pod gets an address in the first of each family. */
  podCIDRs?: string[];
  /** Underlay address (default: the next free one): IPv4, or IPv6 on an IPv6-only underlay. */
  address?: string;
  /** IPv6 underlay address on a dual-stack underlay (default: the next free one). */
  address6?: string;
  /** Default gateways of the node (e.g. a NAT router's inside address on its `network`); default none. */
  gateways?: string[];
  /** Extra INI lines appended to the node's config. */
  config?: string;
  /** Start the daemon at once (default true). */
  start?: boolean;
  /** Create a real pod namespace behind cni0 (default true). */
  pod?: boolean;
  /** Register the Node object in the API (default true). */
  register?: boolean;
  /** Give the node the cluster's shared admin kubeconfig (default true); false: the test writes the node's credentials itself. */
  kubeconfig?: boolean;
  /**
   * The network of the node's InternalIP, its eth0 (default the cluster's underlay, where the API
   * server listens). On another one (from {@link Cluster.addNetwork}) the node gets one route
   * besides its own network, to the API server's address through the root namespace — unless it
   * has `gateways` (e.g. it sits behind a NAT router, nat.ts).
   */
  network?: Underlay;
  /** Also attach the node to the cluster's underlay as eth1, with an address that is its Node's ExternalIP (default false). */
  external?: boolean;
  /** Labels of the Node object besides `kubernetes.io/hostname`. */
  labels?: Record<string, string>;
  /** Annotations of the Node object when it is created. */
  annotations?: Record<string, string>;
}

/** One node of the cluster. */
export interface ClusterNode {
  name: string;
  index: number;
  host: TestNode;
  /** Its underlay address: IPv4, or IPv6 on an IPv6-only underlay (its first InternalIP, on eth0). */
  address: string;
  /** Its IPv6 underlay address, when its underlay has IPv6 (an InternalIP too). */
  address6: string | undefined;
  /** Its ExternalIP on the cluster's underlay (eth1), when it has one. */
  externalAddress: string | undefined;
  podCIDRs: string[];
  /** Labels and annotations its Node object is created with. */
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /**
   * The pod gateway on cni0 and the pod's own address: the first and tenth addresses of the first
   * IPv4 PodCIDR (of the first IPv6 one when there is no IPv4 one).
   */
  pod: TestPod | undefined;
  podIp: string;
  gatewayIp: string;
  /** The pod's and the gateway's IPv6 addresses (in the first IPv6 PodCIDR), when there is one. */
  podIp6: string | undefined;
  gatewayIp6: string | undefined;
  daemon: TestProcess | undefined;
  configText: string;
}

/** An HTTP GET from inside a node (its own loopback), with Node's http module. */
export async function httpGet(host: TestNode, url: string): Promise<{ status: number; body: string }> {
  const script = [
    `require('http').get(${JSON.stringify(url)}, (r) => {`,
    "  let b = ''; r.on('data', (d) => b += d);",
    "  r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, body: b })));",
    "}).on('error', (e) => { console.error(e.message); process.exit(1); });",
  ].join('\n');
  return JSON.parse((await host.exec('node', ['-e', script])).stdout) as { status: number; body: string };
}

/** A whole test cluster. */
export class Cluster {
  readonly nodes = new Map<string, ClusterNode>();
  private readonly networks: Underlay[] = [];
  private nextIndex = 1;

  private constructor(
    readonly api: KubeApiServer,
    readonly underlay: Underlay,
    readonly kubeconfigText: string,
    readonly baseConfig: string,
  ) {}

  /**
   * Starts the API server (with `api` options, e.g. admission) on a fresh underlay (no nodes yet):
   * IPv4 by default, dual-stack with `underlay.ipv6`, IPv6-only with `ipv4: false` too. The API
   * server listens on the bridge's IPv4 address, or its IPv6 one on an IPv6-only underlay.
   */
  static async create(
    opts: {
      baseConfig?: string;
      api?: Omit<KubeApiServerOptions, 'host' | 'port' | 'tls' | 'token'>;
      underlay?: { ipv4?: boolean; ipv6?: boolean };
    } = {},
  ): Promise<Cluster> {
    const underlay = await Underlay.create({
      hostAddress: true,
      ipv4: opts.underlay?.ipv4 ?? true,
      subnet6: opts.underlay?.ipv6 ?? false,
    });
    const api = new KubeApiServer({
      ...opts.api,
      tls: true,
      token: 'e2e-token',
      host: (underlay.hostAddress ?? underlay.hostAddress6)!,
      port: 0,
    });
    try {
      await api.start();
    } catch (err) {
      await underlay.destroy();
      throw err;
    }
    const kubeconfigText = JSON.stringify(api.kubeconfig({ user: 'wg-overlay' }));
    return new Cluster(api, underlay, kubeconfigText, opts.baseConfig ?? '');
  }

  /** The third octet of the underlay, which the seed rule carries into overlay addresses. */
  get subnetOctet(): number {
    return Number(this.underlay.hostAddress!.split('.')[2]);
  }

  /**
   * Adds a network besides the cluster's underlay (e.g. a location's private network), destroyed
   * with the cluster. Its bridge has an address in the root namespace, where the API server
   * listens: its nodes reach the API server through it, and nothing beyond their own network.
   */
  async addNetwork(): Promise<Underlay> {
    const net = await Underlay.create({ hostAddress: true });
    this.networks.push(net);
    return net;
  }

  /** Adds a node: namespace, underlay addresses, pod bridge and pod, Node object, config, daemon. */
  async addNode(name: string, spec: NodeSpec = {}): Promise<ClusterNode> {
    const index = this.nextIndex++;
    const host = await TestNode.create({ label: name });
    const network = spec.network ?? this.underlay;
    const address = await network.attach(host, {
      ...(spec.address ? { address: spec.address } : {}),
      ...(spec.address6 ? { address6: spec.address6 } : {}),
    });
    const address6 = host.underlayAddress6;
    const externalAddress = spec.external ? await this.underlay.attach(host, { ifname: 'eth1' }) : undefined;
    for (const gw of spec.gateways ?? []) await host.exec('ip', ['route', 'add', 'default', 'via', gw]);
    if (network !== this.underlay && !externalAddress && !spec.gateways?.length) {
      if (!network.hostAddress)
        throw new Error(`node ${name}: its network ${network.bridge} has no gateway to the API server`);
      await host.exec('ip', ['route', 'add', `${this.underlay.hostAddress!}/32`, 'via', network.hostAddress]);
    }
    const podCIDRs = spec.podCIDRs ?? [`10.244.${index}.0/24`];
    const v4 = podNet(podCIDRs, 4);
    const v6 = podNet(podCIDRs, 6);
    await addPodBridge(host, {
      ...(v4 ? { address: `${v4.gateway}/${v4.prefix}` } : {}),
      ...(v6 ? { address6: `${v6.gateway}/${v6.prefix}` } : {}),
    });
    const pod =
      spec.pod === false
        ? undefined
        : await TestPod.create(host, {
            ...(v4 ? { address: `${v4.pod}/${v4.prefix}`, gateway: v4.gateway } : {}),
            ...(v6 ? { address6: `${v6.pod}/${v6.prefix}`, gateway6: v6.gateway } : {}),
            bridge: 'cni0',
            label: `${name}/pod`,
          });
    const first = (v4 ?? v6)!;
    const configText = [
      '[kubernetes]',
      'kubeconfig = /etc/wg-overlay/kubeconfig',
      `node_name = ${name}`,
      '[state]',
      'dir = /etc/wg-overlay/state',
      '[log]',
      'level = debug',
      this.baseConfig,
      spec.config ?? '',
    ].join('\n');
    await host.exec('mkdir', ['-p', '/etc/wg-overlay', '/etc/wireguard']);
    if (spec.kubeconfig !== false) await host.writeFile('/etc/wg-overlay/kubeconfig', this.kubeconfigText, 0o600);
    await host.writeFile('/etc/wg-overlay/wg-overlay.conf', mergeIni(configText), 0o644);
    const node: ClusterNode = {
      name,
      index,
      host,
      address,
      address6,
      externalAddress,
      podCIDRs,
      labels: spec.labels ?? {},
      annotations: spec.annotations ?? {},
      pod,
      podIp: first.pod,
      gatewayIp: first.gateway,
      podIp6: v6?.pod,
      gatewayIp6: v6?.gateway,
      daemon: undefined,
      configText,
    };
    this.nodes.set(name, node);
    if (spec.register !== false) this.registerNode(node);
    if (spec.start !== false) await this.startDaemon(name);
    return node;
  }

  /** Creates the Node object for a cluster node (what kubelet would do). */
  registerNode(node: ClusterNode): KubeObject {
    return this.api.createNode({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: node.name,
        labels: { 'kubernetes.io/hostname': node.name, ...node.labels },
        annotations: { ...node.annotations },
      },
      spec: { podCIDR: node.podCIDRs[0], podCIDRs: node.podCIDRs },
      status: {
        addresses: [
          ...[...new Set([node.address, ...(node.address6 ? [node.address6] : [])])].map((address) => ({
            type: 'InternalIP',
            address,
          })),
          ...(node.externalAddress ? [{ type: 'ExternalIP', address: node.externalAddress }] : []),
          { type: 'Hostname', address: node.name },
        ],
      },
    });
  }

  /** Starts (or restarts) the node's daemon. */
  async startDaemon(name: string, env: Record<string, string> = {}): Promise<TestProcess> {
    const node = this.must(name);
    if (node.daemon?.running) throw new Error(`daemon on ${name} is already running`);
    node.daemon = node.host.spawn('node', [CLI, 'run', '--config', '/etc/wg-overlay/wg-overlay.conf'], { env });
    return node.daemon;
  }

  /** Stops the node's daemon with a signal and returns its output. */
  async stopDaemon(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<string> {
    const node = this.must(name);
    if (!node.daemon) return '';
    await node.daemon.stop(signal, 10_000);
    return node.daemon.output();
  }

  /** Rewrites a node's config file (the daemon reloads it on change). */
  async writeConfig(name: string, extra: string): Promise<void> {
    const node = this.must(name);
    node.configText = `${node.configText}\n${extra}`;
    await node.host.writeFile('/etc/wg-overlay/wg-overlay.conf', mergeIni(node.configText), 0o644);
  }

  /** The node's WireGuard device as `wg show wg0 dump` reports it; undefined when missing. */
  async device(name: string, iface = 'wg0'): Promise<InterfaceStatus | undefined> {
    const r = await this.must(name).host.exec('wg', ['show', iface, 'dump'], { allowFailure: true });
    return r.exitCode === 0 ? parseDump(iface, r.stdout) : undefined;
  }

  /** What node `name`'s device holds for its peer `of` (undefined when either is missing). */
  async peer(name: string, of: string): Promise<PeerStatus | undefined> {
    const key = this.publicKey(of);
    return (await this.device(name))?.peers.find((p) => p.publicKey === key);
  }

  /** Node `name`'s metrics as its daemon serves them on its loopback (`[metrics] listen`'s default). */
  async metricsText(name: string): Promise<string> {
    const r = await httpGet(this.must(name).host, 'http://127.0.0.1:9586/metrics');
    if (r.status !== 200) throw new Error(`${name}: /metrics answered ${r.status}: ${r.body}`);
    return r.body;
  }

  /** The samples of node `name`'s metrics. */
  async metrics(name: string): Promise<Sample[]> {
    return parseSamples(await this.metricsText(name));
  }

  /** The daemon's own routes (proto 77) in the node, as `ip -j route` reports them (a host route's dst without its length). */
  async ownRoutes(name: string): Promise<Array<{ dst: string; dev?: string; gateway?: string }>> {
    const out: Array<{ dst: string; dev?: string; gateway?: string }> = [];
    for (const fam of ['-4', '-6']) {
      const r = await this.must(name).host.exec('ip', ['-j', fam, 'route', 'show', 'proto', '77']);
      out.push(...(JSON.parse(r.stdout || '[]') as Array<{ dst: string; dev?: string; gateway?: string }>));
    }
    return out;
  }

  /** Destinations of the daemon's own routes (proto 77) in the node. */
  async routes(name: string): Promise<string[]> {
    return (await this.ownRoutes(name)).map((x) => x.dst).sort();
  }

  /** Holder and transition count of a coordination.k8s.io Lease in the API, undefined when there is none. */
  lease(name: string, namespace = 'wg-overlay'): { holder: string | undefined; transitions: number } | undefined {
    const spec = this.api.resource('leases', 'coordination.k8s.io').get(name, namespace)?.spec as
      { holderIdentity?: string; leaseTransitions?: number } | undefined;
    return spec && { holder: spec.holderIdentity, transitions: spec.leaseTransitions ?? 0 };
  }

  /** The annotations a node published. */
  annotations(name: string): Record<string, string> {
    return (
      (this.api.getNode(name)?.metadata as { annotations?: Record<string, string> } | undefined)?.annotations ?? {}
    );
  }

  /** The overlay address a node published. */
  overlayAddress(name: string): string | undefined {
    return this.annotations(name)[ANNOTATION_OVERLAY_ADDRESS];
  }

  /** The public key a node published. */
  publicKey(name: string): string | undefined {
    return this.annotations(name)[ANNOTATION_PUBLIC_KEY];
  }

  /** Waits until every listed node has every other listed node as a peer with its routes. */
  async waitForMesh(names: string[] = [...this.nodes.keys()], timeoutMs = 20_000): Promise<void> {
    await waitFor(
      `a full mesh of ${names.join(', ')}`,
      async () => {
        for (const n of names) {
          const dev = await this.device(n);
          if (!dev) return false;
          const routes = await this.routes(n);
          for (const other of names) {
            if (other === n) continue;
            const key = this.publicKey(other);
            const peer = dev.peers.find((p) => p.publicKey === key);
            if (!key || !peer) return false;
            for (const c of this.must(other).podCIDRs) {
              if (!routes.includes(c) || !peer.allowedIPs.includes(c)) return false;
            }
          }
          const keys = new Set(names.filter((o) => o !== n).map((o) => this.publicKey(o)));
          if (dev.peers.some((p) => !keys.has(p.publicKey))) return false;
        }
        return true;
      },
      timeoutMs,
      100,
    );
  }

  /** Removes a node: daemon stopped, namespace destroyed, Node object deleted. */
  async removeNode(name: string, opts: { deleteObject?: boolean } = {}): Promise<void> {
    const node = this.must(name);
    await node.daemon?.stop('SIGTERM', 5_000).catch(() => undefined);
    await node.host.destroy();
    if (opts.deleteObject !== false && this.api.getNode(name)) this.api.deleteNode(name);
    this.nodes.delete(name);
  }

  /** Stops every daemon, destroys every namespace and the underlay, stops the API server. */
  async destroy(): Promise<void> {
    for (const n of this.nodes.values()) await n.daemon?.stop('SIGTERM', 3_000).catch(() => undefined);
    for (const n of this.nodes.values()) await n.host.destroy().catch(() => undefined);
    this.nodes.clear();
    for (const net of this.networks.splice(0)) await net.destroy().catch(() => undefined);
    await this.underlay.destroy().catch(() => undefined);
    await this.api.stop().catch(() => undefined);
  }

  /** The node, or an error naming it. */
  must(name: string): ClusterNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name} in the test cluster`);
    return n;
  }
}

/** The pod network of one family among PodCIDRs: its gateway (first address), the pod (tenth, 0x10 in IPv6) and the prefix length. */
function podNet(
  podCIDRs: readonly string[],
  family: 4 | 6,
): { gateway: string; pod: string; prefix: number } | undefined {
  const c = podCIDRs.map((t) => parseCidr(t)).find((x) => x?.family === family);
  if (!c) return undefined;
  return {
    gateway: formatIp({ family, value: c.network + 1n }),
    pod: formatIp({ family, value: c.network + (family === 4 ? 10n : 0x10n) }),
    prefix: c.prefix,
  };
}

/** Merges repeated sections of INI text (later keys win) so tests can append settings freely. */
export function mergeIni(text: string): string {
  const sections = new Map<string, Map<string, string>>();
  let cur: Map<string, string> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      cur = sections.get(sec[1]!) ?? new Map();
      sections.set(sec[1]!, cur);
      continue;
    }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (kv && cur) cur.set(kv[1]!, kv[2]!);
  }
  return (
    [...sections].map(([s, kv]) => [`[${s}]`, ...[...kv].map(([k, v]) => `${k} = ${v}`)].join('\n')).join('\n\n') + '\n'
  );
}
