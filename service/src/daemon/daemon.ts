/**
 * The daemon object: prepares what must be there before anything runs (config, key, kubeconfig,
 * systemd), builds its parts — D-Bus link, ip co-process, wg-quick file, status writer, metrics
 * endpoint, reconcile loop, Node and external-peer sources, config reloader, interface monitor,
 * resync timer — starts them in that order and stops them in reverse, leaving the mesh up.
 */
import type { Config, LoadedConfig } from '../config/config.js';
import { EXIT_CONFIG, EXIT_FAILURE } from '../exit-status.js';
import type { CommandRunner } from '../exec/runner.js';
import { readDevice } from '../host/device.js';
import { FORWARDING_OFF_WARNING } from '../host/forwarding.js';
import { InterfaceOwner } from '../host/interface-owner.js';
import { OwnChanges } from '../host/own-changes.js';
import type { IpBatch } from '../host/ip-batch.js';
import { PeerAdapter } from '../host/peer-adapter.js';
import { RouteAdapter } from '../host/route-adapter.js';
import { KubeconfigError } from '../kube/kubeconfig.js';
import { LocationLeases, type LeaseApi } from '../kube/location-leases.js';
import type { NodePublisher } from '../kube/node-publisher.js';
import type { NodeSource } from '../kube/node-source.js';
import type { ExternalPeerSource } from '../kube/external-peer-source.js';
import { describeError, type Logger } from '../log/logger.js';
import type { InterfaceStatus } from '../mesh/observations/device.js';
import type { ExternalPeer, MeshNode } from '../mesh/types.js';
import { DaemonMetrics, evaluateHealth, type HealthResult } from '../metrics/metrics.js';
import type { startMetricsServer } from '../metrics/server.js';
import { buildSnapshot, type StatusSnapshot } from '../status/snapshot.js';
import type { Notifier } from '../systemd/notify.js';
import type { UnitController } from '../systemd/units.js';
import { CachedRead } from '../util/cached-read.js';
import { formatMs } from '../util/duration.js';
import { VERSION } from '../version.js';
import { isDnsName, parseIp } from '../net/ip.js';
import type { LoadedKey } from '../wireguard/keys.js';
import { WgQuickFile } from '../wireguard/conf-file.js';
import { ConfigReloader, loadOrReport, type SignalSource } from './config-reloader.js';
import { ReconcileLoop } from './loop.js';
import { EndpointWatch } from './endpoint-watch.js';
import { MetricsEndpoint } from './metrics-endpoint.js';
import type { Part } from './part.js';
import { Closer, SourcePart, StartedPart, stopAll, Timer } from './parts.js';
import { StatusWriter } from './status-writer.js';
import { MeshStep, type Identity } from './step.js';
import { NameResolver } from './name-resolver.js';
import { WatchHealth } from './watch-health.js';

/** The Kubernetes side of the daemon, made from the kubeconfig. */
export interface KubeAccess {
  /** The API server's URL, for the start-up log line. */
  server: string;
  nodes: NodeSource;
  externalPeers: ExternalPeerSource;
  publisher: NodePublisher;
  /** The location leader Leases of a namespace (absent: no locations). */
  leases?: (namespace: string) => LeaseApi;
  /** The cluster's CA certificate (PEM), for `[overlay] cidr6 = auto`. */
  clusterCa?: string | undefined;
}

/** Everything the daemon takes from its host: the production one in run.ts, fakes in tests. */
export interface DaemonEnv {
  log: Logger;
  /** Runs the commands that change the host (each logged at debug). */
  runner: CommandRunner;
  /** Runs the reads a metrics scrape makes (not logged). */
  quietRunner: CommandRunner;
  loadConfig(path: string): Promise<LoadedConfig>;
  loadKey(stateDir: string): Promise<LoadedKey>;
  /** Loads the kubeconfig and makes the sources; throws KubeconfigError when it is unusable. */
  connectKube(config: Config, log: Logger): Promise<KubeAccess>;
  /** systemd's units over D-Bus, or undefined when no manager answers. */
  connectSystemd(log: Logger): Promise<UnitController | undefined>;
  notifier: Notifier;
  /** The long-lived `ip -batch` co-process for routes (undefined: one `ip` per route). */
  ipBatch(log: Logger): IpBatch | undefined;
  /** Watches route deletions and link changes on the interface, passing each event's line. */
  monitor(iface: string, log: Logger, onChange: (line: string) => void): { stop(): void };
  ipForwarding(): Promise<boolean | undefined>;
  /** The addresses of a DNS name, IPv4 first. */
  lookupName(name: string): Promise<string[]>;
  /** Sends one datagram to an overlay address through the tunnel (endpoint failover's nudge); absent in tests that do not need it. */
  nudge?(address: string): Promise<void>;
  serveMetrics: typeof startMetricsServer;
  signals: SignalSource;
  /** Timings, shortened by tests. */
  timing?: Partial<DaemonTiming>;
}

