/**
 * The one place a reconcile step is wired to its host adapters — the interface owner, the peer
 * and route adapters, the MTU resolver — over a command runner: the daemon wires it over the host,
 * the tests' simulated world over a recording fake.
 */
import type { Config } from '../config/config.js';
import type { CommandRunner } from '../exec/runner.js';
import { FirewallAdapter } from '../host/firewall-adapter.js';
import { InterfaceOwner } from '../host/interface-owner.js';
import type { IpBatch } from '../host/ip-batch.js';
import type { WireguardGoCheck } from '../host/link.js';
import { MtuResolver } from '../host/mtu.js';
import type { OwnChanges } from '../host/own-changes.js';
import { PeerAdapter } from '../host/peer-adapter.js';
import { RouteAdapter } from '../host/route-adapter.js';
import type { PeerStatus } from '../mesh/observations/device.js';
import type { UnitController } from '../systemd/units.js';
import { MeshStep } from './step.js';
import type { StepParts } from './step-parts.js';

/** What a step is wired from: the parts it takes as they are, and what its adapters are made from. */
export interface StepWiring extends Pick<
  StepParts,
  'log' | 'identity' | 'publisher' | 'confFile' | 'leadership' | 'endpoints' | 'keys'
> {
  config: Config;
  runner: CommandRunner;
  /** systemd's units, when a manager answers on D-Bus. */
  units: UnitController | undefined;
  /** The long-lived `ip -batch` co-process for routes (undefined: one `ip` per route). */
  ipBatch?: IpBatch | undefined;
  /** Told about the daemon's own route and link churn, so the monitor does not take it for drift. */
  own?: OwnChanges | undefined;
  /** Every device read of the peer adapter (the endpoint watch notes NAT arrivals from it). */
  sawDevice?: ((peers: readonly PeerStatus[]) => void) | undefined;
  /** Whether wireguard-go is installed (default: looked up on the host). */
  hasWireguardGo?: WireguardGoCheck | undefined;
  /** How long a change waits before the fail-closed rule set's saved script is written (default: not at all). */
  firewallSaveDelayMs?: (() => number) | undefined;
  /** Wait for the first list of external peers before the first apply (the daemon does). */
  waitForPeers: boolean;
}

/** A step over its adapters. */
export function wireStep(w: StepWiring): MeshStep {
  const c = w.config.wireguard;
  const iface = new InterfaceOwner({
    runner: w.runner,
    log: w.log,
    iface: c.interface,
    configFile: c.configFile,
    createInterface: c.createInterface,
    implementation: c.implementation,
    units: w.units,
    own: w.own,
    ...(w.hasWireguardGo ? { hasWireguardGo: w.hasWireguardGo } : {}),
  });
  w.log.info(iface.describe());
  const parts = {
    log: w.log,
    identity: w.identity,
    publisher: w.publisher,
    iface,
    peers: new PeerAdapter(w.runner, c.interface, w.sawDevice),
    routes: new RouteAdapter(w.runner, w.log, w.ipBatch, w.own),
    confFile: w.confFile,
    mtu: new MtuResolver(w.runner),
    leadership: w.leadership,
    endpoints: w.endpoints,
    keys: w.keys,
    firewall: new FirewallAdapter(w.runner, w.config.state.dir, w.firewallSaveDelayMs),
  };
  return new MeshStep(parts, w.config, w.waitForPeers);
}
