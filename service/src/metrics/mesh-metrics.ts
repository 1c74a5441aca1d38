/**
 * The series an operator would otherwise add a WireGuard exporter for, read at scrape time: bytes
 * received and sent and the latest handshake per configured peer, the address family of the
 * endpoint each peer is reached at, endpoint switches by reason, routes by family, failover and
 * NAT state, and the leader of this node's location; per-peer labels name only the Nodes and
 * Peers this node configured, never keys or endpoints.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SwitchReason } from '../mesh/observations/failover.js';
import type { DesiredPeer, DesiredRoute, TopologyState } from '../mesh/types.js';
import type { PeerTraffic, PeerTrafficEntry } from './peer-traffic.js';

/** Why a peer's endpoint changed: a failover step, back to the best after its candidates changed, or WireGuard roaming. */
export type EndpointSwitchReason = SwitchReason | 'reset' | 'roamed';

/** Every reason, so that each series exists (at 0) from the start. */
export const ENDPOINT_SWITCH_REASONS: readonly EndpointSwitchReason[] = [
  'no-answer',
  'send-failed',
  'probe',
  'probe-failed',
  'reset',
  'roamed',
];

/** What the mesh series are read from, at scrape time. */
export interface MeshSource {
  /** Reads the device (a shared, cached read that feeds `traffic`); may throw when it is missing. */
  device(): Promise<unknown>;
  /** The accumulated per-peer traffic. */
  traffic: PeerTraffic;
  /** The routes this node wants through the tunnel. */
  routes(): readonly DesiredRoute[];
  /** With locations: where this node stands. */
  topology(): TopologyState | undefined;
  /** Peers failover follows and how many are on a fallback (undefined: failover is off). */
  failover(): { tracked: number; fallback: number } | undefined;
  /**
   * NAT: Nodes seen arriving from an endpoint none of their addresses explains, Node peers that
   * may be dialled at such an endpoint, and whether others see this node so.
   */
  nat(): { observed: number; discovered: number; behind: boolean };
}

/** What the daemon hands the metrics to read the mesh series from (the metrics keep the traffic themselves). */
export interface MeshReadings extends Omit<MeshSource, 'traffic'> {
  /** The peers this node wants now (the only ones with per-peer series). */
  peers(): readonly DesiredPeer[];
}

/** The address family of an endpoint `ip:port` or `[ip]:port`. */
export function endpointFamily(endpoint: string): '4' | '6' {
  return endpoint.startsWith('[') ? '6' : '4';
}

/** The address family of a CIDR. */
function cidrFamily(cidr: string): '4' | '6' {
  return cidr.includes(':') ? '6' : '4';
}

type Labels = { kind: string; name: string };
const labelsOf = (e: PeerTrafficEntry): Labels => ({ kind: e.kind, name: e.name });

/** The per-peer series: bytes both ways, latest handshake time, endpoint family; none while the device is missing. */
function perPeer(registry: Registry, source: MeshSource): void {
  const registers = [registry];
  const kindName = ['kind', 'name'] as const;
  const entries = async (): Promise<PeerTrafficEntry[]> => {
    try {
      await source.device();
    } catch {
      return [];
    }
    return source.traffic.entries();
  };
  const counter = (name: string, help: string, value: (e: PeerTrafficEntry) => number): void => {
    new Counter({
      name,
      help,
      labelNames: kindName,
      registers,
      async collect() {
        this.reset();
        for (const e of await entries()) this.inc(labelsOf(e), value(e));
      },
    });
  };
  counter(
    'wg_overlay_peer_received_bytes_total',
    'Bytes received from each configured peer since the daemon started; never decreases across a peer re-added or an interface recreated.',
    (e) => e.rxTotal,
  );
  counter(
    'wg_overlay_peer_sent_bytes_total',
    'Bytes sent to each configured peer since the daemon started; never decreases across a peer re-added or an interface recreated.',
    (e) => e.txTotal,
  );
  new Gauge({
    name: 'wg_overlay_peer_last_handshake_timestamp_seconds',
    help: 'Unix time of the latest WireGuard handshake with each configured peer (0 = never).',
    labelNames: kindName,
    registers,
    async collect() {
      this.reset();
      for (const e of await entries()) this.set(labelsOf(e), e.latestHandshake);
    },
  });
  new Gauge({
    name: 'wg_overlay_peer_endpoint_family',
    help: 'Address family (4 or 6) of the endpoint the device reaches each configured peer at: 1 per peer with an endpoint.',
    labelNames: ['kind', 'name', 'family'],
    registers,
    async collect() {
      this.reset();
      for (const e of await entries())
        if (e.endpoint) this.set({ ...labelsOf(e), family: endpointFamily(e.endpoint) }, 1);
    },
  });
}

