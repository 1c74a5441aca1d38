/**
 * The daemon object: prepares what must be there before anything runs (config, key, kubeconfig,
 * systemd), builds its parts — D-Bus link, ip co-process, wg-quick file, status writer, metrics
 * endpoint, reconcile loop, Node and external-peer sources, config reloader, interface monitor,
 * resync timer, the checks of its credential — starts them in that order and stops them in
 * reverse, leaving the mesh up.
 */
import type { Config } from '../config/config.js';
import { readDevice } from '../host/device.js';
import type { IpBatch } from '../host/ip-batch.js';
import { OwnChanges } from '../host/own-changes.js';
import { LocationLeases } from '../kube/location-leases.js';
import { describeError, type Logger } from '../log/logger.js';
import type { InterfaceStatus } from '../mesh/observations/device.js';
import type { ExternalPeer, MeshNode } from '../mesh/types.js';
import { DaemonMetrics, evaluateHealth, type HealthResult } from '../metrics/metrics.js';
import { isDnsName } from '../net/ip.js';
import { buildSnapshot, type StatusSnapshot } from '../status/snapshot.js';
import { CachedRead } from '../util/cached-read.js';
import { formatMs } from '../util/duration.js';
import { VERSION } from '../version.js';
import { WgQuickFile } from '../wireguard/conf-file.js';
import { ConfigReloader } from './config-reloader.js';
import { NodePolicyCheck, TokenExpiryCheck } from './credential-checks.js';
import { stepEndpointWatch, type EndpointWatch } from './endpoint-watch.js';
import { FirewallDrops } from './firewall-drops.js';
import { KeyKeeper } from './key-keeper.js';
import { meshReadings } from './mesh-readings.js';
import { DEFAULT_TIMING, type DaemonEnv, type DaemonTiming } from './env.js';
import { ReconcileLoop } from './loop.js';
import { MetricsEndpoint } from './metrics-endpoint.js';
import { NameResolver } from './name-resolver.js';
import type { Part } from './part.js';
import { Closer, SourcePart, StartedPart, startAll, stopAll, Timer } from './parts.js';
import { noticeDefaults, prepare, type Prepared } from './prepare.js';
import { StatusServer } from './status-server.js';
import { runningStatus, StatusWriter, type StatusSource } from './status-writer.js';
import type { MeshStep } from './step.js';
import { wireStep } from './step-wiring.js';
import { WatchHealth } from './watch-health.js';

export type { DaemonEnv, DaemonTiming, KubeAccess } from './env.js';

/** Peers up to which the files that list every peer are written a moment after each change. */
const SMALL_MESH = 100;

/**
 * How long a change waits before the files that list every peer (wg0.conf, status.json) are
 * written: `base` in a small mesh; in a larger one 120 ms per peer, at most 10 minutes, so a
 * change costs no whole-file rewrite. Nothing reads them sooner: wg-quick reads wg0.conf only
 * when the interface starts, and the daemon writes it at once before every restart it asks for,
 * when the interface section changes and when it stops; `wg-overlay status` asks the running
 * daemon over its socket.
 */
export function fileDelayMs(base: number, peers: number): number {
  if (base === 0) return 0;
  return peers <= SMALL_MESH ? base : Math.min(600_000, Math.max(base, peers * 120));
}

/**
 * How long a change waits before the fail-closed rule set's saved script (the whole table) is
 * rewritten: not at all in a small mesh; in a larger one up to 10 s, so that a change costs no
 * rewrite of every range and a burst shares one. The script is written at once whenever nft loads
 * it and when the daemon stops: after a crash, the boot unit loads one at most 10 s older than the
 * table (what came in those seconds is blocked once the daemon applies again).
 */
export function firewallSaveDelayMs(peers: number): number {
  return peers <= SMALL_MESH ? 0 : 10_000;
}

