/**
 * A running `wg-overlay connect`: the daemon's parts around a connect step — the reconcile loop,
 * the Node and Peer sources, the location Leases (read only), endpoint failover, the interface
 * monitor, the periodic resync and the status file — started in order and stopped in reverse,
 * then (unless `--keep`) the Peer, the interface and its routes removed.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT_FAILURE, EXIT_OK } from '../exit-status.js';
import { InterfaceOwner } from '../host/interface-owner.js';
import { deleteLink } from '../host/link.js';
import { OwnChanges } from '../host/own-changes.js';
import { PeerAdapter } from '../host/peer-adapter.js';
import { RouteAdapter } from '../host/route-adapter.js';
import { readDevice } from '../host/device.js';
import { externalPeerSource, externalPeersApi } from '../kube/external-peer-source.js';
import { leasesApi, LocationLeases } from '../kube/location-leases.js';
import { nodeSource, nodesApi } from '../kube/node-source.js';
import { describeError } from '../log/logger.js';
import { topologySettings } from '../config/mesh-settings.js';
import type { ExternalPeer, MeshNode } from '../mesh/types.js';
import { STATUS_FILE, buildSnapshot, type StatusSnapshot } from '../status/snapshot.js';
import { CachedRead } from '../util/cached-read.js';
import { formatMs } from '../util/duration.js';
import { stepEndpointWatch, type EndpointWatch } from '../daemon/endpoint-watch.js';
import { ReconcileLoop } from '../daemon/loop.js';
import type { Part } from '../daemon/part.js';
import { SourcePart, StartedPart, startAll, stopAll, Timer } from '../daemon/parts.js';
import { runningStatus, StatusWriter } from '../daemon/status-writer.js';
import { WatchHealth } from '../daemon/watch-health.js';
import type { ConnectOptions } from './options.js';
import type { ConnectEnv, PreparedConnect } from './prepare.js';
import { ConnectStep } from './step.js';
import { FreshPeers } from './fresh-peers.js';
import { connectStatusText } from './status.js';

/** How long after the first apply a host that no node answered is told so. */
export const HANDSHAKE_CHECK_MS = 20_000;

/** The running connection. */
export class ConnectSession {
  readonly step: ConnectStep;
  readonly loop: ReconcileLoop;
  readonly health = new WatchHealth();
  private readonly parts: Part[] = [];
  private readonly started: Part[] = [];
  private readonly startedAt = Date.now();
  private readonly status: StatusWriter;
  private readonly endpoints: EndpointWatch | undefined;
  private readonly leases: LocationLeases | undefined;
  private readonly device: CachedRead<Awaited<ReturnType<typeof readDevice>>>;
  private readonly fresh: FreshPeers;
  private lostWhy: string | undefined;
  private onLost: ((why: string) => void) | undefined;

  constructor(
    private readonly opts: ConnectOptions,
    private readonly p: PreparedConnect,
    private readonly env: ConnectEnv,
  ) {
    const { log } = env;
    const own = new OwnChanges();
    this.device = new CachedRead(() => readDevice(env.quietRunner, opts.iface), 2_000);
    this.endpoints = this.makeEndpointWatch();
    this.leases = this.makeLeases();
    const ipBatch = env.ipBatch(log);
    this.step = this.makeStep(own, ipBatch);
    this.loop = new ReconcileLoop(this.step, { log, coalesceMs: 2 });
    this.fresh = new FreshPeers({
      runner: env.runner,
      iface: opts.iface,
      log,
      read: (maxAgeMs) => this.device.get(maxAgeMs),
      current: (key) => this.step.desired?.peers.find((x) => x.publicKey === key),
    });
    this.status = new StatusWriter({ dir: () => opts.runtimeDir, build: () => this.snapshot() }, log, () => 100);
    this.loop.onReport((r) => {
      this.status.changed();
      if (r.ok && this.step.desired) this.fresh.applied(this.step.desired.peers);
    });
    this.health.onReport(() => this.status.changed());
    // What was listed a moment ago: the first apply goes ahead while the watches list again.
    this.step.view.setNodes(p.nodes);
    this.step.view.setExternalPeers(p.peers);
    this.parts.push(...this.assemble(own, ipBatch));
  }