/** Routes by family, failover and NAT state, and the location leader, from the source at scrape time. */
function meshState(registry: Registry, source: MeshSource): void {
  const registers = [registry];
  new Gauge({
    name: 'wg_overlay_routes',
    help: 'Routes this node wants through the tunnel (or to a location leader), by address family of the destination.',
    labelNames: ['family'],
    registers,
    collect() {
      let v6 = 0;
      const routes = source.routes();
      for (const r of routes) if (cidrFamily(r.dst) === '6') v6 += 1;
      this.set({ family: '4' }, routes.length - v6);
      this.set({ family: '6' }, v6);
    },
  });
  new Gauge({
    name: 'wg_overlay_failover_peers',
    help: 'Node peers endpoint failover follows (they have several endpoints), on their best endpoint or on a fallback.',
    labelNames: ['state'],
    registers,
    collect() {
      const f = source.failover() ?? { tracked: 0, fallback: 0 };
      this.set({ state: 'best' }, f.tracked - f.fallback);
      this.set({ state: 'fallback' }, f.fallback);
    },
  });
  natState(registry, source);
  new Gauge({
    name: 'wg_overlay_location_info',
    help: "With granularity = location: always 1; labels name this node's location and its leader.",
    labelNames: ['location', 'leader'],
    registers,
    collect() {
      this.reset();
      const t = source.topology();
      if (t?.granularity === 'location') this.set({ location: t.location, leader: t.leader }, 1);
    },
  });
}

/** The NAT gauges. */
function natState(registry: Registry, source: MeshSource): void {
  const gauge = (name: string, help: string, value: (n: ReturnType<MeshSource['nat']>) => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(value(source.nat()));
      },
    });
  };
  gauge(
    'wg_overlay_nat_observed_peers',
    'Node peers this node sees arrive from an endpoint none of their addresses explains (behind NAT; it publishes them).',
    (n) => n.observed,
  );
  gauge(
    'wg_overlay_nat_discovered_peers',
    'Node peers with an endpoint other nodes saw them arrive from that may be dialled (a failover candidate).',
    (n) => n.discovered,
  );
  gauge(
    'wg_overlay_nat_behind',
    'Whether other nodes see this node arrive from an address that is not its own (1: behind NAT, keepalive 25 s) or not (0).',
    (n) => (n.behind ? 1 : 0),
  );
}

/** Registers the mesh series in `registry`; returns the endpoint switch counter's increment. */
export function registerMeshMetrics(registry: Registry, source: MeshSource): (reason: EndpointSwitchReason) => void {
  perPeer(registry, source);
  meshState(registry, source);
  const switches = new Counter({
    name: 'wg_overlay_endpoint_switches_total',
    help:
      'Times the endpoint of a peer changed, by reason: failover (no-answer, send-failed), a try of the best endpoint ' +
      '(probe) and back (probe-failed), back to the best when its endpoints changed (reset), or WireGuard following the ' +
      'peer to an endpoint this node did not set (roamed: NAT, or the peer moved).',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of ENDPOINT_SWITCH_REASONS) switches.inc({ reason }, 0);
  return (reason) => switches.inc({ reason });
}
