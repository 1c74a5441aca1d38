/**
 * The reconcile loop and step wired to a simulated host by the daemon's own wiring (`wireStep`):
 * host adapters over the FakeHost's recording runner, a wg-quick file in a temp dir, and a facade
 * with the calls the daemon makes when Nodes, Peers or the config change.
 */
import { dirname } from 'node:path';
import { defaultConfig, type Config } from '../../../service/src/config/config.js';
import { ReconcileLoop } from '../../../service/src/daemon/loop.js';
import type { MeshStep } from '../../../service/src/daemon/step.js';
import type { Identity, Leadership } from '../../../service/src/daemon/step-parts.js';
import type { KeyKeeper } from '../../../service/src/daemon/key-keeper.js';
import { wireStep } from '../../../service/src/daemon/step-wiring.js';
import type { NodePublisher } from '../../../service/src/kube/node-publisher.js';
import type { Logger } from '../../../service/src/log/logger.js';
import type { ExternalPeer, MeshNode } from '../../../service/src/mesh/types.js';
import type { ReconcileReport } from '../../../service/src/daemon/report.js';
import type { UnitController } from '../../../service/src/systemd/units.js';
import { WgQuickFile } from '../../../service/src/wireguard/conf-file.js';
import type { FakeHost } from './host.js';

/** What the world is made of. */
export interface WorldParts {
  host: FakeHost;
  log: Logger;
  identity: Identity;
  config: Config;
  publisher?: NodePublisher;
  units?: UnitController | undefined;
  /** Wait for the first Peer list before applying (as the daemon does). */
  waitForPeers?: boolean;
  /** The location leader Leases (with location granularity). */
  leadership?: Leadership;
  /** Takes a new key when an older Node publishes this node's. */
  keys?: KeyKeeper;
}

/** The daemon's calls into the loop, as one object. */
export interface Reconcile {
  step: MeshStep;
  loop: ReconcileLoop;
  setNodes(nodes: readonly MeshNode[]): void;
  setPeers(peers: readonly ExternalPeer[]): void;
  setConfig(config: Config): void;
  schedule(reason: string, force?: boolean): void;
  stop(): Promise<void>;
  /** Resolves with the report of the next run. */
  next(): Promise<ReconcileReport>;
}

/** Builds the loop and step over the simulated host, wired as the daemon wires them. */
export function reconcileWorld(p: WorldParts): Reconcile {
  const w = p.config.wireguard;
  const confFile = new WgQuickFile(w.configFile, p.log, 0);
  // The state dir (the saved fail-closed rule set) beside the test's wg-quick file, unless the test chose one.
  const config =
    p.config.state.dir === defaultConfig().state.dir
      ? { ...p.config, state: { ...p.config.state, dir: dirname(w.configFile) } }
      : p.config;
  const step = wireStep({
    config,
    runner: p.host.runner,
    log: p.log,
    identity: p.identity,
    publisher: p.publisher ?? { patchAnnotations: async () => undefined },
    confFile,
    units: p.units,
    leadership: p.leadership,
    keys: p.keys,
    hasWireguardGo: p.host.hasWireguardGo,
    waitForPeers: p.waitForPeers ?? false,
  });
  const loop = new ReconcileLoop(step, { log: p.log, coalesceMs: 1 });
  let waiters: Array<(r: ReconcileReport) => void> = [];
  loop.onReport((r) => {
    const ws = waiters;
    waiters = [];
    ws.forEach((f) => f(r));
  });
  return {
    step,
    loop,
    setNodes: (nodes) => {
      if (step.view.setNodes(nodes)) loop.schedule('Nodes changed');
    },
    setPeers: (peers) => {
      if (step.view.setExternalPeers(peers)) loop.schedule('Peers changed');
    },
    setConfig: (config) => {
      step.setConfig(config);
      loop.schedule('configuration changed', true);
    },
    schedule: (reason, force = false) => loop.schedule(reason, force),
    stop: async () => {
      await loop.stop();
      await confFile.flush();
    },
    next: () => new Promise((resolve) => waiters.push(resolve)),
  };
}
