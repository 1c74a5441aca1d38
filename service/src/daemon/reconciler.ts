/**
 * The one reconcile loop. Node events are coalesced; each run computes the desired state,
 * publishes this node's annotations, rewrites wg0.conf, and applies only the difference to the
 * interface, its peers (`wg set`) and its routes (`ip route`), logging one line per change with
 * its reason. A run with the same input as the last applied one executes no commands.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/config.js';
import type { CommandRunner } from '../exec/runner.js';
import type { NodePublisher } from '../kube/client.js';
import { describeError, type Logger } from '../log/logger.js';
import { OWN_ANNOTATIONS } from '../mesh/annotations.js';
import { computeDesired, NotReadyError, type MeshSettings } from '../mesh/desired.js';
import { diffPeers, diffRoutes, interfaceDrift, type PeerChange, type RouteChange } from '../mesh/diff.js';
import type { InterfaceStatus, LinkStatus, PeerStatus } from '../mesh/status.js';
import type { DesiredPeer, DesiredState, MeshNode, MeshPeer } from '../mesh/types.js';
import { toWgQuickConfig } from '../mesh/wgconf.js';
import type { IpBatch } from '../routes/batch.js';
import { applyRouteChanges, readRoutes, ROUTE_PROTO } from '../routes/routes.js';
import type { UnitController } from '../systemd/units.js';
import { Backoff, StateReporter } from '../util/backoff.js';
import { applyPeerChanges, readDevice } from '../wireguard/device.js';
import { autoMtu, configureLink, createLink, deleteLink, readLink } from '../wireguard/link.js';
import { writeWgQuickFile } from '../wireguard/wgquick.js';

/** This node's identity: its Node name and WireGuard key pair. */
export interface Identity {
  name: string;
  privateKey: string;
  publicKey: string;
}

/** What the reconciler needs from the outside world. */
export interface ReconcilerDeps {
  runner: CommandRunner;
  log: Logger;
  identity: Identity;
  publisher: NodePublisher;
  /** Present when a systemd manager is reachable: interface restarts go through wg-quick@<if>. */
  units: UnitController | undefined;
  /** A long-lived `ip -batch` for route changes on the fast path (optional: one command each without it). */
  ipBatch?: IpBatch;
  /** Delay before wg0.conf is written after a change (ms, default 300; 0 = at once, before the run ends). */
  confDelayMs?: number;
  /** Delay used to coalesce bursts of events (ms, default 2); events during a run are coalesced into the next. */
  coalesceMs?: number;
  /**
   * Wait for the first `setPeers()` before applying (so a restarted daemon does not drop the
   * external Peers it already has for a moment). Default false: no external Peers until set.
   */
  waitForPeers?: boolean;
}

/** A summary of the latest run, for status, health and metrics. */
export interface ReconcileReport {
  ok: boolean;
  error?: string;
  /** Set when wg0.conf could not be written (the live mesh may still have been applied). */
  configFileError?: string;
  /** Changes applied by that run, one line each. */
  changes: string[];
  durationMs: number;
  at: number;
}

/** Coalesces events and drives the interface, peers and routes towards the desired state. */
export class Reconciler {
  private nodes: MeshNode[] | undefined;
  private nodesKey = '';
  private peers: MeshPeer[] | undefined;
  private peersKey = '';
  private confError: string | undefined;
  private config: Config;
  private lastApplied: DesiredState | undefined;
  private appliedPeers = new Map<string, DesiredPeer>();
  private pendingReasons = new Set<string>();
  private force = true;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private pendingConf: { cfg: ReturnType<typeof toWgQuickConfig>; peers: number } | undefined;
  private confTimer: NodeJS.Timeout | undefined;
  private confChain: Promise<boolean> = Promise.resolve(true);
  private confOk = true;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly retry = new Backoff(500, 30_000);
  private readonly reporter = new StateReporter();
  private mtuCache: { ips: string; mtu: number } | undefined;
  private firstApplied = false;
  private readonly firstAppliedWaiters: Array<() => void> = [];
  /** The latest desired state (also when applying it failed). */
  desired: DesiredState | undefined;
  /** The latest run's outcome. */
  lastReport: ReconcileReport | undefined;
  /** Time of the last successful run (ms since the epoch). */
  lastSuccessAt: number | undefined;
  /** Called after every run. */
  onReport: ((r: ReconcileReport) => void) | undefined;
  /** Why the latest run could not compute a desired state yet (undefined once it could). */
  waiting: string | undefined;

