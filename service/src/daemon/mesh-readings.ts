/**
 * What the metrics read the mesh series from at scrape time, taken from the daemon's parts: the
 * shared device read, the desired peers and routes, the topology, the endpoint watch and the NAT
 * observations in the cluster view.
 */
import type { InterfaceStatus } from '../mesh/observations/device.js';
import { natKeepalive } from '../mesh/observations/nat.js';
import type { MeshReadings } from '../metrics/mesh-metrics.js';
import type { CachedRead } from '../util/cached-read.js';
import type { EndpointWatch } from './endpoint-watch.js';
import type { MeshStep } from './step.js';

/** The daemon's parts the mesh series come from. */
export interface MeshReadingParts {
  /** This node's name. */
  self: string;
  iface: string;
  step: MeshStep;
  /** The shared device read (it feeds the per-peer counters). */
  device: CachedRead<InterfaceStatus | undefined>;
  /** The endpoint watch (absent: failover is off, and no NAT observations are made). */
  endpoints: EndpointWatch | undefined;
}

/** The readings behind the mesh series. */
export function meshReadings(p: MeshReadingParts): MeshReadings {
  const { step } = p;
  return {
    device: async () => {
      if (!(await p.device.get())) throw new Error(`${p.iface} is missing`);
    },
    peers: () => step.desired?.peers ?? [],
    routes: () => step.desired?.routes ?? [],
    topology: () => step.desired?.topology,
    failover: () => p.endpoints?.counts(),
    nat: () => {
      const view = step.view;
      let discovered = 0;
      for (const peer of step.desired?.peers ?? [])
        if (peer.kind === 'node' && view.observations.accepted(peer.name).length > 0) discovered += 1;
      const me = view.node(p.self);
      const behind = !!me && natKeepalive(me, view.observations.reported(p.self), 0).behindNat !== undefined;
      return { observed: Object.keys(p.endpoints?.observed ?? {}).length, discovered, behind };
    },
  };
}