/** The daemon's timings (ms). */
export interface DaemonTiming {
  /** How long the first apply waits for the Peer list before going on without it. */
  peerWait: number;
  /** Between full resyncs that re-read the host even when no event arrived. */
  resync: number;
  /** Delay before wg0.conf is written after a change (0 = at once). */
  confDelay: number;
  /** Delay used to coalesce bursts of events. */
  coalesce: number;
  /** How long each part may take to stop. */
  partStop: number;
}

const DEFAULT_TIMING: DaemonTiming = {
  peerWait: 10_000,
  resync: 60_000,
  confDelay: 300,
  coalesce: 2,
  partStop: 10_000,
};

/** What the daemon has prepared before it builds its parts. */
interface Prepared {
  config: Config;
  identity: Identity;
  kube: KubeAccess;
  units: UnitController | undefined;
  /** The API server's addresses, which no routed range may contain. */
  apiAddresses: string[];
  loadedAt: number;
}

/** Host-side pieces the constructor makes and the parts list closes or uses. */
interface Made {
  ipBatch: IpBatch | undefined;
  confFile: WgQuickFile;
  own: OwnChanges;
  leadership: LocationLeases | undefined;
  endpoints: EndpointWatch | undefined;
}

/** The long-running daemon: its parts, started in order and stopped in reverse. */
export class Daemon {
  private readonly parts: Part[] = [];
  private readonly started: Part[] = [];
  private readonly timing: DaemonTiming;
  private readonly startedAt = Date.now();
  private running: Config;
  readonly health = new WatchHealth();
  readonly loop: ReconcileLoop;
  readonly step: MeshStep;
  private readonly metrics: DaemonMetrics;
  private readonly metricsEndpoint: MetricsEndpoint;
  private readonly status: StatusWriter;
  private readonly reloader: ConfigReloader;
  private readonly resolver: NameResolver;
  private readonly endpoints: EndpointWatch | undefined;

  /**
   * Reads the config, the key and the kubeconfig and finds systemd; resolves with the daemon, or
   * with the exit status when it cannot start (78 when the admin must fix a file).
   */
  static async open(configPath: string, env: DaemonEnv): Promise<Daemon | number> {
    const prepared = await prepare(configPath, env);
    return typeof prepared === 'number' ? prepared : new Daemon(configPath, env, prepared);
  }