  constructor(private readonly deps: ReconcilerDeps, config: Config) {
    this.config = config;
    if (!deps.waitForPeers) this.peers = [];
  }

  /** Replaces the settings (config reload) and reconciles. */
  setConfig(config: Config): void {
    this.config = config;
    this.mtuCache = undefined;
    this.schedule('configuration changed', true);
  }

  /** Takes a new complete Node list; schedules a run only when something relevant changed. */
  setNodes(nodes: readonly MeshNode[]): void {
    const sorted = [...nodes].sort((a, b) => (a.name < b.name ? -1 : 1));
    const key = JSON.stringify(sorted);
    if (this.nodes && key === this.nodesKey) return;
    this.nodes = sorted;
    this.nodesKey = key;
    this.schedule('Nodes changed');
  }

  /** Takes a new complete list of external Peers; schedules a run only when something changed. */
  setPeers(peers: readonly MeshPeer[]): void {
    const sorted = [...peers].sort((a, b) => (a.name < b.name ? -1 : 1));
    const key = JSON.stringify(sorted);
    if (this.peers && key === this.peersKey) return;
    this.peers = sorted;
    this.peersKey = key;
    this.schedule('Peers changed');
  }

  /** Whether a Peer list was set (or none is waited for). */
  get peersKnown(): boolean {
    return this.peers !== undefined;
  }

  /** Asks for a run; `force` re-reads the host even if the desired state did not change. */
  schedule(reason: string, force = false): void {
    if (this.stopped) return;
    this.pendingReasons.add(reason);
    this.force ||= force;
    // After a failed apply, host events (our own link churn among them) wait for the backoff
    // retry instead of hammering a failing command; Node changes still go through at once.
    if (force && this.retryTimer) return;
    if (this.running || this.timer) return;
    this.timer = setTimeout(() => { this.timer = undefined; this.kick(); }, this.deps.coalesceMs ?? 2);
  }

  /** Resolves once a run has applied the full desired state for the first time. */
  firstApply(): Promise<void> {
    if (this.firstApplied) return Promise.resolve();
    return new Promise((resolve) => this.firstAppliedWaiters.push(resolve));
  }