  /** The connect step over the daemon's host adapters (routes: only those through this interface are its own). */
  private makeStep(own: OwnChanges, ipBatch: ReturnType<ConnectEnv['ipBatch']>): ConnectStep {
    const { env, opts, p } = this;
    const { log } = env;
    const iface = new InterfaceOwner({
      runner: env.runner,
      log,
      iface: opts.iface,
      configFile: join(opts.runtimeDir, `${opts.iface}.conf`),
      createInterface: true,
      implementation: p.config.wireguard.implementation,
      units: undefined,
      own,
    });
    return new ConnectStep(
      {
        log,
        identity: p.identity,
        iface,
        peers: new PeerAdapter(env.runner, opts.iface),
        routes: new RouteAdapter(env.runner, log, ipBatch, own).onlyThrough(opts.iface),
        endpoints: this.endpoints,
        leases: this.leases,
        lost: (why) => this.lose(why),
      },
      {
        settings: p.settings,
        topology: p.config.mesh.granularity === 'full' ? undefined : topologySettings(p.config),
        guard: p.guard,
        extra: p.extra,
        keepalive: opts.keepalive,
        iface: p.iface,
      },
    );
  }

  /** The parts in start order: the loop first, the sources and monitors last. */
  private assemble(own: OwnChanges, ipBatch: ReturnType<ConnectEnv['ipBatch']>): Part[] {
    const { env, opts, p } = this;
    const view = this.step.view;
    const changed = (what: string) => (yes: boolean) => {
      if (yes) this.loop.schedule(what);
    };
    const leases = this.leases;
    return [
      { name: 'ip co-process', start: () => undefined, stop: () => ipBatch?.close() },
      this.status,
      this.loop,
      this.fresh,
      ...(leases ? [{ name: 'location leases', start: () => leases.follow(), stop: () => leases.stop() }] : []),
      ...(this.endpoints ? [this.endpoints] : []),
      new SourcePart<MeshNode>('node source', nodeSource(nodesApi(p.kc), env.log, { mode: 'watch' }, this.labels()), {
        onList: (nodes) => changed('Nodes changed')(view.setNodes(nodes)),
        onChange: (name, node) => changed(`Node ${name} changed`)(node ? view.upsertNode(node) : view.removeNode(name)),
        onState: (state, err) => this.health.report('nodes', state, err),
      }),
      new SourcePart<ExternalPeer>(
        'peer source',
        externalPeerSource(externalPeersApi(p.kc), env.log, { mode: 'watch' }),
        {
          onList: (peers) => changed('Peers changed')(view.setExternalPeers(peers)),
          onState: (state, err) => this.health.report('peers', state, err),
        },
      ),
      new StartedPart('interface monitor', () =>
        env.monitor(opts.iface, env.log, (line) => {
          if (own.isOwn(line)) env.log.debug(`own change seen by ip monitor: ${line}`);
          else this.loop.schedule('routes or link changed on the host', true);
        }),
      ),
      new Timer('resync timer', 60_000, true, () => this.loop.schedule('periodic resync', true)),
    ];
  }

  /** The Node labels the topology reads. */
  private labels(): { labels: string[] } {
    return { labels: [this.p.config.mesh.locationLabel] };
  }

  /** The location Leases, read only, with `granularity = location`. */
  private makeLeases(): LocationLeases | undefined {
    const m = this.p.config.mesh;
    if (m.granularity !== 'location') return undefined;
    return new LocationLeases({
      api: leasesApi(this.p.kc, m.leaseNamespace),
      namespace: m.leaseNamespace,
      self: `connect/${this.opts.name}`,
      leaseSeconds: m.leaderLeaseSeconds,
      log: this.env.log,
      onChange: () => this.loop.schedule('a location leader Lease changed'),
    });
  }

  /** Endpoint failover, as the daemon runs it, unless `[wireguard] endpoint_failover = 0`. */
  private makeEndpointWatch(): EndpointWatch | undefined {
    return stepEndpointWatch(this.p.config.wireguard.endpointFailoverSeconds, {
      read: (maxAgeMs) => this.device.get(maxAgeMs),
      step: () => this.step,
      log: this.env.log,
      onChoice: () => this.loop.schedule('endpoint failover'),
      onObserved: () => undefined,
      nudger: this.env,
    });
  }

