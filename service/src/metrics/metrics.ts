/**
 * The daemon's Prometheus metrics (prom-client, a private registry) and its health verdict:
 * peers by kind, skipped Nodes/Peers by reason, reconciles and their duration, apply errors by
 * kind, the time of the last successful sync, API watch state, and the latest handshake age per
 * peer (read from the device at scrape time), with the per-peer traffic, route, failover and NAT
 * series of mesh-metrics.ts, and packets the fail-closed rule set dropped by family and reason.
 * `/healthz` fails when an API watch has been down longer than the threshold or the last apply
 * failed. Also this node's credential: whether node-policy.yaml is in force, and when the token
 * expires.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ApplyStep } from '../host/apply-error.js';
import type { InterfaceStatus } from '../mesh/observations/device.js';
import type { DesiredState } from '../mesh/types.js';
import type { ReconcileReport } from '../daemon/report.js';
import { registerMeshMetrics, type EndpointSwitchReason, type MeshReadings } from './mesh-metrics.js';
import { PeerTraffic } from './peer-traffic.js';

/** The step of a run an apply error came from (the `kind` label of apply errors). */
export type ApplyErrorKind = ApplyStep | 'other';

/** One peer's handshake as read from the device. */
export interface PeerHandshake {
  kind: 'node' | 'peer' | 'unknown';
  name: string;
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshake: number;
}

/** Options of {@link DaemonMetrics}. */
export interface MetricsOptions {
  node: string;
  iface: string;
  version: string;
  /** Reads the peers' latest handshakes (at scrape time); may throw when the device is missing. */
  readHandshakes: () => Promise<PeerHandshake[]>;
  /** Clock in ms (tests). */
  now?: () => number;
  /** What the per-peer traffic, route, failover and NAT series are read from (absent: they are not served). */
  mesh?: MeshReadings;
}

/** Makers of gauges and counters (with the label names given, if any) registered in `registry` only. */
function metricMakers(registry: Registry) {
  const registers = [registry];
  return {
    gauge: <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> =>
      new Gauge<L>({ name, help, labelNames, registers }),
    counter: <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> =>
      new Counter<L>({ name, help, labelNames, registers }),
  };
}

/** The per-peer handshake age, read from the device at scrape time with `read` (no series without a device). */
function handshakeAges(registry: Registry, read: () => Promise<PeerHandshake[]>, now: () => number): void {
  new Gauge({
    name: 'wg_overlay_peer_latest_handshake_age_seconds',
    help: 'Seconds since the latest WireGuard handshake with each peer (+Inf = never), read from the device at scrape time.',
    labelNames: ['kind', 'name'],
    registers: [registry],
    async collect() {
      this.reset();
      let list: PeerHandshake[];
      try {
        list = await read();
      } catch {
        return; // no device: no per-peer series
      }
      const nowS = now() / 1000;
      for (const p of list)
        this.set(
          { kind: p.kind, name: p.name },
          p.latestHandshake > 0 ? Math.max(0, Math.round(nowS - p.latestHandshake)) : Infinity,
        );
    },
  });
}

/** The gauges of this node's credential: node-policy.yaml in force (-1 until known) and the token's expiry. */
function credentialGauges(gauge: ReturnType<typeof metricMakers>['gauge']): [Gauge, Gauge] {
  const policy = gauge(
    'wg_overlay_node_policy_enforced',
    "Whether node-policy.yaml refused a dry-run label write on this node's own Node: 1 = in force, " +
      '0 = not in force (a stolen token could change any Node), -1 = unknown (not checked yet, or the answer told nothing).',
  );
  policy.set(-1);
  const expiry = gauge(
    'wg_overlay_token_expiry_timestamp_seconds',
    "Unix time at which this node's Kubernetes token expires (0 = it names no expiry, or it cannot be read).",
  );
  return [policy, expiry];
}

/** Whether this node leads its location, and how often the leader changed (granularity = location). */
function leaderMetrics(registry: Registry): [Gauge, Counter] {
  const { gauge, counter } = metricMakers(registry);
  const leading = gauge(
    'wg_overlay_location_leader',
    'Whether this node leads its location (1) or not (0), with granularity = location.',
  );
  const changes = counter(
    'wg_overlay_leader_changes_total',
    "Times the leader of this node's location changed (granularity = location).",
  );
  changes.inc(0);
  return [leading, changes];
}