  /** Stops scheduling and waits for a run in progress; leaves the mesh as it is. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
    this.timer = undefined;
    await this.running;
    await this.flushConf();
  }

  private kick(): void {
    if (this.running || this.stopped) return;
    const reasons = [...this.pendingReasons];
    const force = this.force;
    this.pendingReasons.clear();
    this.force = false;
    this.running = this.runOnce(reasons, force).finally(() => {
      this.running = undefined;
      if (this.pendingReasons.size > 0 && !this.timer && !this.retryTimer && !this.stopped) this.timer = setTimeout(() => { this.timer = undefined; this.kick(); }, this.deps.coalesceMs ?? 2);
    });
  }

  private async runOnce(reasons: string[], force: boolean): Promise<void> {
    const started = Date.now();
    const changes: string[] = [];
    try {
      const applied = await this.reconcile(reasons, force, changes);
      this.retry.reset();
      if (this.reporter.changed('apply', 'ok')) {
        if (this.lastReport && !this.lastReport.ok) this.deps.log.notice('apply succeeded again');
      }
      if (applied) {
        this.lastSuccessAt = Date.now();
        if (!this.firstApplied) {
          this.firstApplied = true;
          for (const w of this.firstAppliedWaiters.splice(0)) w();
        }
      }
      this.lastReport = { ok: true, changes, durationMs: Date.now() - started, at: Date.now(), ...(this.confError ? { configFileError: this.confError } : {}) };
    } catch (err) {
      const msg = describeError(err);
      if (this.reporter.changed('apply', `error:${msg}`)) this.deps.log.error(`apply failed: ${msg}; retrying with backoff, nothing was torn down`);
      this.lastReport = { ok: false, error: msg, changes, durationMs: Date.now() - started, at: Date.now(), ...(this.confError ? { configFileError: this.confError } : {}) };
      const ms = this.retry.next();
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.schedule('retry after a failed apply', true); }, ms);
    }
    this.onReport?.(this.lastReport);
  }

  private settings(mtu: number | undefined): MeshSettings {
    const w = this.config.wireguard;
    return {
      interfaceName: w.interface,
      listenPort: w.listenPort,
      mtu,
      persistentKeepalive: w.persistentKeepalive,
      overlayCidr: this.config.overlay.cidr,
      endpoint: w.endpoint,
    };
  }

  private async resolveMtu(selfNode: MeshNode): Promise<number> {
    const m = this.config.wireguard.mtu;
    if (m !== 'auto') return m;
    const ips = [...selfNode.internalIPs, ...selfNode.externalIPs].join(',');
    if (this.mtuCache?.ips === ips) return this.mtuCache.mtu;
    const mtu = await autoMtu(this.deps.runner, [...selfNode.internalIPs, ...selfNode.externalIPs]);
    this.mtuCache = { ips, mtu };
    return mtu;
  }

  /** One run; returns true when the desired state is fully applied. */
  private async reconcile(reasons: string[], force: boolean, changes: string[]): Promise<boolean> {
    const { log, identity } = this.deps;
    const nodes = this.nodes;
    if (!nodes) {
      this.waiting = 'waiting for the Node list from the API server';
      return false;
    }
    const peers = this.peers;
    if (!peers) {
      this.waiting = 'waiting for the Peer list from the API server';
      if (this.reporter.changed('ready', 'no-peers')) log.info(`${this.waiting} before the first apply`);
      return false;
    }
    const w = this.config.wireguard;
    const selfNode = nodes.find((n) => n.name === identity.name);
    if (!selfNode) {
      this.waiting = `Node ${identity.name} does not exist yet`;
      if (this.reporter.changed('ready', 'no-node')) log.warning(`Node ${identity.name} does not exist yet; waiting for it (set [kubernetes] node_name if this node is registered under another name)`);
      return false;
    }
    const mtu = await this.resolveMtu(selfNode);
    let desired: DesiredState;
    try {
      desired = computeDesired(identity, nodes, this.settings(mtu), peers);
    } catch (err) {
      if (err instanceof NotReadyError) {
        this.waiting = err.message;
        if (this.reporter.changed('ready', err.message)) log.warning(err.message);
        return false;
      }
      throw err;
    }
    this.reporter.changed('ready', 'ok');
    this.waiting = undefined;
    this.desired = desired;
    this.logSkips(desired);

    await this.publish(selfNode, desired, changes);

    // wg0.conf follows every change of desired state. It is written shortly after the live
    // changes (a burst shares one write), so it never delays them or competes with them for the
    // CPU — and at once before a restart, which reads it, and when the daemon stops.
    const cfg = toWgQuickConfig(desired, identity.privateKey);
    this.pendingConf = { cfg, peers: desired.peers.length };
    const writeConf = (): Promise<boolean> => this.flushConf();
    const queueConf = (): Promise<void> => this.queueConf();

    if (!force && this.lastApplied && isDeepStrictEqual(this.lastApplied, desired)) {
      await queueConf();
      return true;
    }
    log.debug(`reconcile: ${reasons.join(', ') || 'resync'}`);

    // Fast path: the host is as this process left it (the netlink monitor and the periodic resync
    // catch drift), so desired state is diffed against what was applied and only the changing
    // commands run: no reads, typically one `wg set` and one `ip route add`.
    const last = this.lastApplied;
    if (!force && last && isDeepStrictEqual(last.iface, desired.iface)) {
      const peerPlan = diffPeers(desired.peers, last.peers.map(appliedStatus), this.appliedPeers);
      if (!(w.apply === 'restart' && peerPlan.length > 0)) {
        // Peers and routes go out together: a route only ever names the interface, so its order
        // against `wg set` does not matter, and running both at once halves the latency.
        const applied = last.routes.map((r) => ({ dst: r.dst, dev: r.dev, protocol: ROUTE_PROTO }));
        const [, clash] = await Promise.all([
          this.applyPeers(w.interface, peerPlan, changes),
          this.applyRoutePlan(diffRoutes(desired.routes, applied, ROUTE_PROTO), changes, true),
        ]);
        this.markApplied(desired);
        if (clash) this.schedule('a route already existed: checking the routing table', true);
        await queueConf();
        return true;
      }
    }

    let link = await readLink(this.deps.runner, w.interface);
    let dev = link.exists ? await readDevice(this.deps.runner, w.interface) : undefined;

    if (!link.exists && !w.createInterface) {
      await queueConf();
      if (this.reporter.changed('iface', 'waiting')) log.notice(`waiting for interface ${w.interface} to be created by someone else (create_interface = false)`);
      setTimeout(() => this.schedule(`looking for ${w.interface}`, true), 2000).unref();
      return false;
    }
    this.reporter.changed('iface', 'present');

    const peerPlan = dev ? diffPeers(desired.peers, dev.peers, this.appliedPeers) : [];
    let drift = interfaceDrift(desired.iface, link, dev);
    if (drift.length === 1 && drift[0] === 'interface is down' && link.exists) {
      await this.deps.runner.run('ip', ['link', 'set', 'dev', w.interface, 'up']);
      this.change(changes, `set ${w.interface} up`, 'interface was down');
      drift = [];
    }
    const restartForPeers = w.apply === 'restart' && peerPlan.length > 0;
    if (drift.length > 0 || restartForPeers) {
      const why = drift.length > 0 ? drift.join('; ') : `apply = restart and ${peerPlan.length} peer change(s): ${peerPlan.map((c) => c.reason).join('; ')}`;
      ({ link, dev } = await this.recreate(link, cfg, await writeConf(), why, changes));
    }
    if (!dev) throw new Error(`interface ${w.interface} is not a WireGuard device (wg show failed)`);

    await this.applyPeers(w.interface, diffPeers(desired.peers, dev.peers, this.appliedPeers), changes);
    await this.applyRoutePlan(diffRoutes(desired.routes, await readRoutes(this.deps.runner), ROUTE_PROTO), changes, false);
    this.markApplied(desired);
    await queueConf();
    return true;
  }