  private constructor(
    configPath: string,
    private readonly env: DaemonEnv,
    p: Prepared,
  ) {
    const { log } = env;
    this.timing = { ...DEFAULT_TIMING, ...env.timing };
    this.running = p.config;
    const w = p.config.wireguard;
    const ipBatch = env.ipBatch(log);
    // Files that list every peer are written less often in a large mesh (1 ms per peer, at most
    // 10 s): a burst of changes costs one write, and the live apply never waits for them.
    const bySize =
      (base: number): (() => number) =>
      () =>
        base === 0 ? 0 : Math.max(base, Math.min(10_000, this.step?.desired?.peers.length ?? 0));
    const confFile = new WgQuickFile(w.configFile, log, bySize(this.timing.confDelay));
    const own = new OwnChanges();
    const iface = new InterfaceOwner({
      runner: env.runner,
      log,
      iface: w.interface,
      configFile: w.configFile,
      createInterface: w.createInterface,
      implementation: w.implementation,
      units: p.units,
      own,
    });
    log.info(iface.describe());
    const m = p.config.mesh;
    const leadership =
      p.kube.leases &&
      new LocationLeases({
        api: p.kube.leases(m.leaseNamespace),
        namespace: m.leaseNamespace,
        self: p.identity.name,
        leaseSeconds: m.leaderLeaseSeconds,
        log,
        onChange: () => this.loop.schedule('a location leader Lease changed'),
      });
    // One device read at a time, reused for a few seconds, for the metrics and the endpoint watch.
    const device = new CachedRead(() => readDevice(env.quietRunner, w.interface), 5_000);
    const endpoints = (this.endpoints = this.makeEndpointWatch(w.endpointFailoverSeconds, device, log));
    this.step = new MeshStep(
      {
        runner: env.runner,
        log,
        identity: p.identity,
        publisher: p.kube.publisher,
        iface,
        peers: new PeerAdapter(env.runner, w.interface, (peers) => endpoints?.sawDevice(peers)),
        routes: new RouteAdapter(env.runner, log, ipBatch, own),
        confFile,
        leadership,
        endpoints,
      },
      p.config,
      true,
    );
    this.step.setFacts({ protectedAddresses: p.apiAddresses, clusterCa: p.kube.clusterCa });
    if (p.config.overlay.cidr6 === 'auto' && !p.kube.clusterCa)
      log.notice(
        '[overlay] cidr6 = auto: the kubeconfig holds no cluster CA certificate to derive the IPv6 overlay from, so the overlay is IPv4 only (set cidr6 to a CIDR, the same on every node, for an IPv6 overlay)',
      );
    this.loop = new ReconcileLoop(this.step, {
      log,
      coalesceMs: this.timing.coalesce,
      stopTimeoutMs: this.timing.partStop,
    });
    this.resolver = new NameResolver(
      (name) => env.lookupName(name),
      log,
      () => {
        this.step.setFacts({ resolved: this.resolver.resolved });
        this.loop.schedule('a DNS name resolved to a new address');
      },
    );
    this.metrics = this.makeMetrics(p.identity.name, w.interface, device);
    this.metricsEndpoint = new MetricsEndpoint({
      metrics: this.metrics,
      health: () => this.healthVerdict(),
      log,
      serve: env.serveMetrics,
      config: p.config,
    });
    this.status = new StatusWriter(
      () => this.running.state.runtimeDir,
      () => this.snapshot(p.identity.name),
      log,
      bySize(200),
    );
    this.reloader = new ConfigReloader({
      path: configPath,
      load: env.loadConfig,
      target: {
        running: () => this.running,
        apply: (next, changed) => this.applyConfig(next, changed),
        ready: () => this.loop.lastSuccessAt !== undefined,
        summary: () => this.summary(),
      },
      notifier: env.notifier,
      log,
      signals: env.signals,
      loadedAt: p.loadedAt,
    });
    this.wire();
    this.parts.push(...this.assemble(p, { ipBatch, confFile, own, leadership, endpoints }));
  }

  /** The parts in start order (stopped in reverse): closers first, sources and monitors last. */
  private assemble(p: Prepared, made: Made): Part[] {
    const { ipBatch, confFile, own, leadership, endpoints } = made;
    const { env } = this;
    const { log } = env;
    const w = p.config.wireguard;
    return [
      new Closer('D-Bus link', () => p.units?.close()),
      new Closer('ip co-process', () => ipBatch?.close()),
      new Closer('wg-quick file', async () => {
        await confFile.flush();
      }),
      this.status,
      this.metricsEndpoint,
      this.loop,
      ...(leadership ? [leadership] : []),
      ...(endpoints ? [endpoints] : []),
      this.resolver,
      new SourcePart<MeshNode>('node source', p.kube.nodes, {
        onList: (nodes) => {
          if (this.step.setNodes(nodes)) this.loop.schedule('Nodes changed');
        },
        onChange: (name, node) => {
          if (node ? this.step.upsertNode(node) : this.step.removeNode(name)) this.loop.schedule('Nodes changed');
        },
        onState: (state, err) => this.health.report('nodes', state, err),
      }),
      new SourcePart<ExternalPeer>('peer source', p.kube.externalPeers, {
        onList: (peers) => {
          if (!this.step.setExternalPeers(peers)) return;
          this.resolver.want(this.namesToResolve());
          this.loop.schedule('Peers changed');
        },
        onState: (state, err) => this.health.report('peers', state, err),
      }),
      new Timer('peer wait', this.timing.peerWait, false, () => this.stopWaitingForPeers()),
      this.reloader,
      new StartedPart('interface monitor', () =>
        env.monitor(w.interface, log, (line) => {
          // The daemon's own route deletions and link churn are not drift: no re-read for them.
          if (own.isOwn(line)) log.debug(`own change seen by ip monitor: ${line}`);
          else this.loop.schedule('routes or link changed on the host', true);
        }),
      ),
      new Timer('resync timer', this.timing.resync, true, () => this.loop.schedule('periodic resync', true)),
    ];
  }