/** Host-side pieces the daemon makes before its parts, which the parts list closes or uses. */
interface HostPieces {
  ipBatch: IpBatch | undefined;
  confFile: WgQuickFile;
  own: OwnChanges;
  /** One device read at a time, reused for a few seconds, for the metrics and the endpoint watch. */
  device: CachedRead<InterfaceStatus | undefined>;
  leadership: LocationLeases | undefined;
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
  private readonly statusSource: StatusSource;
  private readonly reloader: ConfigReloader;
  private readonly resolver: NameResolver;
  private readonly endpoints: EndpointWatch | undefined;
  private readonly policyCheck: NodePolicyCheck | undefined;
  private readonly tokenCheck: TokenExpiryCheck | undefined;
  private readonly drops: FirewallDrops;

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
    const host = this.makeHostPieces(p);
    const w = p.config.wireguard;
    this.endpoints = this.makeEndpointWatch(w.endpointFailoverSeconds, host.device, log);
    this.step = this.makeStep(p, host);
    this.step.setFacts({ apiAddresses: p.apiAddresses, onLink: p.onLink, clusterCa: p.kube.clusterCa });
    noticeDefaults(p.config, p.kube.clusterCa, log);
    this.loop = new ReconcileLoop(this.step, {
      log,
      coalesceMs: this.timing.coalesce,
      stopTimeoutMs: this.timing.partStop,
    });
    this.resolver = new NameResolver(
      (name) => env.lookupName(name),
      log,
      () => this.namesResolved(),
    );
    this.metrics = this.makeMetrics(p.identity.name, w.interface, host.device);
    this.drops = this.makeDrops();
    this.metricsEndpoint = new MetricsEndpoint({
      metrics: this.metrics,
      health: () => this.healthVerdict(),
      log,
      serve: env.serveMetrics,
      config: p.config,
    });
    this.statusSource = { dir: () => this.running.state.runtimeDir, build: () => this.snapshot(p.identity.name) };
    this.status = new StatusWriter(this.statusSource, log, this.bySize(200));
    this.reloader = this.makeReloader(configPath, p.loadedAt);
    [this.policyCheck, this.tokenCheck] = this.makeCredentialChecks(p);
    this.wire();
    this.parts.push(...this.assemble(p, host));
  }

  /** The step, wired to this daemon's host pieces and endpoint watch. */
  private makeStep(p: Prepared, host: HostPieces): MeshStep {
    return wireStep({
      config: p.config,
      runner: this.env.runner,
      log: this.env.log,
      identity: p.identity,
      publisher: p.kube.publisher,
      confFile: host.confFile,
      units: p.units,
      ipBatch: host.ipBatch,
      own: host.own,
      leadership: host.leadership,
      endpoints: this.endpoints,
      sawDevice: (peers) => this.endpoints?.sawDevice(peers),
      keys:
        this.env.rotateKey &&
        new KeyKeeper({
          identity: p.identity,
          stateDir: p.config.state.dir,
          rotate: this.env.rotateKey,
          log: this.env.log,
        }),
      firewallSaveDelayMs: () => firewallSaveDelayMs(this.step?.desired?.peers.length ?? 0),
      waitForPeers: true,
    });
  }

  /** The write delay of the files that list every peer, for the mesh as it is now (see {@link fileDelayMs}). */
  private bySize(base: number): () => number {
    return () => fileDelayMs(base, this.step?.desired?.peers.length ?? 0);
  }

  /** The host-side pieces: the ip co-process, the wg-quick file, own-change tracking, the device reader, the Leases. */
  private makeHostPieces(p: Prepared): HostPieces {
    const { env } = this;
    const w = p.config.wireguard;
    const m = p.config.mesh;
    const leadership =
      p.kube.leases &&
      new LocationLeases({
        api: p.kube.leases(m.leaseNamespace),
        namespace: m.leaseNamespace,
        self: p.identity.name,
        leaseSeconds: m.leaderLeaseSeconds,
        log: env.log,
        onChange: () => this.loop.schedule('a location leader Lease changed'),
      });
    return {
      ipBatch: env.ipBatch(env.log),
      confFile: new WgQuickFile(w.configFile, env.log, this.bySize(this.timing.confDelay)),
      own: new OwnChanges(),
      // Every reading feeds the per-peer byte counters (one read at a time: in the order made).
      device: new CachedRead(async () => {
        const dev = await readDevice(env.quietRunner, w.interface);
        this.metrics.sawDevice(dev);
        return dev;
      }, 5_000),
      leadership,
    };
  }

  /** The config reloader (SIGHUP): reloads, validates, applies or keeps the running config. */
  private makeReloader(configPath: string, loadedAt: number): ConfigReloader {
    const { env } = this;
    const hooks = {
      running: () => this.running,
      apply: (next: Config, changed: boolean) => this.applyConfig(next, changed),
      ready: () => this.loop.lastSuccessAt !== undefined,
      summary: () => this.summary(),
    };
    return new ConfigReloader({
      path: configPath,
      load: env.loadConfig,
      target: hooks,
      notifier: env.notifier,
      log: env.log,
      signals: env.signals,
      loadedAt,
    });
  }

  /** The checks of this node's credential (node-policy.yaml in force, the token's expiry), where the kubeconfig allows them. */
  private makeCredentialChecks(p: Prepared): [NodePolicyCheck | undefined, TokenExpiryCheck | undefined] {
    const { log } = this.env;
    const { nodePolicy, token } = p.kube;
    return [
      nodePolicy &&
        new NodePolicyCheck({
          probe: nodePolicy,
          node: p.identity.name,
          log,
          onState: (state) => this.metrics.setNodePolicy(state),
          retryMs: this.timing.policyRetry,
        }),
      token &&
        new TokenExpiryCheck({
          token,
          log,
          onExpiry: (seconds) => this.metrics.setTokenExpiry(seconds),
          intervalMs: this.timing.tokenCheck,
        }),
    ];
  }

  /** A DNS name resolved to a new address: the membership may change. */
  private namesResolved(): void {
    this.step.setFacts({ resolved: this.resolver.resolved });
    this.loop.schedule('a DNS name resolved to a new address');
  }

  /** The parts in start order (stopped in reverse): closers first, sources and monitors last. */
  private assemble(p: Prepared, host: HostPieces): Part[] {
    const { env } = this;
    const { log } = env;
    const w = p.config.wireguard;
    const view = this.step.view;
    const nodesChanged = (changed: boolean): void => {
      if (changed) this.loop.schedule('Nodes changed');
    };
    return [
      new Closer('D-Bus link', () => p.units?.close()),
      new Closer('ip co-process', () => host.ipBatch?.close()),
      new Closer('wg-quick file', async () => {
        await host.confFile.flush();
      }),
      new Closer('fail-closed script', () => this.step.flushFirewall()),
      this.status,
      new StatusServer(this.statusSource, log),
      this.metricsEndpoint,
      this.loop,
      ...(host.leadership ? [host.leadership] : []),
      ...(this.endpoints ? [this.endpoints] : []),
      this.resolver,
      new SourcePart<MeshNode>('node source', p.kube.nodes, {
        onList: (nodes) => nodesChanged(view.setNodes(nodes)),
        onChange: (name, node) => nodesChanged(node ? view.upsertNode(node) : view.removeNode(name)),
        onState: (state, err) => this.health.report('nodes', state, err),
      }),
      new SourcePart<ExternalPeer>('peer source', p.kube.externalPeers, {
        onList: (peers) => this.externalPeersListed(peers),
        onState: (state, err) => this.health.report('peers', state, err),
      }),
      new Timer('peer wait', this.timing.peerWait, false, () => this.stopWaitingForPeers()),
      this.reloader,
      new StartedPart('interface monitor', () =>
        env.monitor(w.interface, log, (line) => this.hostChanged(line, host.own)),
      ),
      new Timer('resync timer', this.timing.resync, true, () => this.loop.schedule('periodic resync', true)),
      ...(this.policyCheck ? [this.policyCheck] : []),
      ...(this.tokenCheck ? [this.tokenCheck] : []),
      this.drops,
    ];
  }

  /** A new list of external peers. */
  private externalPeersListed(peers: readonly ExternalPeer[]): void {
    if (!this.step.view.setExternalPeers(peers)) return;
    this.resolver.want(this.namesToResolve());
    this.loop.schedule('Peers changed');
  }

  /** A route or link changed on the host: drift forces a re-read; the daemon's own route deletions and link churn do not. */
  private hostChanged(line: string, own: OwnChanges): void {
    if (own.isOwn(line)) this.env.log.debug(`own change seen by ip monitor: ${line}`);
    else this.loop.schedule('routes or link changed on the host', true);
  }

  /** Starts every part in order; if one cannot start, stops those already started and throws. */
  async start(): Promise<void> {
    await startAll(this.parts, this.started, this.env.log, this.timing.partStop);
    this.loop
      .firstApply()
      .then(() => {
        this.env.log.notice(`mesh applied: ${this.summary()}`);
        const m = process.memoryUsage();
        const mb = (b: number): string => `${Math.round(b / 1048576)} MB`;
        this.env.log.info(
          `memory after the first apply: resident ${mb(m.rss)}, JavaScript heap ${mb(m.heapUsed)} used of ` +
            `${mb(m.heapTotal)}, outside the heap ${mb(m.external + m.arrayBuffers)}`,
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
      if (this.step.desired) this.endpoints?.followDesired(this.step.desired);
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
    return stepEndpointWatch(seconds, {
      read: (maxAgeMs) => device.get(maxAgeMs),
      step: () => this.step,
      reported: () => this.step.view.observations.targets(),
      log,
      onChoice: () => this.loop.schedule('endpoint failover'),
      onObserved: () => this.loop.schedule('peers seen arriving from new endpoints (NAT)'),
      onSwitch: (reason) => this.metrics.countSwitch(reason),
      nudger: this.env,
    });
  }

  /** The reader of the fail-closed rule set's drop counters (metrics, status, the journal). */
  private makeDrops(): FirewallDrops {
    return new FirewallDrops({
      runner: this.env.quietRunner,
      log: this.env.log,
      everyMs: this.timing.dropPoll,
      blocked: () => (this.step.desired?.firewall?.enabled ? this.step.desired.firewall.blocked : undefined),
      onDrops: (family, reason, packets) => this.metrics.addFailClosedDrops(family, reason, packets),
    });
  }

  private makeMetrics(node: string, iface: string, device: CachedRead<InterfaceStatus | undefined>): DaemonMetrics {
    return new DaemonMetrics({
      node,
      iface,
      version: VERSION,
      mesh: meshReadings({ self: node, iface, step: this.step, device, endpoints: this.endpoints }),
      readHandshakes: async () => {
        const dev = await device.get();
        if (!dev) throw new Error(`${iface} is missing`);
        const byKey = new Map((this.step.desired?.peers ?? []).map((p) => [p.publicKey, p]));
        // Only the peers this node configured: a key nobody named would be an unbounded label value.
        return dev.peers.flatMap((p) => {
          const known = byKey.get(p.publicKey);
          return known ? [{ kind: known.kind, name: known.name, latestHandshake: p.latestHandshake }] : [];
        });
      },
    });
  }

  /** The DNS names the mesh needs as addresses: external peers' endpoints and this node's explicit endpoint. */
  private namesToResolve(): string[] {
    const names = this.step.view.externalPeers
      .map((p) => p.endpoint?.dns)
      .filter((n): n is string => !!n && isDnsName(n));
    const own = this.running.wireguard.endpoint;
    if (own.mode === 'explicit' && isDnsName(own.host)) names.push(own.host);
    return names;
  }

  private applyConfig(next: Config, changed: boolean): void {
    this.running = next;
    // A reload is the admin's way to have the credential checked again (e.g. after applying node-policy.yaml).
    void this.policyCheck?.check();
    void this.tokenCheck?.check(true);
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
    if (this.step.view.externalPeersListed) return;
    this.env.log.warning(
      `no Peer list from the API server after ${formatMs(this.timing.peerWait)}: ` +
        'applying the mesh without external Peers until it arrives',
    );
    if (this.step.view.setExternalPeers([])) this.loop.schedule('Peers changed');
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
      ...runningStatus(this.loop, this.health, this.endpoints),
      reports: (name) => this.step.view.observations.reports(name),
      drops: () => this.drops.report(),
    });
  }
}
