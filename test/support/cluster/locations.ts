/**
 * Test clusters with locations (issue 12): each location is a private network of its own (its
 * members' InternalIPs); the members that other locations can dial ("reachable") also sit on the
 * cluster's shared underlay, whose address is their ExternalIP and their endpoint; the others reach
 * only the API server. Also what every node should have applied for given leaders, so a test can
 * wait for a topology and say exactly what differs. Used by the e2e tests and the graph script.
 */
import { leaseName } from '../../../service/src/kube/location-leases.js';
import { KILO_LOCATION } from '../../../service/src/mesh/annotations.js';
import { Cluster, waitFor, type ClusterNode } from './cluster.js';
import type { Underlay } from '../namespaces/underlay.js';

/** The Node label that names a location by default (`[mesh] location_label`). */
export const LOCATION_LABEL = 'topology.kubernetes.io/region';

/** One location of a test cluster. */
export interface LocationSpec {
  name: string;
  /** How its Nodes say where they are: the default location label, or Kilo's location annotation. */
  by: 'label' | 'kilo';
  /** Its members, oldest first, and whether other locations can dial each one. */
  nodes: Array<{ name: string; reachable: boolean }>;
}

/**
 * Two locations: east (named by the location label) with two reachable nodes and a private-only
 * one, west (named by Kilo's annotation) with one of each. The senior reachable nodes, east-1 and
 * west-1, lead; east-2 can take over east.
 */
export const TWO_LOCATIONS: readonly LocationSpec[] = [
  {
    name: 'east',
    by: 'label',
    nodes: [
      { name: 'east-1', reachable: true },
      { name: 'east-2', reachable: true },
      { name: 'east-3', reachable: false },
    ],
  },
  {
    name: 'west',
    by: 'kilo',
    nodes: [
      { name: 'west-1', reachable: true },
      { name: 'west-2', reachable: false },
    ],
  },
];

/** Options of {@link LocationCluster.create}. */
export interface LocationClusterOptions {
  granularity: 'location' | 'cross';
  /** Extra INI lines for every node. */
  config?: string;
  /** Start the daemons (default true); false: call {@link LocationCluster.start}. */
  start?: boolean;
}

/** Options of {@link LocationCluster.differences}. */
export interface TopologyCheck {
  /** `[mesh] local_routes` of the nodes (default true). */
  localRoutes?: boolean;
  /** Nodes not to check (e.g. one that is down). */
  skip?: readonly string[];
}

/** A route as a test expects it: `dst` (with length) through a gateway or a device. */
interface WantRoute {
  dst: string;
  via: string;
}

/** A cluster whose nodes are grouped into locations, each on a private network of its own. */
export class LocationCluster {
  private constructor(
    readonly cluster: Cluster,
    readonly locations: readonly LocationSpec[],
    /** The private network of each location, by name. */
    readonly networks: ReadonlyMap<string, Underlay>,
  ) {}

