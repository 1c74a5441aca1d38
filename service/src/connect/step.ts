/**
 * One reconcile step of `wg-overlay connect`, run by the daemon's own reconcile loop: the core's
 * plan for this host's Peer (`planExternalPeer`, from the same cluster view, verdicts, topology and
 * endpoint choice as a node's), handed to the daemon's host adapters — the interface, the peers
 * (`wg set`) and the routes — with each change logged with its reason.
 */
import type { Logger } from '../log/logger.js';
import { ClusterView } from '../mesh/cluster-view.js';
import { planExternalPeer } from '../mesh/desired/external.js';
import type { GuardRange } from '../mesh/desired/guard.js';
import { membershipSettings } from '../mesh/desired/plan.js';
import type { TopologySettings } from '../mesh/desired/topology.js';
import type { Liveness } from '../mesh/observations/leadership.js';
import type { DesiredInterface, DesiredState, MeshSettings } from '../mesh/types.js';
import { toWgQuickConfig } from '../wireguard/conf.js';
import type { ChangeLog } from '../daemon/run-log.js';
import { ReconcileStep } from '../daemon/step-base.js';
import type { Endpoints, HostAdapters, Identity, StepOutcome } from '../daemon/step-parts.js';

/** The parts a connect step works with: the daemon's host adapters but the fail-closed rule set, and what `connect` adds. */
export interface ConnectStepParts extends Omit<HostAdapters, 'firewall'> {
  log: Logger;
  /** The Peer's name and this host's key pair. */
  identity: Identity;
  /** Endpoint failover (absent: off). */
  endpoints?: Endpoints | undefined;
  /** The location leader Leases, read only (with `granularity = location`). */
  leases?: { liveness(): Liveness; known(): boolean } | undefined;
  /** This host's Peer is gone from the cluster, or carries another key: `connect` must stop. */
  lost(why: string): void;
}

/** What the plan is made with, fixed for the session. */
export interface ConnectSettings {
  settings: MeshSettings;
  /** With `granularity = location` or `cross`. */
  topology: TopologySettings | undefined;
  guard: readonly GuardRange[];
  /** Extra ranges routed into the cluster. */
  extra: readonly string[];
  keepalive: number;
  iface: DesiredInterface;
}

/** The reconcile step of `connect`. */
export class ConnectStep extends ReconcileStep {
  /** The cluster as seen from outside (no viewing node); the first apply waits for the Peer list. */
  readonly view = new ClusterView({ waitForPeers: true });

  constructor(
    private readonly parts: ConnectStepParts,
    private readonly s: ConnectSettings,
  ) {
    super(parts.log, parts, (r) => `peer ${r.name} could not be applied (${r.error})`);
  }

  /** The desired state, or undefined (with `waiting` set, logged once) while there is none. */
  protected compute(): DesiredState | undefined {
    const { view } = this;
    const { name, publicKey } = this.parts.identity;
    if (!view.nodesListed) return this.waitInfo('waiting for the Node list from the API server');
    if (!view.externalPeersListed) return this.waitInfo('waiting for the Peer list from the API server');
    const mine = view.externalPeers.find((p) => p.name === name);
    if (!mine || mine.publicKey !== publicKey) {
      this.parts.lost(
        mine
          ? `Peer ${name} now carries another public key (${String(mine.publicKey)}): someone else took the name`
          : `Peer ${name} was deleted from the cluster`,
      );
      return this.waitInfo(`Peer ${name} is gone`);
    }
    const leases = this.parts.leases;
    if (this.s.topology?.granularity === 'location' && leases && !leases.known())
      return this.waitInfo('waiting for the location leader Leases from the API server');
    const membership = view.membership(membershipSettings(this.s.settings));
    const plan = planExternalPeer({
      membership,
      name,
      iface: this.s.iface.name,
      extra: this.s.extra,
      topology: this.s.topology && { settings: this.s.topology, nodes: view.nodes, liveness: leases?.liveness() },
      guard: this.s.guard,
      choice: this.parts.endpoints?.take(),
      keepalive: this.s.keepalive,
    });
    if ('problem' in plan) return this.wait(plan.message, (w) => this.parts.log.error(w));
    const desired: DesiredState = {
      iface: this.s.iface,
      peers: plan.peers,
      routes: plan.routes,
      // Other Peers' troubles are not this host's: the Nodes left out, and this Peer's own parts.
      skipped: membership.skipped.filter((x) => x.kind !== 'peer' || x.name === name),
      addresses: membership.addresses,
      publish: {},
      warnings: plan.warnings,
    };
    this.latest = desired;
    return this.ready(desired);
  }

  /** Records why there is no desired state yet, said at info once. */
  private waitInfo(why: string): undefined {
    return this.wait(why, (w) => this.log.info(w));
  }

  /** The interface first (created with every peer when it is missing), then the peers and routes together. */
  protected apply(desired: DesiredState, changes: ChangeLog): Promise<StepOutcome> {
    // A new interface starts without peers: each is then added with `wg set`, and logged as such.
    const empty = { ...desired, peers: [] };
    const source = {
      config: () => toWgQuickConfig(empty, this.parts.identity.privateKey),
      writeFile: async () => true,
    };
    return this.host.apply(desired, { source }, changes);
  }
}
