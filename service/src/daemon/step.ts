/**
 * One reconcile step, free of timers and of rules: it asks the pure core for this node's plan
 * from the cluster view, publishes its own annotations, hands the wg-quick file its new contents,
 * and hands the desired interface, peers and routes to the host adapters, logging each change with
 * its reason. Scheduling, retries and readiness live in the loop; every decision lives in `mesh/`.
 */
import type { Config } from '../config/config.js';
import { meshSettings, topologySettings, type RuntimeFacts } from '../config/mesh-settings.js';
import { inStep } from '../host/apply-error.js';
import { ownAnnotationPatch } from '../mesh/annotations.js';
import { ClusterView } from '../mesh/cluster-view.js';
import { NotReadyError } from '../mesh/desired/desired.js';
import { planNode, type NodePlan } from '../mesh/desired/plan.js';
import { sameDesired, sameInterface } from '../mesh/desired/unchanged.js';
import type { DesiredState, MeshNode } from '../mesh/types.js';
import { toWgQuickConfig } from '../wireguard/conf.js';
import type { ChangeLog } from './run-log.js';
import { ReconcileStep } from './step-base.js';
import type { StepOutcome, StepParts } from './step-parts.js';

/** The reconcile step of one node. */
export class MeshStep extends ReconcileStep {
  /** The cluster as this node sees it. */
  readonly view: ClusterView;
  private facts: RuntimeFacts = { resolved: new Map() };
  private lastApplied: DesiredState | undefined;
  /** The interface of the desired state last handed to the wg-quick file. */
  private latestIface: DesiredState['iface'] | undefined;

  constructor(
    private readonly parts: StepParts,
    private config: Config,
    waitForPeers: boolean,
  ) {
    super(
      parts.log,
      parts,
      (r) =>
        `peer ${r.name} could not be applied (${r.error}); the other peers are applied, and it is tried again at the next resync`,
    );
    const { name, publicKey } = parts.identity;
    this.view = new ClusterView({ self: { name, publicKey }, waitForPeers });
  }

  /** Peers the device refused in the latest run, one sentence each (also in the status file). */
  get refusedPeers(): readonly string[] {
    return this.host.refused;
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

  /** Publishes this node's annotations and hands the wg-quick file its contents; true when the adapters have nothing to do. */
  protected override async beforeApply(desired: DesiredState, force: boolean, changes: ChangeLog): Promise<boolean> {
    await this.publish(desired, changes);
    // A changed interface section is written at once (a restart by anyone reads it); peers later.
    // (At start the interface is checked first: a restart it needs writes the file before.)
    const urgent = this.latestIface !== undefined && !sameInterface(this.latestIface, desired.iface);
    this.latestIface = desired.iface;
    await this.parts.confFile.set(() => toWgQuickConfig(desired, this.parts.identity.privateKey), urgent);
    return !force && !!this.lastApplied && sameDesired(this.lastApplied, desired);
  }

  /** The desired state, or undefined (with `waiting` set and logged once) when there is none yet. */
  protected async compute(): Promise<DesiredState | undefined> {
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
    return this.ready(plan.desired);
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

  /** Hands the desired state to the host adapters (with `apply = restart`, a peer change recreates the interface). */
  protected async apply(desired: DesiredState, changes: ChangeLog): Promise<StepOutcome> {
    const { confFile, identity } = this.parts;
    const source = { config: () => toWgQuickConfig(desired, identity.privateKey), writeFile: () => confFile.flush() };
    const restartOnPeerChange = this.config.wireguard.apply === 'restart';
    const outcome = await this.host.apply(desired, { source, restartOnPeerChange }, changes);
    if (outcome.applied) this.lastApplied = desired;
    return outcome;
  }
}
