/**
 * A DaemonMetrics fed as a dual-stack daemon with locations feeds it, so that every series it can
 * serve has a sample: a Node peer reached over IPv6, an external Peer without an endpoint, an
 * unknown key on the device, routes of both families, failover, NAT, skips and an apply error.
 */
import { computeDesired } from '../../../service/src/mesh/desired/desired.js';
import type { DesiredState, ExternalPeer } from '../../../service/src/mesh/types.js';
import { DaemonMetrics } from '../../../service/src/metrics/metrics.js';
import { KEYS, meshNode } from './fixtures.js';

/** One peer as the fake device shows it. */
export interface FakeReading {
  publicKey: string;
  rx: number;
  tx: number;
  endpoint: string | undefined;
  handshake: number;
}

/**
 * The desired state of node `a` (the metrics tests start from it): peers b (a Node) and laptop (a
 * Peer), two Peers skipped, a Node without a key skipped.
 */
export function desiredOfA(): DesiredState {
  const nodes = [
    meshNode('a', { ip: '192.0.2.11', created: 1, pods: ['10.244.1.0/24'], key: KEYS[0] }),
    meshNode('b', { ip: '192.0.2.12', created: 2, pods: ['10.244.2.0/24'], key: KEYS[1] }),
    meshNode('c', { ip: '192.0.2.13', created: 3 }),
  ];
  const peer = (name: string, key: string, ip: string): ExternalPeer => ({
    name,
    createdAt: 0,
    allowedIPs: [`${ip}/32`],
    publicKey: key,
    presharedKey: undefined,
    persistentKeepalive: undefined,
    endpoint: undefined,
  });
  const settings = {
    interfaceName: 'wg0',
    listenPort: 51820,
    mtu: undefined,
    persistentKeepalive: 0,
    overlayCidr: '100.64.0.0/10',
    endpoint: { mode: 'internal' as const },
  };
  const peers = [
    peer('laptop', KEYS[3], '10.5.0.2'),
    peer('my-device', 'YOUR_PUBLIC_KEY_HERE', '10.5.0.3'),
    peer('copy', 'ALSO_BAD', '10.5.0.4'),
  ];
  return computeDesired({ name: 'a', publicKey: KEYS[0] }, nodes, settings, peers);
}

/** The same state made dual-stack (an IPv6 overlay address, b reached over IPv6, an IPv6 PodCIDR) and located. */
export function dualStackDesired(): DesiredState {
  const d = desiredOfA();
  return {
    ...d,
    iface: { ...d.iface, address: '100.64.0.1/10', address6: 'fd64::1/48' },
    peers: d.peers.map((p) => (p.name === 'b' ? { ...p, endpoint: '[2001:db8::12]:51820' } : p)),
    routes: [...d.routes, { dst: 'fd10:244:2::/64', dev: 'wg0', via: 'b' }],
    topology: {
      granularity: 'location',
      location: 'aws',
      locationId: 'location:aws',
      leader: 'b',
      why: '',
      leads: false,
      locations: [],
    },
  };
}

/** A DaemonMetrics whose device shows `reading()` at each scrape, with the mesh of {@link dualStackDesired}. */
export function meshMetrics(reading: () => FakeReading[]): { metrics: DaemonMetrics; desired: DesiredState } {
  const desired = dualStackDesired();
  const metrics: DaemonMetrics = new DaemonMetrics({
    node: 'a',
    iface: 'wg0',
    version: '1',
    readHandshakes: async () => [{ kind: 'node', name: 'b', latestHandshake: 1_800_000_000 }],
    mesh: {
      device: async () => {
        const peers = reading().map((r) => ({
          publicKey: r.publicKey,
          hasPresharedKey: false,
          endpoint: r.endpoint,
          allowedIPs: [],
          latestHandshake: r.handshake,
          rxBytes: r.rx,
          txBytes: r.tx,
          persistentKeepalive: 0,
        }));
        metrics.sawDevice({ name: 'wg0', publicKey: KEYS[0], listenPort: 51820, fwmark: 0, peers });
      },
      peers: () => desired.peers,
      routes: () => desired.routes,
      topology: () => desired.topology,
      failover: () => ({ tracked: 3, fallback: 1 }),
      nat: () => ({ observed: 2, discovered: 1, behind: true }),
    },
  });
  return { metrics, desired };
}

/** Every series with a sample: a report of each kind observed, both watches set, a switch and fail-closed drops counted. */
export function everyMetric(): DaemonMetrics {
  const { metrics, desired } = meshMetrics(() => [
    { publicKey: KEYS[1], rx: 5000, tx: 7000, endpoint: '[2001:db8::12]:51820', handshake: 1_800_000_000 },
  ]);
  metrics.observeReport({ ok: true, changes: [], durationMs: 4, at: 0 }, desired, 1_800_000_000_000);
  metrics.observeReport(
    { ok: false, error: 'x', errorStep: 'peers', changes: [], durationMs: 4, at: 0 },
    desired,
    1_800_000_000_000,
  );
  metrics.setWatch('nodes', true);
  metrics.setWatch('peers', true);
  metrics.countSwitch('no-answer');
  metrics.addFailClosedDrops('ipv4', 'carried', 3);
  return metrics;
}