  /**
   * Creates the API server, one private network per location and the nodes (created in parallel,
   * registered oldest first), each configured with the granularity and `[mesh] reachable` = the
   * shared underlay; reachable nodes publish `endpoint = external`, the others `internal`.
   */
  static async create(locations: readonly LocationSpec[], opts: LocationClusterOptions): Promise<LocationCluster> {
    const cluster = await Cluster.create();
    try {
      const networks = new Map<string, Underlay>();
      for (const l of locations) networks.set(l.name, await cluster.addNetwork());
      const base = `[mesh]\ngranularity = ${opts.granularity}\nreachable = ${cluster.underlay.subnet}\n${opts.config ?? ''}`;
      const specs = locations.flatMap((l) => l.nodes.map((n) => ({ l, n })));
      const nodes = await Promise.all(
        specs.map(({ l, n }) =>
          cluster.addNode(n.name, {
            network: networks.get(l.name)!,
            external: n.reachable,
            ...(l.by === 'label'
              ? { labels: { [LOCATION_LABEL]: l.name } }
              : { annotations: { [KILO_LOCATION]: l.name } }),
            config: `${base}\n[wireguard]\nendpoint = ${n.reachable ? 'external' : 'internal'}`,
            register: false,
            start: false,
          }),
        ),
      );
      for (const node of nodes) cluster.registerNode(node);
      const lc = new LocationCluster(cluster, locations, networks);
      if (opts.start !== false) await lc.start();
      return lc;
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
  }

  /** Starts every node's daemon. */
  async start(): Promise<void> {
    for (const name of this.cluster.nodes.keys()) await this.cluster.startDaemon(name);
  }

  /** The location of a node. */
  locationOf(name: string): LocationSpec {
    const l = this.locations.find((x) => x.nodes.some((n) => n.name === name));
    if (!l) throw new Error(`${name} is in no location`);
    return l;
  }

  /** The cluster nodes of a location, oldest first. */
  members(location: string): ClusterNode[] {
    const l = this.locations.find((x) => x.name === location);
    if (!l) throw new Error(`no location ${location}`);
    return l.nodes.map((n) => this.cluster.must(n.name));
  }

  /** The holder of a location's leader Lease and its transition count, as the API server has them. */
  lease(location: string): { holder: string | undefined; transitions: number } | undefined {
    return this.cluster.lease(leaseName(`location:${location}`));
  }

  /** The endpoint other nodes should dial for a node: its ExternalIP when it has one, else its InternalIP. */
  endpointOf(name: string): string {
    const n = this.cluster.must(name);
    return `${n.externalAddress ?? n.address}:51820`;
  }

  /**
   * What differs, on every node (but `opts.skip`), from the peers and routes that `granularity`
   * and `leaders` (location name → leader; unused for `cross`) call for; empty when every node
   * has them. Peers must match exactly (by key and endpoint, carrying their members' pods and
   * overlay addresses); the listed routes must exist with that gateway or device, and with
   * `localRoutes` = false no route may lead to a pod network of the own location.
   */
  async differences(
    granularity: 'location' | 'cross',
    leaders: Readonly<Record<string, string>>,
    opts: TopologyCheck = {},
  ): Promise<string[]> {
    const problems: string[] = [];
    const c = this.cluster;
    const localRoutes = opts.localRoutes ?? true;
    for (const self of c.nodes.values()) {
      if (opts.skip?.includes(self.name)) continue;
      const mine = this.locationOf(self.name);
      const leader = granularity === 'location' ? c.must(leaders[mine.name]!) : undefined;
      const overlay32 = (n: ClusterNode): string => `${c.overlayAddress(n.name)}/32`;
      // peer name → the ranges it must carry
      const wantPeers = new Map<string, string[]>();
      const wantRoutes: WantRoute[] = [];
      const unwanted: string[] = [];
      for (const m of this.members(mine.name)) {
        if (m.name === self.name) continue;
        wantRoutes.push({ dst: overlay32(m), via: m.address });
        for (const p of m.podCIDRs) {
          if (localRoutes) wantRoutes.push({ dst: p, via: m.address });
          else unwanted.push(p);
        }
      }
      for (const other of this.locations) {
        if (other.name === mine.name) continue;
        const members = this.members(other.name);
        if (granularity === 'cross') {
          for (const m of members) {
            wantPeers.set(m.name, [overlay32(m), ...m.podCIDRs]);
            for (const p of m.podCIDRs) wantRoutes.push({ dst: p, via: 'wg0' });
          }
        } else if (self === leader) {
          wantPeers.set(
            leaders[other.name]!,
            members.flatMap((m) => [overlay32(m), ...m.podCIDRs]),
          );
          for (const m of members) for (const p of m.podCIDRs) wantRoutes.push({ dst: p, via: 'wg0' });
        } else {
          for (const m of members)
            for (const dst of [overlay32(m), ...m.podCIDRs]) wantRoutes.push({ dst, via: leader!.address });
        }
      }
      const dev = await c.device(self.name);
      if (!dev) {
        problems.push(`${self.name}: no wg0`);
        continue;
      }
      const keyOf = new Map([...c.nodes.keys()].map((n) => [c.publicKey(n), n]));
      const have = dev.peers.map((p) => keyOf.get(p.publicKey) ?? `unknown key`);
      const want = [...wantPeers.keys()];
      if (have.slice().sort().join() !== want.slice().sort().join())
        problems.push(`${self.name}: peers [${have.join(', ')}], want [${want.join(', ')}]`);
      for (const p of dev.peers) {
        const name = keyOf.get(p.publicKey);
        const ranges = name ? wantPeers.get(name) : undefined;
        if (!name || !ranges) continue;
        if (p.endpoint !== this.endpointOf(name))
          problems.push(`${self.name}: peer ${name} at ${p.endpoint ?? '(none)'}, want ${this.endpointOf(name)}`);
        const missing = ranges.filter((r) => !p.allowedIPs.includes(r));
        if (missing.length > 0) problems.push(`${self.name}: peer ${name} lacks allowed IPs ${missing.join(' ')}`);
      }
      const routes = new Map(
        (await c.ownRoutes(self.name)).map((r) => [
          r.dst.includes('/') ? r.dst : `${r.dst}/32`,
          r.gateway ?? r.dev ?? '?',
        ]),
      );
      for (const r of wantRoutes) {
        const got = routes.get(r.dst);
        if (got !== r.via)
          problems.push(`${self.name}: route ${r.dst} ${got ? `via ${got}` : 'missing'}, want via ${r.via}`);
      }
      for (const dst of unwanted)
        if (routes.has(dst)) problems.push(`${self.name}: route ${dst} via ${routes.get(dst)!} should not exist`);
    }
    return problems;
  }

  /** Waits until {@link differences} finds none; the timeout error lists what still differs. */
  async waitForTopology(
    granularity: 'location' | 'cross',
    leaders: Readonly<Record<string, string>>,
    opts: TopologyCheck & { timeoutMs?: number } = {},
  ): Promise<void> {
    await waitFor(
      `the ${granularity} topology with leaders ${JSON.stringify(leaders)}`,
      async () => {
        const problems = await this.differences(granularity, leaders, opts);
        if (problems.length > 0) throw new Error(problems.join('; '));
        return true;
      },
      opts.timeoutMs ?? 20_000,
      100,
    );
  }

  /** Stops every daemon, destroys every namespace and network, stops the API server. */
  async destroy(): Promise<void> {
    await this.cluster.destroy();
  }
}
