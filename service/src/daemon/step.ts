/**
 * One reconcile step, free of timers and of rules: it asks the pure core for this node's plan
 * from the cluster view, publishes its own annotations, hands the wg-quick file its new contents,
 * and hands the desired interface, peers and routes to the host adapters, logging each change with
 * its reason. Scheduling, retries and readiness live in the loop; every decision lives in `mesh/`.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/config.js';
import { meshSettings, topologySettings, type RuntimeFacts } from '../config/mesh-settings.js';
import { inStep } from '../host/apply-error.js';
import type { AppliedChange } from '../host/change.js';
import type { FirewallAdapter } from '../host/firewall-adapter.js';
import type { InterfaceOwner } from '../host/interface-owner.js';
import type { MtuResolver } from '../host/mtu.js';
import type { PeerAdapter } from '../host/peer-adapter.js';
import type { RouteAdapter } from '../host/route-adapter.js';
import type { NodePublisher } from '../kube/node-publisher.js';
import type { Logger } from '../log/logger.js';
import { ownAnnotationPatch } from '../mesh/annotations.js';
import { ClusterView } from '../mesh/cluster-view.js';
import { NotReadyError, type EndpointChoice } from '../mesh/desired/desired.js';
import { planNode, type NodePlan } from '../mesh/desired/plan.js';
import type { LeaderWish, Liveness } from '../mesh/observations/leadership.js';
import type { DesiredState, MeshNode } from '../mesh/types.js';
import { StateReporter } from '../util/backoff.js';
import { toWgQuickConfig } from '../wireguard/conf.js';
import type { WgQuickFile } from '../wireguard/conf-file.js';
import type { KeyKeeper } from './key-keeper.js';
import { ChangeLog, VerdictLog } from './run-log.js';

/** This node's identity: its Node name and WireGuard key pair. */
export interface Identity {
  name: string;
  privateKey: string;
  publicKey: string;
}

/** The location leader Leases, as the step sees them. */
export interface Leadership {
  /** Who the Leases show alive, by location. */
  liveness(): Liveness;
  /** True once the Leases were read (or could not be): until then liveness means nothing. */
  known(): boolean;
  /** What this node wants from its location's Lease (undefined: none). */
  want(wish: LeaderWish | undefined): void;
}

/** Endpoint failover and NAT observations, as the step sees them. */
export interface Endpoints {
  /** The endpoints chosen instead of peers' best ones, and the names whose choice changed. */
  take(): EndpointChoice;
  /** Peers (by name) this node saw arrive from an endpoint none of their addresses explains. */
  readonly observed: Readonly<Record<string, string>>;
}

/** The parts a step works with. */
export interface StepParts {
  log: Logger;
  identity: Identity;
  publisher: NodePublisher;
  iface: InterfaceOwner;
  peers: PeerAdapter;
  routes: RouteAdapter;
  confFile: WgQuickFile;
  mtu: MtuResolver;
  /** The location leader Leases (absent: granularity = location has no Leases, leaders by rank only). */
  leadership?: Leadership | undefined;
  /** Endpoint failover (absent: off). */
  endpoints?: Endpoints | undefined;
  /** Takes a new key when an older Node publishes this node's (absent: the skip is only logged). */
  keys?: KeyKeeper | undefined;
  /** The fail-closed rule set (absent: none is kept). */
  firewall?: FirewallAdapter | undefined;
}

/** How a step ended (when it did not throw). */
export interface StepOutcome {
  /** True when the full desired state is applied. */
  applied: boolean;
  /** Run again (forced) after `retry.ms`, for `retry.why`: waiting for something outside the daemon. */
  retry?: { ms: number; why: string };
  /** Run again (forced) at once, for this reason: the host must be read. */
  followUp?: string;
}

/** True when two desired states hold the same interface and the very same peer and route objects. */
function sameDesired(a: DesiredState, b: DesiredState): boolean {
  // An unchanged fail-closed rule set is the very same object (planNode keeps it).
  if (!isDeepStrictEqual(a.iface, b.iface) || a.firewall !== b.firewall) return false;
  const sameRefs = <T>(x: readonly T[], y: readonly T[]): boolean =>
    x === y || (x.length === y.length && x.every((v, i) => v === y[i]));
  // Derived from `a`: only the delta can differ.
  const p = b.peersDelta;
  const r = b.routesDelta;
  if (p?.from === a.peers && r?.from === a.routes)
    return p.added.length + p.removed.length + r.added.length + r.removed.length === 0;
  return sameRefs(a.peers, b.peers) && sameRefs(a.routes, b.routes);
}

/** Starts `work` now; the returned call awaits it (rethrowing its error then, never unhandled before). */
function settled<T>(work: Promise<T[]> | undefined): () => Promise<T[]> {
  const p = (work ?? Promise.resolve([])).then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  return async () => {
    const r = await p;
    if ('error' in r) throw r.error;
    return r.value;
  };
}