  /** Resolves with the exit status once the connection ends (a signal, or the Peer lost). */
  async run(): Promise<number> {
    const { log, signals } = this.env;
    await this.start();
    this.loop.schedule('connecting');
    void this.loop.firstApply().then(() => this.connected());
    const handshakeCheck = setTimeout(() => void this.checkHandshakes(), HANDSHAKE_CHECK_MS);
    const usr1 = (): void => void this.printStatus();
    signals.on('SIGUSR1', usr1);
    try {
      const how = await new Promise<{ why: string; code: number }>((resolve) => {
        const stop = (signal: string) => () => resolve({ why: signal, code: EXIT_OK });
        signals.once('SIGTERM', stop('SIGTERM'));
        signals.once('SIGINT', stop('SIGINT'));
        this.onLost = (why) => resolve({ why, code: EXIT_FAILURE });
        if (this.lostWhy) this.onLost(this.lostWhy);
      });
      if (how.code !== EXIT_OK) log.error(`${how.why}: disconnecting`);
      return (await this.stop(how.why)) ? how.code : EXIT_FAILURE;
    } finally {
      clearTimeout(handshakeCheck);
      signals.off('SIGUSR1', usr1);
    }
  }

  /** Starts every part in order; one that cannot start stops the others and throws. */
  private async start(): Promise<void> {
    await startAll(this.parts, this.started, this.env.log, 10_000);
  }

  /** The Peer is gone: stop. */
  private lose(why: string): void {
    this.lostWhy ??= why;
    this.onLost?.(why);
  }

  /** The first apply is through: one line with what this host now reaches. */
  private connected(): void {
    const d = this.step.desired;
    const ms = Date.now() - performance.timeOrigin;
    this.env.log.notice(
      `connected as Peer ${this.opts.name} (${[this.p.iface.address, this.p.iface.address6].filter(Boolean).join(', ')}) ` +
        `on ${this.opts.iface}: ${d?.peers.length ?? 0} peers, ${d?.routes.length ?? 0} routes, ${(ms / 1000).toFixed(1)} s after the start`,
    );
  }

  /** Says so when no node has answered some time after the first apply. */
  private async checkHandshakes(): Promise<void> {
    const dev = await this.device.get(0).catch(() => undefined);
    const peers = this.step.desired?.peers ?? [];
    if (!dev || peers.length === 0 || dev.peers.some((x) => x.latestHandshake > 0)) return;
    this.env.log.error(
      `no node answered: no WireGuard handshake with any of ${peers.length} nodes within ${formatMs(HANDSHAKE_CHECK_MS)} ` +
        `(endpoints ${peers.map((x) => x.endpoint ?? '(none)').join(', ')}): check that this host reaches them on UDP ` +
        `(port ${this.p.config.wireguard.listenPort} unless a node publishes another), and that no firewall drops it`,
    );
  }

  /** SIGUSR1: the `--status` summary on standard output. */
  private async printStatus(): Promise<void> {
    try {
      this.env.out.write(await connectStatusText(this.opts, this.snapshot(), this.env.quietRunner));
    } catch (err) {
      this.env.log.warning(`SIGUSR1: ${describeError(err)}`);
    }
  }

  /** Stops every part, then removes the Peer, the interface and its routes unless `--keep`; false when removing failed. */
  private async stop(why: string): Promise<boolean> {
    const { log } = this.env;
    const { opts, p } = this;
    await stopAll(this.started.splice(0), log, 10_000);
    if (opts.keep) {
      log.notice(`${why}: stopped; Peer ${opts.name}, ${opts.iface} and its routes are kept (--keep)`);
      return true;
    }
    let ok = true;
    try {
      await p.client.remove(opts.name, p.claimed.object.metadata.uid);
      log.notice(`deleted Peer ${opts.name}`);
    } catch (err) {
      ok = false;
      log.error(`${describeError(err)}; delete it by hand: kubectl delete peer ${opts.name}`);
    }
    await deleteLink(this.env.runner, opts.iface);
    log.notice(`${why}: deleted ${opts.iface} and its routes; disconnected`);
    await rm(join(opts.runtimeDir, STATUS_FILE), { force: true }).catch(() => undefined);
    return ok;
  }

  /** The status file's contents. */
  snapshot(): StatusSnapshot {
    return buildSnapshot({
      node: this.opts.name,
      iface: this.opts.iface,
      startedAt: this.startedAt,
      desired: this.step.desired,
      waiting: this.lostWhy ?? this.step.waiting,
      ...runningStatus(this.loop, this.health, this.endpoints),
    });
  }
}
