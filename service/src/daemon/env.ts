/**
 * What the daemon takes from its host (the production environment in run.ts, fakes in tests):
 * the Kubernetes side, systemd, commands, monitors, name lookups, signals, and its timings.
 */
import type { Config, LoadedConfig } from '../config/config.js';
import type { HostRunners } from '../exec/runner.js';
import type { IpBatch } from '../host/ip-batch.js';
import type { LeaseApi } from '../kube/location-leases.js';
import type { NodePolicyProbe } from '../kube/node-policy-probe.js';
import type { NodePublisher } from '../kube/node-publisher.js';
import type { NodeSource } from '../kube/node-source.js';
import type { ExternalPeerSource } from '../kube/external-peer-source.js';
import type { Logger } from '../log/logger.js';
import type { startMetricsServer } from '../metrics/server.js';
import type { Notifier } from '../systemd/notify.js';
import type { UnitController } from '../systemd/units.js';
import type { LoadedKey } from '../wireguard/keys.js';
import type { SignalSource } from './config-reloader.js';

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
  /** Whether node-policy.yaml is in force for this credential (absent: not checked). */
  nodePolicy?: NodePolicyProbe;
  /** The token the daemon authenticates with now, read afresh (absent: its expiry is not watched). */
  token?: () => Promise<string | undefined>;
}

/** Everything the daemon takes from its host: the production one in run.ts, fakes in tests. */
export interface DaemonEnv extends HostRunners {
  loadConfig(path: string): Promise<LoadedConfig>;
  loadKey(stateDir: string): Promise<LoadedKey>;
  /** Replaces the key with a new one (when an older Node publishes this node's); absent: never. */
  rotateKey?(stateDir: string): Promise<LoadedKey>;
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
  /** Between reads of the token's expiry. */
  tokenCheck: number;
  /** First retry of the node-policy check after an answer that told nothing (doubling up to 10 min). */
  policyRetry: number;
  /** Between two reads of the fail-closed rule set's drop counters. */
  dropPoll: number;
}

/** The timings of a production daemon. */
export const DEFAULT_TIMING: DaemonTiming = {
  peerWait: 10_000,
  resync: 60_000,
  confDelay: 300,
  coalesce: 2,
  partStop: 10_000,
  tokenCheck: 3_600_000,
  policyRetry: 30_000,
  dropPoll: 10_000,
};