/** The reconcile step of one node. */
export class MeshStep {
  /** The cluster as this node sees it. */
  readonly view: ClusterView;
  private facts: RuntimeFacts = { resolved: new Map() };
  private lastApplied: DesiredState | undefined;
  /** The interface of the desired state last handed to the wg-quick file. */
  private latestIface: DesiredState['iface'] | undefined;
  private latest: DesiredState | undefined;
  private waitingFor: string | undefined;
  private refused: string[] = [];
  private readonly reporter = new StateReporter();
  private readonly verdicts: VerdictLog;

  constructor(
    private readonly parts: StepParts,
    private config: Config,
    waitForPeers: boolean,
  ) {
    const { name, publicKey } = parts.identity;
    this.view = new ClusterView({ self: { name, publicKey }, waitForPeers });
    this.verdicts = new VerdictLog(parts.log);
  }

  /** The latest desired state (also when applying it failed). */
  get desired(): DesiredState | undefined {
    return this.latest;
  }

  /** Why the latest run could not compute a desired state yet (undefined once it could). */
  get waiting(): string | undefined {
    return this.waitingFor;
  }

  /** Peers the device refused in the latest run, one sentence each (also in the status file). */
  get refusedPeers(): readonly string[] {
    return this.refused;
  }

  /** Why the wg-quick file could not be written the last time, if it could not. */
  get configFileError(): string | undefined {
    return this.parts.confFile.error;
  }

  /** Takes what the daemon learnt at run time (the API server's addresses, resolved names). */
  setFacts(facts: RuntimeFacts): void {
    this.facts = { ...this.facts, ...facts };
  }

  /** Replaces the settings (config reload); the next run re-reads the host. */
  setConfig(config: Config): void {
    this.config = config;
    this.parts.mtu.forget();
  }

  /** The running settings. */
  get settings(): Config {
    return this.config;
  }

  /** Writes what waits to be written of the fail-closed rule set (its saved script), when the daemon stops. */
  async flushFirewall(): Promise<void> {
    await this.parts.firewall?.flush();
  }

  /** Forgets what the host holds: every adapter reads it on its next set. */
  invalidate(): void {
    this.parts.iface.invalidate();
    this.parts.peers.invalidate();
    this.parts.routes.invalidate();
    this.parts.firewall?.invalidate();
  }

  /** One run: `force` re-reads the host even when the desired state did not change. */
  async run(reasons: readonly string[], force: boolean, lines: string[]): Promise<StepOutcome> {
    const changes = new ChangeLog(this.parts.log, lines);
    try {
      const desired = await this.compute();
      if (!desired) return { applied: false };
      await this.publish(desired, changes);
      // A changed interface section is written at once (a restart by anyone reads it); peers later.
      // (At start the interface is checked first: a restart it needs writes the file before.)
      const urgent = this.latestIface !== undefined && !isDeepStrictEqual(this.latestIface, desired.iface);
      this.latestIface = desired.iface;
      await this.parts.confFile.set(() => toWgQuickConfig(desired, this.parts.identity.privateKey), urgent);
      if (!force && this.lastApplied && sameDesired(this.lastApplied, desired)) return { applied: true };
      this.parts.log.debug(`reconcile: ${reasons.join(', ') || 'resync'}`);
      if (force) this.invalidate();
      const outcome = await this.apply(desired, changes, force);
      if (outcome.applied) this.lastApplied = desired;
      return outcome;
    } finally {
      changes.close();
    }
  }

  /** The desired state, or undefined (with `waiting` set and logged once) when there is none yet. */
  private async compute(): Promise<DesiredState | undefined> {
    const { identity, log } = this.parts;
    if (!this.view.nodesListed) return this.wait('waiting for the Node list from the API server');
    if (!this.view.externalPeersListed)
      return this.wait('waiting for the Peer list from the API server', (w) => log.info(`${w} before the first apply`));
    const selfNode = this.view.node(identity.name);
    if (!selfNode) {
      const hint = 'set [kubernetes] node_name if this node is registered under another name';
      return this.wait(`Node ${identity.name} does not exist yet`, (w) =>
        log.warning(`${w}; waiting for it (${hint})`),
      );
    }
    let plan: NodePlan;
    try {
      plan = planNode(await this.planInput(selfNode));
    } catch (err) {
      if (err instanceof NotReadyError) return this.wait(err.message, (w) => log.warning(w));
      throw err;
    }
    if (plan.keyTakenBy && (await this.parts.keys?.taken(plan.keyTakenBy))) {
      this.view.setSelf({ name: identity.name, publicKey: identity.publicKey });
      return this.compute();
    }
    this.latest = plan.desired;
    this.parts.leadership?.want(plan.wish);
    const behindNat = plan.behindNat?.join(', ');
    if (behindNat && this.reporter.changed('nat', behindNat))
      log.info(
        `other nodes see this node arrive from ${behindNat}, not one of its own addresses (behind NAT): keepalive 25 s towards every peer`,
      );
    // A node (re)starting must not lead by rank for a moment while another one holds the Lease.
    if (plan.wish && this.parts.leadership && !this.parts.leadership.known())
      return this.wait('waiting for the location leader Leases from the API server', (w) =>
        log.info(`${w} before applying`),
      );
    this.reporter.changed('ready', 'ok');
    this.waitingFor = undefined;
    this.verdicts.report(plan.desired);
    return plan.desired;
  }

