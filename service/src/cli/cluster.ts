/**
 * What the operator commands (`showconf`, `graph`, `status`) share: reading the config file
 * (`--config FILE`, like `run`), reading the cluster's Nodes and Peers through the kubeconfig it
 * names, and errors that carry their exit status.
 */
import * as k8s from '@kubernetes/client-node';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { describeApiError, loadKubeconfig } from '../kube/client.js';
import { listPeers } from '../kube/peers.js';
import { toMeshNode } from '../kube/translate.js';
import type { MeshSettings } from '../mesh/desired.js';
import type { MeshNode, MeshPeer } from '../mesh/types.js';

/** A failure of a CLI command: the message is printed as `wg-overlay <cmd>: <message>`, then it exits with `code`. */
export class CliError extends Error {
  constructor(message: string, readonly code = 1) {
    super(message);
    this.name = 'CliError';
  }
}

/** Exit status of a usage error. */
export const EXIT_USAGE = 2;
/** Exit status of a configuration an admin must fix (EX_CONFIG). */
export const EXIT_CONFIG = 78;

/** Loads the config file, printing its warnings to `err`; a bad file is a CliError with status 78. */
export async function loadCliConfig(path: string, err: NodeJS.WritableStream): Promise<Config> {
  try {
    const { config, warnings } = await loadConfig(path);
    for (const w of warnings) err.write(`warning: ${w}\n`);
    return config;
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.problems.join('\n'), EXIT_CONFIG);
    throw e;
  }
}

/** The mesh settings of the config (as `run` uses them; the MTU does not matter here). */
export function meshSettings(config: Config): MeshSettings {
  const w = config.wireguard;
  return {
    interfaceName: w.interface,
    listenPort: w.listenPort,
    mtu: undefined,
    persistentKeepalive: w.persistentKeepalive,
    overlayCidr: config.overlay.cidr,
    endpoint: w.endpoint,
  };
}

/** The cluster as the API server reports it. */
export interface ClusterData {
  nodes: MeshNode[];
  peers: MeshPeer[];
  /** True when the Peer CRD is not installed. */
  peersAbsent: boolean;
}

/** Lists Nodes and Peers through the kubeconfig named by the config. */
export async function readCluster(config: Config): Promise<ClusterData> {
  let kc: k8s.KubeConfig;
  try {
    kc = await loadKubeconfig(config.kubernetes.kubeconfig);
  } catch (e) {
    throw new CliError(e instanceof Error ? e.message : String(e), EXIT_CONFIG);
  }
  const api = kc.makeApiClient(k8s.CoreV1Api);
  let items: k8s.V1Node[];
  try {
    items = (await api.listNode()).items;
  } catch (e) {
    throw new CliError(`listing Nodes from ${kc.getCurrentCluster()?.server ?? 'the API server'}: ${describeApiError(e)}`);
  }
  let peers: { peers: MeshPeer[]; absent: boolean };
  try {
    peers = await listPeers(kc);
  } catch (e) {
    throw new CliError(e instanceof Error ? e.message : String(e));
  }
  return {
    nodes: items.map(toMeshNode).filter((n): n is MeshNode => n !== undefined),
    peers: peers.peers,
    peersAbsent: peers.absent,
  };
}

/** Runs a command body, turning CliErrors into a message on `err` and their exit status. */
export async function runCli(name: string, err: NodeJS.WritableStream, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof CliError) {
      for (const line of e.message.split('\n')) err.write(`wg-overlay ${name}: ${line}\n`);
      return e.code;
    }
    throw e;
  }
}