/** Every metric of the daemon in one private registry. */
export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly peers: Gauge<'kind'>;
  private readonly skipped: Gauge<'kind' | 'reason'>;
  private readonly reconciles: Counter<'result'>;
  private readonly duration: Histogram;
  private readonly applyErrors: Counter<'kind'>;
  private readonly lastSync: Gauge;
  private readonly watchUp: Gauge<'resource'>;
  private readonly leading: Gauge;
  private readonly leaderChanges: Counter;
  private readonly nodePolicy: Gauge;
  private readonly tokenExpiry: Gauge;
  private readonly failClosedDrops: Counter<'family' | 'reason'>;
  private leader: string | undefined;
  /** Peer counts by kind of the last desired peers seen (a derived list is counted from its delta). */
  private counted: { peers: readonly DesiredState['peers'][number][]; node: number; peer: number } | undefined;
  private skippedOf: unknown;
  private readonly info: Gauge;
  private addresses = { address: '', address6: '' };
  /** Per-peer traffic, fed by every device reading ({@link sawDevice}). */
  private readonly traffic = new PeerTraffic(() => this.countSwitch('roamed'));
  private switched: ((reason: EndpointSwitchReason) => void) | undefined;

  constructor(private readonly opts: MetricsOptions) {
    const { gauge, counter } = metricMakers(this.registry);
    this.info = gauge(
      'wg_overlay_info',
      "Always 1; labels name the version, node, interface and this node's overlay addresses (IPv4, IPv6; empty until known).",
      ['version', 'node', 'interface', 'address', 'address6'],
    );
    this.setInfo();
    this.peers = gauge(
      'wg_overlay_peers',
      'WireGuard peers this node wants, by kind (node = cluster Node, peer = external Peer resource).',
      ['kind'],
    );
    this.peers.set({ kind: 'node' }, 0);
    this.peers.set({ kind: 'peer' }, 0);
    this.skipped = gauge(
      'wg_overlay_skipped',
      'Nodes and Peers (or parts of them) left out of the mesh, by kind and reason.',
      ['kind', 'reason'],
    );
    this.reconciles = counter('wg_overlay_reconciles_total', 'Reconcile runs, by result (ok or error).', ['result']);
    this.reconciles.inc({ result: 'ok' }, 0);
    this.reconciles.inc({ result: 'error' }, 0);
    this.duration = new Histogram({
      name: 'wg_overlay_reconcile_duration_seconds',
      help: 'Duration of reconcile runs.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
    this.applyErrors = counter(
      'wg_overlay_apply_errors_total',
      'Failed applies, by the step that failed (publish, interface, peers, routes, config-file, firewall, other).',
      ['kind'],
    );
    [this.leading, this.leaderChanges] = leaderMetrics(this.registry);
    this.lastSync = gauge(
      'wg_overlay_last_successful_sync_timestamp_seconds',
      'Unix time of the last run that applied the full desired state (0 = never).',
    );
    this.lastSync.set(0);
    this.watchUp = gauge(
      'wg_overlay_watch_up',
      'Whether discovery of the resource (nodes, peers) is connected to the API server (1) or not (0).',
      ['resource'],
    );
    [this.nodePolicy, this.tokenExpiry] = credentialGauges(gauge);
    this.failClosedDrops = counter(
      'wg_overlay_fail_closed_dropped_packets_total',
      'Packets the fail-closed rule set dropped because they would have left in clear, by family (ipv4, ipv6) and ' +
        'reason (carried: a range the mesh carries; kept: one it carried before; pod-network: the named pod networks).',
      ['family', 'reason'],
    );
    handshakeAges(this.registry, opts.readHandshakes, opts.now ?? Date.now);
    if (opts.mesh) this.switched = registerMeshMetrics(this.registry, { ...opts.mesh, traffic: this.traffic });
  }

  /** The info series, with the overlay addresses known now. */
  private setInfo(): void {
    this.info.reset();
    this.info.set(
      { version: this.opts.version, node: this.opts.node, interface: this.opts.iface, ...this.addresses },
      1,
    );
  }

  /** The overlay addresses (without prefix length) in the info series, when they changed. */
  private observeAddresses(desired: DesiredState): void {
    const host = (cidr: string | undefined): string => cidr?.split('/')[0] ?? '';
    const next = { address: host(desired.iface.address), address6: host(desired.iface.address6) };
    if (next.address === this.addresses.address && next.address6 === this.addresses.address6) return;
    this.addresses = next;
    this.setInfo();
  }

  /** Takes a device reading for the per-peer byte counters: every reading the daemon makes, in the order made. */
  sawDevice(dev: InterfaceStatus | undefined): void {
    if (dev && this.opts.mesh) this.traffic.see(dev.peers, this.opts.mesh.peers());
  }

  /** Counts a switch of a peer's endpoint. */
  countSwitch(reason: EndpointSwitchReason): void {
    this.switched?.(reason);
  }

  /** Records what the last dry run showed about node-policy.yaml. */
  setNodePolicy(state: 'enforced' | 'not-enforced' | 'unknown'): void {
    this.nodePolicy.set(state === 'enforced' ? 1 : state === 'not-enforced' ? 0 : -1);
  }

  /** Records when the token expires (unix seconds; undefined: no expiry known). */
  setTokenExpiry(unixSeconds: number | undefined): void {
    this.tokenExpiry.set(unixSeconds ?? 0);
  }

  /** Counts packets the fail-closed rule set dropped. */
  addFailClosedDrops(family: 'ipv4' | 'ipv6', reason: string, packets: number): void {
    this.failClosedDrops.inc({ family, reason }, packets);
  }

  /** Records one reconcile run and the desired state it worked from. */
  observeReport(report: ReconcileReport, desired: DesiredState | undefined, lastSuccessAt: number | undefined): void {
    this.reconciles.inc({ result: report.ok ? 'ok' : 'error' });
    this.duration.observe(report.durationMs / 1000);
    if (!report.ok) this.applyErrors.inc({ kind: report.errorStep ?? 'other' });
    if (report.configFileError) this.applyErrors.inc({ kind: 'config-file' });
    if (lastSuccessAt !== undefined) this.lastSync.set(Math.floor(lastSuccessAt / 1000));
    if (desired) {
      this.observeAddresses(desired);
      this.countPeers(desired);
      this.observeLeader(desired);
      // The engine hands out the same skip list while no skip changed: nothing to recount.
      if (this.skippedOf === desired.skipped) return;
      this.skippedOf = desired.skipped;
      this.skipped.reset();
      const counts = new Map<string, number>();
      for (const s of desired.skipped) {
        const k = `${s.kind ?? 'node'}\u0000${s.reason}`;
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      for (const [k, n] of counts) {
        const [kind, reason] = k.split('\u0000') as [string, string];
        this.skipped.set({ kind, reason }, n);
      }
    }
  }

  /** Peers by kind: counted from the delta when the desired peers derive from the ones counted last. */
  private countPeers(desired: DesiredState): void {
    const c = this.counted;
    const delta = desired.peersDelta;
    let node: number;
    let peer: number;
    if (c && c.peers === desired.peers) return;
    if (c && delta && delta.from === c.peers) {
      const by = (list: readonly DesiredState['peers'][number][], kind: string): number =>
        list.filter((p) => p.kind === kind).length;
      node = c.node + by(delta.added, 'node') - by(delta.removed, 'node');
      peer = c.peer + by(delta.added, 'peer') - by(delta.removed, 'peer');
    } else {
      node = 0;
      for (const p of desired.peers) if (p.kind === 'node') node += 1;
      peer = desired.peers.length - node;
    }
    this.counted = { peers: desired.peers, node, peer };
    this.peers.set({ kind: 'node' }, node);
    this.peers.set({ kind: 'peer' }, peer);
  }

  /** Whether this node leads its location, and a count of leader changes seen. */
  private observeLeader(desired: DesiredState): void {
    const t = desired.topology;
    if (t?.granularity !== 'location') {
      this.leading.set(0);
      this.leader = undefined;
      return;
    }
    this.leading.set(t.leads ? 1 : 0);
    if (this.leader !== undefined && this.leader !== t.leader) this.leaderChanges.inc();
    this.leader = t.leader;
  }

  /** Records whether discovery of a resource is connected. */
  setWatch(resource: 'nodes' | 'peers', up: boolean): void {
    this.watchUp.set({ resource }, up ? 1 : 0);
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** What the health verdict is computed from. */
export interface HealthInput {
  /** Each API watch and how long it has been down (0 = up). */
  watches: Array<{ what: string; downForMs: number }>;
  thresholdMs: number;
  /** The latest reconcile run, if any. */
  lastReport: Pick<ReconcileReport, 'ok' | 'error' | 'at'> | undefined;
  /** How long the reconcile run in progress has been going (0 when idle). */
  busyForMs?: number;
}

/** The health verdict: ok, or every reason it is not. */
export interface HealthResult {
  ok: boolean;
  reasons: string[];
}

/**
 * Decides health (pure): unhealthy when a watch is down longer than the threshold, the last apply
 * failed, or a reconcile run has been going longer than the threshold.
 */
export function evaluateHealth(h: HealthInput): HealthResult {
  const reasons: string[] = [];
  for (const w of h.watches) {
    if (w.downForMs > h.thresholdMs) {
      reasons.push(
        `${w.what} has been down for ${Math.round(w.downForMs / 1000)} s (threshold ${Math.round(h.thresholdMs / 1000)} s)`,
      );
    }
  }
  if (h.lastReport && !h.lastReport.ok) reasons.push(`the last apply failed: ${h.lastReport.error ?? 'unknown error'}`);
  if ((h.busyForMs ?? 0) > h.thresholdMs) {
    reasons.push(
      `a reconcile run has been stuck for ${Math.round(h.busyForMs! / 1000)} s (threshold ${Math.round(h.thresholdMs / 1000)} s)`,
    );
  }
  return { ok: reasons.length === 0, reasons };
}