  /** What the pure plan needs: the view, this node, the settings, the previous state, leases, failover and NAT. */
  private async planInput(selfNode: MeshNode): Promise<Parameters<typeof planNode>[0]> {
    const mtu = await this.parts.mtu.resolve(this.config.wireguard.mtu, [
      ...selfNode.internalIPs,
      ...selfNode.externalIPs,
    ]);
    const topology = topologySettings(this.config);
    const { name, publicKey } = this.parts.identity;
    return {
      view: this.view,
      self: { name, publicKey },
      settings: meshSettings(this.config, mtu, this.facts),
      previous: this.latest,
      topology:
        topology.granularity === 'full'
          ? undefined
          : { settings: topology, liveness: this.parts.leadership?.liveness() },
      choice: this.parts.endpoints?.take(),
      observed: this.parts.endpoints?.observed,
      // After a restart: what the rule set on the host blocks (what the mesh carried before).
      firewallBefore: this.latest ? undefined : await inStep('firewall', async () => this.parts.firewall?.adopt()),
    };
  }

  private wait(why: string, logOnce?: (why: string) => void): undefined {
    this.waitingFor = why;
    if (this.reporter.changed('ready', why)) logOnce?.(why);
    return undefined;
  }

  /** Publishes what differs in this node's own annotations. */
  private async publish(desired: DesiredState, changes: ChangeLog): Promise<void> {
    const selfNode = this.view.node(this.parts.identity.name)!;
    const patch = ownAnnotationPatch(selfNode.annotations, desired.publish);
    if (!patch) return;
    await inStep('publish', () => this.parts.publisher.patchAnnotations(selfNode.name, patch));
    const what = Object.entries(patch)
      .map(([k, v]) => `${k}=${v ?? '(removed)'}`)
      .join(' ');
    changes.record([
      { what: `published on Node ${selfNode.name}: ${what}`, why: "published values differ from this node's" },
    ]);
  }

  /**
   * Hands the desired state to the adapters: the fail-closed rule set alongside the rest (it holds
   * while the interface is missing). At the first apply and a forced one it starts at once; a
   * change after that starts it once the routes and `wg` are under way (its `nft` delays neither).
   */
  private async apply(desired: DesiredState, changes: ChangeLog, force: boolean): Promise<StepOutcome> {
    let firewall: (() => Promise<AppliedChange[]>) | undefined;
    const startFirewall = (): void => {
      firewall ??= settled(desired.firewall && this.parts.firewall?.set(desired.firewall));
    };
    if (force || !this.lastApplied) startFirewall();
    try {
      return await this.applyMesh(desired, changes, startFirewall);
    } finally {
      startFirewall();
      changes.record(await firewall!());
    }
  }

  /** Interface first, then routes and peers together (then `startFirewall`). */
  private async applyMesh(desired: DesiredState, changes: ChangeLog, startFirewall: () => void): Promise<StepOutcome> {
    const { iface, peers, routes, confFile, identity } = this.parts;
    const source = { config: () => toWgQuickConfig(desired, identity.privateKey), writeFile: () => confFile.flush() };
    let restartWhy: string | undefined;
    if (this.config.wireguard.apply === 'restart') {
      const plan = await peers.plan(desired.peers);
      if (plan.length > 0)
        restartWhy = `apply = restart and ${plan.length} peer change(s): ${plan.map((c) => c.reason).join('; ')}`;
    }
    const ifaceResult = await iface.set(desired.iface, source, restartWhy);
    changes.record(ifaceResult.changes);
    if (!ifaceResult.ready) return { applied: false, retry: { ms: 2000, why: `looking for ${desired.iface.name}` } };
    if (ifaceResult.recreated) {
      // The device now holds exactly the config's peers, and no routes.
      peers.reset();
      routes.invalidate();
    }
    // A route only ever names the interface, so its order against `wg set` does not matter, and
    // running both at once halves the latency. The route goes first: a line to the `ip` co-process
    // is quicker to send than `wg` is to spawn.
    const routeWork = routes.set(desired.routes, desired.routesDelta);
    const peerWork = peers.set(desired.peers, desired.peersDelta);
    startFirewall();
    const [peerResult, routeResult] = await Promise.all([peerWork, routeWork]);
    changes.record(peerResult.changes);
    this.refused = peerResult.refused.map(
      (r) =>
        `peer ${r.name} could not be applied (${r.error}); the other peers are applied, and it is tried again at the next resync`,
    );
    if (this.reporter.changed('refused', this.refused.join('\n')))
      for (const line of this.refused) this.parts.log.warning(line);
    changes.record(routeResult.changes);
    return routeResult.clash
      ? { applied: true, followUp: 'a route already existed: checking the routing table' }
      : { applied: true };
  }
}