  /** Starts every part in order; if one cannot start, stops those already started and throws. */
  async start(): Promise<void> {
    for (const part of this.parts) {
      try {
        await part.start();
      } catch (err) {
        this.env.log.error(`starting the ${part.name}: ${describeError(err)}`);
        await stopAll(this.started, this.env.log, this.timing.partStop);
        throw err;
      }
      this.started.push(part);
      this.env.log.debug(`started the ${part.name}`);
    }
    this.loop
      .firstApply()
      .then(() => {
        this.env.log.notice(`mesh applied: ${this.summary()}`);
        const m = process.memoryUsage();
        const mb = (b: number): string => `${Math.round(b / 1048576)} MB`;
        this.env.log.info(
          `memory after the first apply: resident ${mb(m.rss)}, JavaScript heap ${mb(m.heapUsed)} used of ${mb(m.heapTotal)}, outside the heap ${mb(m.external + m.arrayBuffers)}`,
        );
        return this.env.notifier.ready(`mesh applied: ${this.summary()}`);
      })
      .catch((err: unknown) => this.env.log.error(`reporting readiness: ${describeError(err)}`));
  }

  /** Stops every started part in reverse order; the interface, its peers and routes stay up. */
  async stop(why: string): Promise<void> {
    const { log, notifier } = this.env;
    log.info(`${why}: stopping; ${this.running.wireguard.interface}, its peers and routes stay up`);
    await notifier.stopping();
    await stopAll(this.started.splice(0), log, this.timing.partStop);
    log.info('stopped');
  }

  /** The health verdict behind `/healthz`. */
  healthVerdict(): HealthResult {
    const discovery = this.running.kubernetes.discovery;
    const busySince = this.loop.busySince;
    return evaluateHealth({
      watches: [
        { what: `node ${discovery}`, downForMs: this.health.downForMs('nodes') },
        { what: `peer ${discovery}`, downForMs: this.health.downForMs('peers') },
      ],
      thresholdMs: this.running.metrics.watchDownThresholdSeconds * 1000,
      lastReport: this.loop.lastReport,
      busyForMs: busySince === undefined ? 0 : Date.now() - busySince,
    });
  }

  /** One line for logs and systemd's status: peers, routes, address. */
  summary(): string {
    const d = this.step.desired;
    return `${d?.peers.length ?? 0} peers, ${d?.routes.length ?? 0} routes, address ${d?.iface.address ?? '?'}`;
  }

  /** Connects reports of the loop and the watches to metrics and the status file. */
  private wire(): void {
    this.loop.onReport((r) => {
      this.metrics.observeReport(r, this.step.desired, this.loop.lastSuccessAt);
      this.status.changed();
    });
    this.health.onReport((which) => {
      this.metrics.setWatch(which, this.health.isUp(which));
      this.status.changed();
    });
  }

  /** The endpoint watch, unless failover is off (`endpoint_failover = 0`). */
  private makeEndpointWatch(
    seconds: number,
    device: CachedRead<InterfaceStatus | undefined>,
    log: Logger,
  ): EndpointWatch | undefined {
    if (seconds === 0) return undefined;
    return new EndpointWatch({
      read: (maxAgeMs) => device.get(maxAgeMs),
      peers: () => this.step.desired?.peers ?? [],
      discovered: (name) => this.step.discoveredFor(name),
      timing: { timeoutMs: seconds * 1000, probeAfterMs: 60_000, maxProbeAfterMs: 30 * 60_000 },
      log,
      onChoice: () => this.loop.schedule('endpoint failover'),
      onObserved: () => this.loop.schedule('peers seen arriving from new endpoints (NAT)'),
      nudge: (peer) => {
        const host = peer.allowedIPs.find((c) => c.endsWith('/32') || c.endsWith('/128'));
        if (host && this.env.nudge)
          this.env
            .nudge(host.slice(0, host.lastIndexOf('/')))
            .catch((err) => log.debug(`endpoint watch: nudging ${peer.name}: ${describeError(err)}`));
      },
    });
  }

  private makeMetrics(node: string, iface: string, device: CachedRead<InterfaceStatus | undefined>): DaemonMetrics {
    return new DaemonMetrics({
      node,
      iface,
      version: VERSION,
      readHandshakes: async () => {
        const dev = await device.get();
        if (!dev) throw new Error(`${iface} is missing`);
        const byKey = new Map((this.step.desired?.peers ?? []).map((p) => [p.publicKey, p]));
        return dev.peers.map((p) => {
          const known = byKey.get(p.publicKey);
          return {
            kind: known?.kind ?? 'unknown',
            name: known?.name ?? p.publicKey,
            latestHandshake: p.latestHandshake,
          };
        });
      },
    });
  }