  /** Writes the pending wg0.conf after `confDelayMs` (at once when 0). */
  private async queueConf(): Promise<void> {
    const delay = this.deps.confDelayMs ?? 300;
    if (delay === 0) {
      await this.flushConf();
      return;
    }
    this.confTimer ??= setTimeout(() => { this.confTimer = undefined; void this.flushConf(); }, delay);
  }

  /** Writes the pending wg0.conf now (writes never overlap); resolves whether the file is current. */
  flushConf(): Promise<boolean> {
    clearTimeout(this.confTimer);
    this.confTimer = undefined;
    this.confChain = this.confChain.then(async () => {
      const pending = this.pendingConf;
      if (!pending) return this.confOk;
      this.pendingConf = undefined;
      const file = this.config.wireguard.configFile;
      try {
        const { changed } = await writeWgQuickFile(file, pending.cfg);
        if (changed) this.deps.log.info(`wrote ${file} (${pending.peers} peers) (why: desired state changed)`);
        this.reporter.changed('conf', 'ok');
        this.confError = undefined;
        this.confOk = true;
      } catch (err) {
        this.confOk = false;
        this.confError = describeError(err);
        if (this.reporter.changed('conf', this.confError)) this.deps.log.error(this.confError);
      }
      return this.confOk;
    });
    return this.confChain;
  }

  private markApplied(desired: DesiredState): void {
    this.lastApplied = desired;
    this.appliedPeers = new Map(desired.peers.map((p) => [p.publicKey, p]));
  }

  private change(changes: string[], what: string, why: string): void {
    changes.push(what);
    this.deps.log.info(`${what} (why: ${why})`);
  }

  private logSkips(desired: DesiredState): void {
    // A Node that has not published its key yet is just joining: info, not a problem.
    const lines = [
      ...desired.skipped.map((s) => {
        const what = s.kind === 'peer' ? 'Peer' : 'Node';
        return { warn: s.reason !== 'no-public-key', text: `${what} ${s.whole ? 'skipped' : 'partly ignored'}: ${s.name}: ${s.message}` };
      }),
      ...desired.warnings.map((text) => ({ warn: true, text })),
    ];
    const key = lines.map((l) => l.text).join('\n');
    if (!this.reporter.changed('skips', key)) return;
    for (const l of lines) {
      if (l.warn) this.deps.log.warning(l.text);
      else this.deps.log.info(l.text);
    }
  }

  private async publish(selfNode: MeshNode, desired: DesiredState, changes: string[]): Promise<void> {
    const patch: Record<string, string | null> = {};
    for (const key of OWN_ANNOTATIONS) {
      const want = desired.publish[key];
      const have = selfNode.annotations[key];
      if (want !== undefined && want !== have) patch[key] = want;
      if (want === undefined && have !== undefined) patch[key] = null;
    }
    if (Object.keys(patch).length === 0) return;
    await this.deps.publisher.patchAnnotations(selfNode.name, patch);
    const what = Object.entries(patch).map(([k, v]) => `${k}=${v ?? '(removed)'}`).join(' ');
    this.change(changes, `published on Node ${selfNode.name}: ${what}`, 'published values differ from this node\'s');
  }

