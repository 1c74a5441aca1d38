/**
 * What a reconcile step is given and what it returns: this node's identity, the location Leases
 * and endpoint failover as the step sees them, the host adapters and files it hands the desired
 * state to, and how a run ended.
 */
import type { FirewallAdapter } from '../host/firewall-adapter.js';
import type { InterfaceOwner } from '../host/interface-owner.js';
import type { MtuResolver } from '../host/mtu.js';
import type { PeerAdapter } from '../host/peer-adapter.js';
import type { RouteAdapter } from '../host/route-adapter.js';
import type { NodePublisher } from '../kube/node-publisher.js';
import type { Logger } from '../log/logger.js';
import type { EndpointChoice } from '../mesh/desired/desired.js';
import type { LeaderWish, Liveness } from '../mesh/observations/leadership.js';
import type { WgQuickFile } from '../wireguard/conf-file.js';
import type { KeyKeeper } from './key-keeper.js';

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

/** The host adapters a desired state is handed to. */
export interface HostAdapters {
  iface: InterfaceOwner;
  peers: PeerAdapter;
  routes: RouteAdapter;
  /** The fail-closed rule set (absent: none is kept). */
  firewall?: FirewallAdapter | undefined;
}

/** The parts a step works with. */
export interface StepParts extends HostAdapters {
  log: Logger;
  identity: Identity;
  publisher: NodePublisher;
  confFile: WgQuickFile;
  mtu: MtuResolver;
  /** The location leader Leases (absent: granularity = location has no Leases, leaders by rank only). */
  leadership?: Leadership | undefined;
  /** Endpoint failover (absent: off). */
  endpoints?: Endpoints | undefined;
  /** Takes a new key when an older Node publishes this node's (absent: the skip is only logged). */
  keys?: KeyKeeper | undefined;
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