  /** The DNS names the mesh needs as addresses: external peers' endpoints and this node's explicit endpoint. */
  private namesToResolve(): string[] {
    const names = this.step.externalPeerList
      .map((p) => p.endpoint?.dns)
      .filter((n): n is string => !!n && isDnsName(n));
    const own = this.running.wireguard.endpoint;
    if (own.mode === 'explicit' && isDnsName(own.host)) names.push(own.host);
    return names;
  }

  private applyConfig(next: Config, changed: boolean): void {
    this.running = next;
    this.resolver.want(this.namesToResolve());
    this.env.log.setLevel(next.log.level);
    void this.metricsEndpoint.reconfigure(next);
    this.status.changed();
    if (!changed) return;
    this.step.setConfig(next);
    this.loop.schedule('configuration changed', true);
  }

  /** The first apply waits for the Peer list (a restart must not drop external peers for a moment), but not for ever. */
  private stopWaitingForPeers(): void {
    if (this.step.externalPeersKnown) return;
    this.env.log.warning(
      `no Peer list from the API server after ${formatMs(this.timing.peerWait)}: applying the mesh without external Peers until it arrives`,
    );
    if (this.step.setExternalPeers([])) this.loop.schedule('Peers changed');
  }

  private snapshot(node: string): StatusSnapshot {
    return buildSnapshot({
      node,
      iface: this.running.wireguard.interface,
      startedAt: this.startedAt,
      desired:
        this.step.desired && this.step.refusedPeers.length > 0
          ? { ...this.step.desired, warnings: [...this.step.desired.warnings, ...this.step.refusedPeers] }
          : this.step.desired,
      waiting: this.step.waiting,
      lastReport: this.loop.lastReport,
      lastSuccessAt: this.loop.lastSuccessAt,
      busySince: this.loop.busySince,
      watch: this.health.snapshot(),
      now: Date.now(),
      pid: process.pid,
      failover: (name) => this.endpoints?.describe(name),
    });
  }
}

/** Loads what the daemon needs before it can build its parts; an exit status when it cannot. */
async function prepare(configPath: string, env: DaemonEnv): Promise<Prepared | number> {
  const { log } = env;
  const loadedAt = Date.now();
  const config = await loadOrReport(env.loadConfig, configPath, log);
  if (!config) {
    log.error(`invalid configuration in ${configPath}; not starting`);
    return EXIT_CONFIG;
  }
  log.setLevel(config.log.level);
  log.info(
    `wg-overlay ${VERSION} starting: node ${config.kubernetes.nodeName}, interface ${config.wireguard.interface}, config ${config.source}`,
  );
  let identity: Identity;
  try {
    const key = await env.loadKey(config.state.dir);
    if (key.created)
      log.notice(`created a new WireGuard private key in ${config.state.dir}; public key ${key.publicKey}`);
    else log.info(`loaded the WireGuard private key from ${config.state.dir}; public key ${key.publicKey}`);
    if (key.fixedMode)
      log.warning(
        `the private key file in ${config.state.dir} was readable by group or others: its mode is now 0600 (check who could have read it)`,
      );
    identity = { name: config.kubernetes.nodeName, privateKey: key.privateKey, publicKey: key.publicKey };
  } catch (err) {
    log.error(describeError(err));
    return EXIT_FAILURE;
  }
  let kube: KubeAccess;
  try {
    kube = await env.connectKube(config, log);
  } catch (err) {
    log.error(describeError(err));
    return err instanceof KubeconfigError ? EXIT_CONFIG : EXIT_FAILURE;
  }
  log.info(`API server ${kube.server} (kubeconfig ${config.kubernetes.kubeconfig})`);
  if ((await env.ipForwarding()) === false) log.warning(FORWARDING_OFF_WARNING);
  const units = config.wireguard.createInterface ? await env.connectSystemd(log) : undefined;
  return { config, identity, kube, units, apiAddresses: await apiServerAddresses(kube.server, env), loadedAt };
}

/** The API server's addresses (its URL's host, resolved when it is a name); none when unknown. */
async function apiServerAddresses(server: string, env: DaemonEnv): Promise<string[]> {
  let host: string;
  try {
    host = new URL(server).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return [];
  }
  if (parseIp(host)) return [host];
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      env.lookupName(host),
      new Promise<string[]>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5_000);
      }),
    ]);
  } catch (err) {
    env.log.warning(
      `cannot resolve the API server's name ${host} (${describeError(err)}): ranges containing its address are not refused`,
    );
    return [];
  } finally {
    clearTimeout(timer);
  }
}