  /** Brings the interface (back) up with the full config: via systemd's wg-quick@ when present, else directly. */
  private async recreate(link: LinkStatus, cfg: ReturnType<typeof toWgQuickConfig>, confOk: boolean, why: string, changes: string[]): Promise<{ link: LinkStatus; dev: InterfaceStatus | undefined }> {
    const { runner, log, units } = this.deps;
    const w = this.config.wireguard;
    if (!w.createInterface) {
      // Someone else owns the interface: configure it in place, never delete it.
      await configureLink(runner, w.interface, cfg);
      this.change(changes, `reconfigured ${w.interface} in place`, `${why} (create_interface = false)`);
    } else if (units) {
      if (!confOk) throw new Error(`not restarting wg-quick@${w.interface}: ${w.configFile} could not be written`);
      const unit = `wg-quick@${w.interface}.service`;
      if (link.exists) {
        await units.restartUnit(unit);
        this.change(changes, `restarted ${unit} through systemd D-Bus`, why);
      } else {
        await units.startUnit(unit);
        this.change(changes, `started ${unit} through systemd D-Bus`, why);
      }
    } else {
      if (link.exists) await deleteLink(runner, w.interface);
      const impl = await createLink(runner, w.interface, w.implementation, log);
      await configureLink(runner, w.interface, cfg);
      this.change(changes, `${link.exists ? 'recreated' : 'created'} ${w.interface} directly (${impl === 'kernel' ? 'kernel WireGuard' : 'userspace wireguard-go'}, no systemd) with ${cfg.peers.length} peers`, why);
    }
    // After a restart the device holds exactly the config's peers, and routes on it are gone.
    this.appliedPeers = new Map();
    const newLink = await readLink(runner, w.interface);
    const dev = newLink.exists ? await readDevice(runner, w.interface) : undefined;
    if (!newLink.exists) throw new Error(`interface ${w.interface} is missing after bringing it up`);
    return { link: newLink, dev };
  }

  private async applyPeers(iface: string, plan: PeerChange[], changes: string[]): Promise<void> {
    if (plan.length === 0) return;
    await applyPeerChanges(this.deps.runner, iface, plan);
    for (const c of plan) {
      if (c.op === 'remove') this.change(changes, `removed peer ${c.name ?? c.publicKey}`, c.reason);
      else if (c.op === 'add') this.change(changes, `added peer ${c.peer.name} (${c.peer.endpoint ?? 'no endpoint'}, allowed-ips ${c.peer.allowedIPs.join(',')})`, c.reason);
      else this.change(changes, `updated peer ${c.peer.name}`, c.reason);
    }
  }

  /**
   * Applies a route plan. With `exclusive`, new routes use `ip route add`, which fails instead of
   * replacing a route that already exists (possibly someone else's); returns true when one did.
   */
  private async applyRoutePlan(plan: RouteChange[], changes: string[], exclusive: boolean): Promise<boolean> {
    const conflicts = plan.filter((c) => c.op === 'conflict');
    if (!exclusive && this.reporter.changed('route-conflicts', conflicts.map((c) => c.reason).join('\n'))) {
      for (const c of conflicts) this.deps.log.warning(c.reason);
    }
    const todo = plan.filter((c) => c.op !== 'conflict');
    const clashes = await applyRouteChanges(this.deps.runner, todo, { exclusive, ...(exclusive && this.deps.ipBatch ? { batch: this.deps.ipBatch } : {}) });
    for (const c of todo) {
      if (c.op === 'add' && clashes.includes(c.route.dst)) continue;
      if (c.op === 'add') this.change(changes, `route ${c.route.dst} dev ${c.route.dev} proto ${ROUTE_PROTO}`, c.reason);
      else if (c.op === 'delete') this.change(changes, `deleted route ${c.route.dst} dev ${c.route.dev ?? '?'}`, c.reason);
    }
    return clashes.length > 0;
  }
}

/** What the device holds for a peer this process applied (the fast path's stand-in for `wg show`). */
function appliedStatus(p: DesiredPeer): PeerStatus {
  return {
    publicKey: p.publicKey,
    hasPresharedKey: Boolean(p.presharedKey),
    endpoint: p.endpoint,
    allowedIPs: p.allowedIPs,
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: p.persistentKeepalive,
  };
}
