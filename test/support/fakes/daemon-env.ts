/**
 * A daemon environment for unit tests: the FakeHost's recording runner, in-memory Node and Peer
 * sources the test feeds, a recording notifier, a SIGHUP emitter, no systemd unless the test
 * gives one, and a real config file in a temp dir (so reloads read a real file).
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../service/src/config/config.js';
import type { DaemonEnv } from '../../../service/src/daemon/daemon.js';
import type { Source, SourceHandler, SourceState } from '../../../service/src/kube/source.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import type { ExternalPeer, MeshNode } from '../../../service/src/mesh/types.js';
import { startMetricsServer } from '../../../service/src/metrics/server.js';
import type { Notifier } from '../../../service/src/systemd/notify.js';
import { generatePrivateKey, publicKeyFromPrivate } from '../../../service/src/wireguard/keys.js';
import { FakeHost } from './host.js';

/** A source the test drives: `list()` reports a new complete list, `state()` a new state. */
export class FakeSource<T> implements Source<T> {
  private handler: SourceHandler<T> | undefined;
  started = false;
  stopped = false;

  start(handler: SourceHandler<T>): void {
    this.handler = handler;
    this.started = true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }

  /** Reports a complete list (and that the source is up). */
  list(items: T[]): void {
    this.handler?.onState('up');
    this.handler?.onList(items);
  }

  /** Reports a state. */
  state(s: SourceState, err?: unknown): void {
    this.handler?.onState(s, err);
  }
}

/** What the test can look at and change. */
export interface FakeWorld {
  env: DaemonEnv;
  host: FakeHost;
  log: ReturnType<typeof memoryLogger>;
  nodes: FakeSource<MeshNode>;
  peers: FakeSource<ExternalPeer>;
  notes: string[];
  signals: EventEmitter;
  configPath: string;
  dir: string;
  publicKey: string;
  /** Rewrites the config file with these extra INI lines. */
  writeConfig(extra?: string): void;
}

/** Builds a fake world for node `a`; `extra` goes into the config file. */
export function fakeDaemonWorld(extra = ''): FakeWorld {
  const dir = mkdtempSync(join(tmpdir(), 'wgo-daemon-'));
  const configPath = join(dir, 'wg-overlay.conf');
  const base = [
    '[kubernetes]',
    'node_name = a',
    `kubeconfig = ${dir}/kubeconfig`,
    '[wireguard]',
    `config_file = ${dir}/wg0.conf`,
    'mtu = 1420',
    '[state]',
    `dir = ${dir}/state`,
    `runtime_dir = ${dir}/run`,
    '[metrics]',
    `listen = 127.0.0.1:${40_000 + Math.floor(Math.random() * 20_000)}`,
    '',
  ].join('\n');
  const writeConfig = (more = extra): void => writeFileSync(configPath, `${base}${more}\n`);
  writeConfig();
  const host = new FakeHost();
  const log = memoryLogger();
  const nodes = new FakeSource<MeshNode>();
  const peers = new FakeSource<ExternalPeer>();
  const notes: string[] = [];
  const signals = new EventEmitter();
  const privateKey = generatePrivateKey();
  const publicKey = publicKeyFromPrivate(privateKey);
  const notifier: Notifier = {
    ready: async (s) => {
      notes.push(`ready ${s}`);
    },
    reloading: async () => {
      notes.push('reloading');
    },
    stopping: async () => {
      notes.push('stopping');
    },
    status: async (s) => {
      notes.push(`status ${s}`);
    },
  };
  const env: DaemonEnv = {
    log,
    runner: host.runner,
    quietRunner: host.runner,
    loadConfig,
    loadKey: async () => ({ privateKey, publicKey, created: false, fixedMode: false }),
    connectKube: async () => ({
      server: 'https://api.test',
      nodes,
      externalPeers: peers,
      publisher: { patchAnnotations: async () => undefined },
    }),
    connectSystemd: async () => undefined,
    notifier,
    ipBatch: () => undefined,
    monitor: () => ({ stop: () => undefined }),
    ipForwarding: async () => true,
    lookupName: async (name) => {
      throw new Error(`${name}: not found (no DNS in unit tests)`);
    },
    serveMetrics: startMetricsServer,
    signals,
    timing: { confDelay: 0, coalesce: 1, peerWait: 50, partStop: 1_000 },
  };
  return { env, host, log, nodes, peers, notes, signals, configPath, dir, publicKey, writeConfig };
}
